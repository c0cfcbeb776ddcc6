// native/os: thin OS helpers for inspecting and locking disks (no policy here: that lives in
// electron/dataplane/block/).
#include "spindle.h"
namespace spindle {
void InitGeometry(Napi::Env env, Napi::Object exports);
void InitAllocation(Napi::Env env, Napi::Object exports);
void InitAioProbe(Napi::Env env, Napi::Object exports);
void InitLock(Napi::Env env, Napi::Object exports);
void InitReadAt(Napi::Env env, Napi::Object exports);
void InitOs(Napi::Env env, Napi::Object exports) {
  InitGeometry(env, exports);
  InitAllocation(env, exports);
  InitAioProbe(env, exports);
  InitLock(env, exports);
  InitReadAt(env, exports);
}
}  // namespace spindle
