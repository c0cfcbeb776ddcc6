// A generic fd watcher: uv_poll in the calling thread's event loop (main thread or worker).
// Used for the vhost-user socket, kick eventfds and call eventfds.
//
// watchFd(fd, events, cb, drainEventfd = false) -> { stop() }
//   events: 1 readable | 2 writable (UV_READABLE, UV_WRITABLE)
//   cb(events, value, error): events that fired; with drainEventfd the eventfd is read here first
//   (value = its counter, 0 if a spurious wakeup), which saves a second native call per kick.
//   error is a negative errno when polling failed (the watcher is stopped then).
#include <unistd.h>
#include <uv.h>
#include <memory>
#include "spindle.h"

namespace spindle {

namespace {

struct Watcher {
  uv_poll_t poll;
  napi_env env = nullptr;
  Napi::FunctionReference cb;
  std::unique_ptr<Napi::AsyncContext> context;
  napi_async_cleanup_hook_handle cleanupHook = nullptr;
  bool drainEventfd = false;
  bool stopped = false;
  int fd = -1;
};

// The Watcher (its JS reference and async context) lives until libuv has finished with the handle.
void OnClosed(uv_handle_t* h) {
  Watcher* w = static_cast<Watcher*>(h->data);
  napi_async_cleanup_hook_handle hook = w->cleanupHook;
  delete w;
  // Only now may a terminating worker go on to close its loop.
  if (hook) napi_remove_async_cleanup_hook(hook);
}

// Idempotent. The JS stop() and the environment's cleanup both end here.
void StopWatcher(Watcher* w) {
  if (w->stopped) return;
  w->stopped = true;
  uv_poll_stop(&w->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), OnClosed);
}

// A worker's environment is going away with this watcher still open: the uv handle must be
// closed before the loop is (an open raw handle aborts the process there).
void OnEnvCleanup(napi_async_cleanup_hook_handle handle, void* arg) {
  StopWatcher(static_cast<Watcher*>(arg));
}

void OnPoll(uv_poll_t* handle, int status, int events) {
  Watcher* w = static_cast<Watcher*>(handle->data);
  if (w->stopped) return;
  Napi::Env env(w->env);
  Napi::HandleScope scope(env);
  double value = 0;
  if (status == 0 && w->drainEventfd && (events & UV_READABLE)) {
    uint64_t v = 0;
    ssize_t n;
    do n = read(w->fd, &v, sizeof v);
    while (n < 0 && errno == EINTR);
    if (n == sizeof v) value = static_cast<double>(v);
  }
  Napi::Value args[3] = {
      Napi::Number::New(env, status == 0 ? events : 0),
      Napi::Number::New(env, value),
      status == 0 ? env.Undefined() : Napi::Number::New(env, status),
  };
  if (status != 0) uv_poll_stop(&w->poll);
  napi_value argv[3] = {args[0], args[1], args[2]};
  CallFromLoop(env, *w->context, env.Global(), w->cb.Value(), 3, argv);
}

}  // namespace

static Napi::Value WatchFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsFunction())
    throw Napi::TypeError::New(env, "watchFd(fd, events, cb[, drainEventfd])");
  int fd = info[0].As<Napi::Number>().Int32Value();
  int events = info[1].As<Napi::Number>().Int32Value() & (UV_READABLE | UV_WRITABLE);
  if (!events) throw Napi::TypeError::New(env, "watchFd: events must include readable (1) or writable (2)");

  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop)
    throw Napi::Error::New(env, "watchFd: no event loop");
  auto* w = new Watcher();
  w->env = env;
  w->fd = fd;
  w->drainEventfd = info.Length() > 3 && info[3].ToBoolean();
  int r = uv_poll_init(loop, &w->poll, fd);
  if (r != 0) {
    delete w;
    throw ErrnoError(env, -r, "uv_poll_init");
  }
  w->poll.data = w;
  r = uv_poll_start(&w->poll, events, OnPoll);
  if (r != 0) {
    w->stopped = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), OnClosed);
    throw ErrnoError(env, -r, "uv_poll_start");
  }
  w->cb = Napi::Persistent(info[2].As<Napi::Function>());
  w->context = std::make_unique<Napi::AsyncContext>(env, "spindle:watchFd");
  napi_add_async_cleanup_hook(env, OnEnvCleanup, w, &w->cleanupHook);

  // stop() must stay safe after the watcher is gone: it holds a shared flag, not the Watcher.
  auto alive = std::make_shared<Watcher*>(w);
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("stop", Napi::Function::New(
                         env,
                         [alive](const Napi::CallbackInfo& ci) {
                           if (*alive) {
                             StopWatcher(*alive);
                             *alive = nullptr;
                           }
                           return ci.Env().Undefined();
                         },
                         "stop"));
  return handle;
}

void InitPosixWatch(Napi::Env env, Napi::Object exports) {
  exports.Set("watchFd", Napi::Function::New(env, WatchFd, "watchFd"));
}

}  // namespace spindle
