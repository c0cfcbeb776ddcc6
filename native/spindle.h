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

}  // namespace spindle
