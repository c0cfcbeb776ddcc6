// How a file's bytes are backed: holes (SEEK_HOLE/SEEK_DATA), unwritten extents (FIEMAP),
// direct-I/O alignment (statx STATX_DIOALIGN), and preallocation (fallocate).
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <memory>
#include <vector>
#include "spindle.h"

namespace spindle {

static int FdArg(const Napi::CallbackInfo& info, size_t i = 0) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), "fd must be a number");
  return info[i].As<Napi::Number>().Int32Value();
}

static double NumArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (v < 0 || v > 9007199254740991.0)
    throw Napi::RangeError::New(info.Env(), std::string(name) + " out of range");
  return v;
}

// holes(fd) -> { sizeBytes, allocatedBytes, dataBytes, holeBytes, holeCount, seekHole }
// Walks SEEK_DATA/SEEK_HOLE over [0, size). seekHole=false when the filesystem reports the
// whole file as data by default (then allocatedBytes from st_blocks is the only hint).
static Napi::Value Holes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info);
  struct stat st;
  if (fstat(fd, &st) != 0) throw ErrnoError(env, errno, "fstat");
  if (!S_ISREG(st.st_mode)) throw ErrnoError(env, EINVAL, "holes (not a regular file)");
  off_t size = st.st_size;
  off_t pos = 0, dataBytes = 0;
  double holeCount = 0;
  bool seekHole = true;
  while (pos < size) {
    off_t data = lseek(fd, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) {
        holeCount++;
        break;
      }  // the rest is one hole
      if (errno == EINVAL || errno == EOPNOTSUPP) {
        seekHole = false;
        dataBytes = size;
        break;
      }
      throw ErrnoError(env, errno, "lseek(SEEK_DATA)");
    }
    if (data > pos) holeCount++;
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0) throw ErrnoError(env, errno, "lseek(SEEK_HOLE)");
    if (hole > size) hole = size;
    dataBytes += hole - data;
    pos = hole;
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("sizeBytes", Napi::Number::New(env, static_cast<double>(size)));
  out.Set("allocatedBytes", Napi::Number::New(env, static_cast<double>(st.st_blocks) * 512.0));
  out.Set("dataBytes", Napi::Number::New(env, static_cast<double>(dataBytes)));
  out.Set("holeBytes", Napi::Number::New(env, static_cast<double>(size - dataBytes)));
  out.Set("holeCount", Napi::Number::New(env, holeCount));
  out.Set("seekHole", Napi::Boolean::New(env, seekHole));
  return out;
}

// extents(fd) -> { supported, extents, unwrittenExtents, unwrittenBytes, mappedBytes, holeBytes, holeCount }
// FIEMAP in batches; counts only, so a fragmented file costs no memory. holeBytes/holeCount are
// the gaps inside [0, size) with no extent at all: unlike SEEK_HOLE (which on ext4 reports
// unwritten extents as holes), a fallocated range is not a hole here.
static Napi::Value Extents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info);
  constexpr unsigned kBatch = 256;
  std::vector<char> buf(sizeof(struct fiemap) + kBatch * sizeof(struct fiemap_extent));
  auto* fm = reinterpret_cast<struct fiemap*>(buf.data());
  struct stat st;
  if (fstat(fd, &st) != 0) throw ErrnoError(env, errno, "fstat");
  const double size = static_cast<double>(st.st_size);
  double extents = 0, unwritten = 0, unwrittenBytes = 0, mappedBytes = 0, holeBytes = 0, holeCount = 0;
  double covered = 0;  // end of the last extent seen, clipped to size
  bool supported = true;
  __u64 start = 0;
  for (;;) {
    std::fill(buf.begin(), buf.end(), 0);
    fm->fm_start = start;
    fm->fm_length = FIEMAP_MAX_OFFSET - start;
    fm->fm_flags = FIEMAP_FLAG_SYNC;  // delayed allocations become real extents first
    fm->fm_extent_count = kBatch;
    if (ioctl(fd, FS_IOC_FIEMAP, fm) != 0) {
      if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EINVAL) {
        supported = false;
        break;
      }
      throw ErrnoError(env, errno, "ioctl(FS_IOC_FIEMAP)");
    }
    if (fm->fm_mapped_extents == 0) break;
    bool last = false;
    for (unsigned i = 0; i < fm->fm_mapped_extents; i++) {
      const struct fiemap_extent& e = fm->fm_extents[i];
      extents++;
      mappedBytes += static_cast<double>(e.fe_length);
      if (e.fe_flags & FIEMAP_EXTENT_UNWRITTEN) {
        unwritten++;
        unwrittenBytes += static_cast<double>(e.fe_length);
      }
      double lo = static_cast<double>(e.fe_logical), hi = lo + static_cast<double>(e.fe_length);
      if (lo > covered && covered < size) {
        holeCount++;
        holeBytes += (lo < size ? lo : size) - covered;
      }
      if (hi > covered) covered = hi < size ? hi : size;
      if (e.fe_flags & FIEMAP_EXTENT_LAST) last = true;
      start = e.fe_logical + e.fe_length;
    }
    if (last || fm->fm_mapped_extents < kBatch) break;
  }
  if (supported && covered < size) {
    holeCount++;
    holeBytes += size - covered;
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("supported", Napi::Boolean::New(env, supported));
  out.Set("holeBytes", Napi::Number::New(env, supported ? holeBytes : 0));
  out.Set("holeCount", Napi::Number::New(env, supported ? holeCount : 0));
  out.Set("extents", Napi::Number::New(env, extents));
  out.Set("unwrittenExtents", Napi::Number::New(env, unwritten));
  out.Set("unwrittenBytes", Napi::Number::New(env, unwrittenBytes));
  out.Set("mappedBytes", Napi::Number::New(env, mappedBytes));
  return out;
}

