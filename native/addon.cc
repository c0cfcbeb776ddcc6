// Module entry. Node-API modules hold no global state here, so the addon loads in worker_threads.
#include "spindle.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  spindle::InitEngine(env, exports);
  spindle::InitOs(env, exports);
  spindle::InitPosix(env, exports);
  return exports;
}

NODE_API_MODULE(spindle, Init)
