// Shared declarations for the Spindle addon: one Init per area, and errno errors.
#pragma once
#include <napi.h>
#include <cerrno>
#include <cstring>
#include <string>

namespace spindle {

void InitEngine(Napi::Env env, Napi::Object exports);  // native/engine: the three I/O engines
void InitOs(Napi::Env env, Napi::Object exports);      // native/os: ioctls, holes, fallocate, probes
void InitPosix(Napi::Env env,
               Napi::Object exports);  // native/posix: sockets + fd passing, mmap, eventfd, poll

// An Error shaped like Node's own system errors: code 'ENOENT', errno -2, syscall, path.
inline Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& path = "") {
  std::string msg = std::string(syscall) + ": " + std::strerror(err);
  if (!path.empty()) msg += " '" + path + "'";
  Napi::Error e = Napi::Error::New(env, msg);
  const char* name = strerrorname_np(err);
  e.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  if (!path.empty()) e.Set("path", Napi::String::New(env, path));
  return e;
}

// Calls a JS callback from a libuv callback (completions, fd events). Returns false when the
// thread's environment can no longer run JS (a worker being terminated): the call is dropped.
// Not node-addon-api's MakeCallback: on that failure it builds a Napi::Error from a missing
// exception, which aborts the whole process ("Error::Error napi_define_properties"). An exception
// the callback threw is reported as uncaught on this thread.
inline bool CallFromLoop(napi_env env, napi_async_context context, napi_value recv, napi_value fn,
                         size_t argc, const napi_value* argv) {
  napi_value result;
  if (napi_make_callback(env, context, recv, fn, argc, argv, &result) == napi_ok) return true;
  bool pending = false;
  napi_value error;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending &&
      napi_get_and_clear_last_exception(env, &error) == napi_ok)
    napi_fatal_exception(env, error);
  return false;
}

}  // namespace spindle