// directIoAlignment(fd) -> { memoryAlign, offsetAlign } or null when the kernel or filesystem
// does not report it (statx STATX_DIOALIGN, Linux 6.1+; 0 values mean "no direct I/O").
static Napi::Value DirectIoAlignment(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info);
  struct statx sx;
  if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) != 0) {
    if (errno == ENOSYS || errno == EINVAL) return env.Null();
    throw ErrnoError(env, errno, "statx");
  }
  if (!(sx.stx_mask & STATX_DIOALIGN)) return env.Null();
  Napi::Object out = Napi::Object::New(env);
  out.Set("memoryAlign", sx.stx_dio_mem_align);
  out.Set("offsetAlign", sx.stx_dio_offset_align);
  return out;
}

// fallocate(fd, mode, offset, length): mode is 'allocate' | 'keep-size' | 'punch-hole' | 'zero-range'.
static Napi::Value Fallocate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info);
  if (info.Length() < 2 || !info[1].IsString()) throw Napi::TypeError::New(env, "mode must be a string");
  std::string name = info[1].As<Napi::String>();
  int mode;
  if (name == "allocate") mode = 0;
  else if (name == "keep-size") mode = FALLOC_FL_KEEP_SIZE;
  else if (name == "punch-hole") mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
  else if (name == "zero-range") mode = FALLOC_FL_ZERO_RANGE;
  else throw Napi::TypeError::New(env, "unknown fallocate mode '" + name + "'");
  off_t offset = static_cast<off_t>(NumArg(info, 2, "offset"));
  off_t length = static_cast<off_t>(NumArg(info, 3, "length"));
  int r;
  do r = fallocate(fd, mode, offset, length);
  while (r != 0 && errno == EINTR);
  if (r != 0) throw ErrnoError(env, errno, "fallocate");
  return env.Undefined();
}

// fillDirect(fd, offset, length, byte): writes `byte` over the range through an aligned buffer,
// so it works on an O_DIRECT fd and leaves no page-cache copy behind (which would make
// RWF_NOWAIT writes bounce and spoil a probe).
static Napi::Value FillDirect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info);
  off_t offset = static_cast<off_t>(NumArg(info, 1, "offset"));
  off_t length = static_cast<off_t>(NumArg(info, 2, "length"));
  int byte = static_cast<int>(NumArg(info, 3, "byte")) & 0xff;
  constexpr size_t kChunk = 1 << 20;
  void* p = nullptr;
  if (posix_memalign(&p, 4096, kChunk) != 0) throw ErrnoError(env, ENOMEM, "posix_memalign");
  std::unique_ptr<void, decltype(&free)> guard(p, free);
  memset(p, byte, kChunk);
  while (length > 0) {
    size_t n = length < static_cast<off_t>(kChunk) ? static_cast<size_t>(length) : kChunk;
    ssize_t w = pwrite(fd, p, n, offset);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw ErrnoError(env, errno, "pwrite");
    }
    if (w == 0) throw ErrnoError(env, EIO, "pwrite");
    offset += w;
    length -= w;
  }
  return env.Undefined();
}

void InitAllocation(Napi::Env env, Napi::Object exports) {
  exports.Set("holes", Napi::Function::New(env, Holes, "holes"));
  exports.Set("extents", Napi::Function::New(env, Extents, "extents"));
  exports.Set("directIoAlignment", Napi::Function::New(env, DirectIoAlignment, "directIoAlignment"));
  exports.Set("fallocate", Napi::Function::New(env, Fallocate, "fallocate"));
  exports.Set("fillDirect", Napi::Function::New(env, FillDirect, "fillDirect"));
}

}  // namespace spindle
