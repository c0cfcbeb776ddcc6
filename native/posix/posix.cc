// native/posix: thin OS helpers for the vhost-user transport. No protocol logic lives here.
#include "spindle.h"

namespace spindle {
void InitPosixSocket(Napi::Env env,
                     Napi::Object exports);                // socket.cc: unix sockets, fd passing, SO_PEERCRED
void InitPosixWatch(Napi::Env env, Napi::Object exports);  // watch.cc: uv_poll fd watcher
void InitPosixMemory(Napi::Env env,
                     Napi::Object exports);  // memory.cc: memfd, shared mmap as external ArrayBuffer
void InitPosixEventfd(Napi::Env env, Napi::Object exports);  // eventfd.cc: eventfd, close

void InitPosix(Napi::Env env, Napi::Object exports) {
  InitPosixSocket(env, exports);
  InitPosixWatch(env, exports);
  InitPosixMemory(env, exports);
  InitPosixEventfd(env, exports);
}
}  // namespace spindle
