#include "spindle.h"
namespace spindle {
void InitPosix(Napi::Env env, Napi::Object exports) {}
}
