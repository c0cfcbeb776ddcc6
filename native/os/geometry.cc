// Size and block sizes of an open file or block device.
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include "spindle.h"

namespace spindle {

// geometry(fd) -> { kind: 'file'|'block', sizeBytes, logicalBlockSize, physicalBlockSize }
// For files the block sizes are 0: they are probed with O_DIRECT by the caller.
static Napi::Value Geometry(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct stat st;
  if (fstat(fd, &st) != 0) throw ErrnoError(env, errno, "fstat");
  Napi::Object out = Napi::Object::New(env);
  if (S_ISBLK(st.st_mode)) {
    uint64_t size = 0;
    int lbs = 0;
    unsigned int pbs = 0;
    if (ioctl(fd, BLKGETSIZE64, &size) != 0) throw ErrnoError(env, errno, "ioctl(BLKGETSIZE64)");
    if (ioctl(fd, BLKSSZGET, &lbs) != 0) throw ErrnoError(env, errno, "ioctl(BLKSSZGET)");
    if (ioctl(fd, BLKPBSZGET, &pbs) != 0) pbs = lbs;
    out.Set("kind", "block");
    out.Set("sizeBytes", Napi::Number::New(env, static_cast<double>(size)));
    out.Set("logicalBlockSize", lbs);
    out.Set("physicalBlockSize", pbs);
  } else if (S_ISREG(st.st_mode)) {
    out.Set("kind", "file");
    out.Set("sizeBytes", Napi::Number::New(env, static_cast<double>(st.st_size)));
    out.Set("logicalBlockSize", 0);
    out.Set("physicalBlockSize", 0);
  } else {
    throw ErrnoError(env, EINVAL, "geometry (not a regular file or block device)");
  }
  return out;
}

void InitGeometry(Napi::Env env, Napi::Object exports) {
  exports.Set("geometry", Napi::Function::New(env, Geometry, "geometry"));
}

}  // namespace spindle
