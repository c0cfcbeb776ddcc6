#include "spindle.h"
namespace spindle {
void InitEngine(Napi::Env env, Napi::Object exports) {}
}
