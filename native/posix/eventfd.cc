// eventfd create/read/write and close. Writing a call eventfd is how a completed batch interrupts
// the guest: one native call per batch.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "spindle.h"

namespace spindle {

static int FdArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), "fd must be a number");
  return info[i].As<Napi::Number>().Int32Value();
}

// eventfdCreate(initial = 0) -> fd (non-blocking, close-on-exec)
static Napi::Value EventfdCreate(const Napi::CallbackInfo& info) {
  unsigned initial = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 0;
  int fd = eventfd(initial, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) throw ErrnoError(info.Env(), errno, "eventfd");
  return Napi::Number::New(info.Env(), fd);
}

// eventfdRead(fd) -> counter value (number), or 0 when nothing was pending (EAGAIN).
static Napi::Value EventfdRead(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0);
  uint64_t v = 0;
  ssize_t n;
  do n = read(fd, &v, sizeof v);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return Napi::Number::New(info.Env(), 0);
    throw ErrnoError(info.Env(), errno, "read(eventfd)");
  }
  return Napi::Number::New(info.Env(), static_cast<double>(v));
}

// eventfdWrite(fd, value = 1): adds to the counter (signals the peer).
static Napi::Value EventfdWrite(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0);
  uint64_t v = info.Length() > 1 && info[1].IsNumber()
                   ? static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value())
                   : 1;
  ssize_t n;
  do n = write(fd, &v, sizeof v);
  while (n < 0 && errno == EINTR);
  // EAGAIN means the counter is saturated: the peer has a wakeup pending anyway.
  if (n < 0 && errno != EAGAIN) throw ErrnoError(info.Env(), errno, "write(eventfd)");
  return info.Env().Undefined();
}

// closeFd(fd)
static Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0);
  if (close(fd) != 0 && errno != EINTR) throw ErrnoError(info.Env(), errno, "close");
  return info.Env().Undefined();
}

// setNonBlocking(fd, on)
static Napi::Value SetNonBlocking(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0);
  bool on = info.Length() < 2 || info[1].ToBoolean();
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) throw ErrnoError(info.Env(), errno, "fcntl(F_GETFL)");
  fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
  if (fcntl(fd, F_SETFL, fl) != 0) throw ErrnoError(info.Env(), errno, "fcntl(F_SETFL)");
  return info.Env().Undefined();
}

void InitPosixEventfd(Napi::Env env, Napi::Object exports) {
  exports.Set("eventfdCreate", Napi::Function::New(env, EventfdCreate, "eventfdCreate"));
  exports.Set("eventfdRead", Napi::Function::New(env, EventfdRead, "eventfdRead"));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventfdWrite, "eventfdWrite"));
  exports.Set("closeFd", Napi::Function::New(env, Close, "closeFd"));
  exports.Set("setNonBlocking", Napi::Function::New(env, SetNonBlocking, "setNonBlocking"));
}

}  // namespace spindle
