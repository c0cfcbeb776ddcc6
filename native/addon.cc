// Module entry. Node-API modules hold no global state here, so the addon loads in worker_threads.
#include <dlfcn.h>
#include "spindle.h"

// Node unloads an addon when the last environment that loaded it goes away (a worker's exit when
// the main thread never loaded it), while that worker's loop may still hold uv close callbacks
// that point into this library: pin it for the process's life.
static void PinLibrary() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&PinLibrary), &info) && info.dli_fname)
    dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  PinLibrary();
  spindle::InitEngine(env, exports);
  spindle::InitOs(env, exports);
  spindle::InitPosix(env, exports);
  return exports;
}

NODE_API_MODULE(spindle, Init)
