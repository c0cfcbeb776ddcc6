#include "spindle.h"
namespace spindle {
void InitGeometry(Napi::Env env, Napi::Object exports);
void InitOs(Napi::Env env, Napi::Object exports) { InitGeometry(env, exports); }
}
