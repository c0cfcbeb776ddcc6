// A few bytes at any offset of any fd, O_DIRECT ones included: the read goes through a 4 KiB
// aligned bounce buffer over the covering aligned range. Reading an image's header through the
// disk's own O_DIRECT fd keeps it out of the page cache, where a cached page would make the next
// RWF_NOWAIT direct write to it bounce (the kernel will not invalidate it without blocking).
#include <unistd.h>
#include <cstdlib>
#include <memory>
#include "spindle.h"

namespace spindle {

static constexpr size_t kAlign = 4096;

// readAt(fd, offset, length) -> Buffer of up to `length` bytes (fewer at the end of the file).
static Napi::Value ReadAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  double offArg = info[1].As<Napi::Number>().DoubleValue();
  double lenArg = info[2].As<Napi::Number>().DoubleValue();
  if (offArg < 0 || offArg > 9007199254740991.0 || lenArg < 0 || lenArg > (1 << 20)) {
    throw Napi::RangeError::New(env, "readAt: offset or length out of range (length at most 1 MiB)");
  }
  uint64_t offset = static_cast<uint64_t>(offArg);
  size_t length = static_cast<size_t>(lenArg);
  uint64_t start = offset / kAlign * kAlign;
  size_t span = (offset - start + length + kAlign - 1) / kAlign * kAlign;
  void* p = nullptr;
  if (posix_memalign(&p, kAlign, span ? span : kAlign) != 0) throw ErrnoError(env, ENOMEM, "posix_memalign");
  std::unique_ptr<void, decltype(&free)> buf(p, free);
  size_t got = 0;
  while (got < span) {
    ssize_t n = pread(fd, static_cast<char*>(p) + got, span - got, static_cast<off_t>(start + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw ErrnoError(env, errno, "pread");
    if (n == 0) break;
    got += static_cast<size_t>(n);
    if (got % kAlign) break;  // a short read: the end of the file
  }
  size_t skip = static_cast<size_t>(offset - start);
  size_t avail = got > skip ? got - skip : 0;
  size_t out = avail < length ? avail : length;
  return Napi::Buffer<uint8_t>::Copy(env, static_cast<uint8_t*>(p) + skip, out);
}

void InitReadAt(Napi::Env env, Napi::Object exports) {
  exports.Set("readAt", Napi::Function::New(env, ReadAt, "readAt"));
}

}  // namespace spindle
