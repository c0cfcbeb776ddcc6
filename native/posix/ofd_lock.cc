// Whole-file open-file-description locks (fcntl F_OFD_SETLK / F_OFD_GETLK) on Spindle's lock files:
// one process hosts a user's VMs, one process runs each VM. The kernel drops such a lock when the
// last fd of its open file description closes, so a process that dies (even by SIGKILL) leaves no
// stale lock; F_OFD_GETLK asks who holds one without taking it (a probe never blocks a real taker).
#include "spindle.h"
#include <fcntl.h>
#include <cerrno>
#include <string>

namespace spindle {

static short LockType(Napi::Env env, const Napi::Value& v) {
  std::string how = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (how == "exclusive") return F_WRLCK;
  if (how == "shared") return F_RDLCK;
  if (how == "unlock") return F_UNLCK;
  throw Napi::TypeError::New(env, "the lock type is 'exclusive', 'shared' or 'unlock'");
}

static int FdArg(const Napi::CallbackInfo& info) {
  if (info.Length() < 2 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "fd must be a number");
  return info[0].As<Napi::Number>().Int32Value();
}

// ofdSetLock(fd, 'exclusive' | 'shared' | 'unlock') -> true when done, false when another open file
// description holds a conflicting lock. Never waits.
static Napi::Value OfdSetLock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info);
  struct flock fl = {};
  fl.l_type = LockType(env, info[1]);
  fl.l_whence = SEEK_SET;  // l_start = l_len = 0: the whole file, however long
  int r;
  do r = fcntl(fd, F_OFD_SETLK, &fl); while (r != 0 && errno == EINTR);
  if (r == 0) return Napi::Boolean::New(env, true);
  if (errno == EAGAIN || errno == EACCES) return Napi::Boolean::New(env, false);
  throw ErrnoError(env, errno, "fcntl(F_OFD_SETLK)");
}

// ofdGetLock(fd, 'exclusive' | 'shared') -> 'unlocked', or the type ('exclusive' | 'shared') of a
// lock held through another open file description that would conflict with taking this one.
static Napi::Value OfdGetLock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info);
  struct flock fl = {};
  fl.l_type = LockType(env, info[1]);
  fl.l_whence = SEEK_SET;
  if (fl.l_type == F_UNLCK) throw Napi::TypeError::New(env, "ofdGetLock asks about 'exclusive' or 'shared'");
  if (fcntl(fd, F_OFD_GETLK, &fl) != 0) throw ErrnoError(env, errno, "fcntl(F_OFD_GETLK)");
  return Napi::String::New(env, fl.l_type == F_UNLCK ? "unlocked" : fl.l_type == F_WRLCK ? "exclusive" : "shared");
}

void InitPosixOfdLock(Napi::Env env, Napi::Object exports) {
  exports.Set("ofdSetLock", Napi::Function::New(env, OfdSetLock, "ofdSetLock"));
  exports.Set("ofdGetLock", Napi::Function::New(env, OfdGetLock, "ofdGetLock"));
}

}  // namespace spindle
