// Open file description (OFD) byte-range locks, the kind QEMU's file-posix takes on images
// (fcntl(2) F_OFD_SETLK / F_OFD_GETLK). An OFD lock belongs to the open file description, not
// to the process or thread: it lives as long as that description and is shared by every thread.
// The policy (which bytes mean what) lives in electron/dataplane/block/image-lock.ts.
#include <fcntl.h>
#include <unistd.h>
#include "spindle.h"

namespace spindle {

static short LockType(Napi::Env env, const Napi::Value& v) {
  std::string t = v.As<Napi::String>().Utf8Value();
  if (t == "read") return F_RDLCK;
  if (t == "write") return F_WRLCK;
  if (t == "unlock") return F_UNLCK;
  throw Napi::TypeError::New(env, "lock type must be 'read', 'write' or 'unlock'");
}

static struct flock Range(const Napi::CallbackInfo& info, short type) {
  struct flock fl = {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(info[1].As<Napi::Number>().Int64Value());
  fl.l_len = static_cast<off_t>(info[2].As<Napi::Number>().Int64Value());
  fl.l_pid = 0;  // must be 0 for OFD locks
  return fl;
}

// ofdLock(fd, start, length, 'read'|'write'|'unlock'): never waits; throws EAGAIN (or EACCES)
// when another description holds a conflicting lock.
static Napi::Value OfdLock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct flock fl = Range(info, LockType(env, info[3]));
  if (fcntl(fd, F_OFD_SETLK, &fl) != 0) throw ErrnoError(env, errno, "fcntl(F_OFD_SETLK)");
  return env.Undefined();
}

// ofdTest(fd, start, length, 'read'|'write') -> null when a lock of that type could be taken,
// else the first conflicting lock { type, start, length, pid } (pid -1 for an OFD lock, the
// owner's pid for a classic POSIX lock). Locks of fd's own description never conflict.
static Napi::Value OfdTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct flock fl = Range(info, LockType(env, info[3]));
  if (fcntl(fd, F_OFD_GETLK, &fl) != 0) throw ErrnoError(env, errno, "fcntl(F_OFD_GETLK)");
  if (fl.l_type == F_UNLCK) return env.Null();
  Napi::Object out = Napi::Object::New(env);
  out.Set("type", fl.l_type == F_WRLCK ? "write" : "read");
  out.Set("start", Napi::Number::New(env, static_cast<double>(fl.l_start)));
  out.Set("length", Napi::Number::New(env, static_cast<double>(fl.l_len)));
  out.Set("pid", Napi::Number::New(env, fl.l_pid));
  return out;
}

void InitLock(Napi::Env env, Napi::Object exports) {
  exports.Set("ofdLock", Napi::Function::New(env, OfdLock, "ofdLock"));
  exports.Set("ofdTest", Napi::Function::New(env, OfdTest, "ofdTest"));
}

}  // namespace spindle
