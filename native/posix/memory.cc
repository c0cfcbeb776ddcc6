// Shared memory: memfd_create, and mmap of an fd exposed to JS as a Uint8Array (zero copy: the
// vhost-user backend maps each guest RAM region this way, and the engines point their iovecs
// straight into it).
//
// memfdCreate(name, size, seals) -> fd; seals (F_SEAL_*) are added once it has its size.
// fileSeals(fd) -> the fd's seals (F_GET_SEALS), or -1 when its file cannot carry any (not shmem).
// onHugetlbfs(fd) -> true when the fd's file lives on hugetlbfs.
// mapShared(fd, offset, length, writable = true) -> Uint8Array over [offset, offset+length) of fd
// unmap(view): detaches the view's ArrayBuffer (every view becomes empty), then unmaps. Idempotent.
// mapsInV8() -> true when mappings are placed inside V8-owned ArrayBuffers (see below).
//
// Two ways to hand the mapping to JS:
// - External (plain Node): mmap anywhere, wrap it with napi_create_external_arraybuffer; the view
//   starts at byteOffset 0. Never unmapped explicitly, it is unmapped when the ArrayBuffer is
//   collected or when the thread's environment is torn down.
// - In V8 (Electron >= 21, whose V8 memory cage refuses external buffers with
//   napi_no_external_buffers_allowed; forced with SPINDLE_MAP_IN_V8=1): allocate an ordinary
//   ArrayBuffer of the mapping's size plus one alignment unit, and mmap(MAP_FIXED|MAP_SHARED) the
//   file over the aligned part of its backing store; the view starts at that aligned byteOffset.
//   Why this is sound: V8 never moves a backing store (it lives outside the GC heap, allocated
//   once by the embedder's ArrayBuffer::Allocator - calloc in Node, PartitionAlloc inside the
//   cage in Electron - and freed once, when the last BackingStore reference goes). Freeing it while
//   the file is mapped over it would hand shared guest RAM (or, after a glibc munmap, a hole) back
//   to the allocator. So: (1) we hold a strong reference to the ArrayBuffer while mapped, because
//   V8 frees unreachable backing stores from its ArrayBufferSweeper (possibly on a background
//   thread) with no ordering against Node-API finalizers, and (2) before the buffer is detached
//   (unmap) or the environment frees everything (cleanup hook: worker exit), we put an anonymous
//   private mapping back, which is what the allocator had there. The buffer must never be
//   transferred (postMessage transfer list, ArrayBuffer.prototype.transfer): that would move the
//   backing store out of our control while mapped; Spindle never transfers guest memory.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <unordered_map>
#include "spindle.h"

#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

namespace spindle {

namespace {

// The V8 sandbox caps an ArrayBuffer at 32 GiB - 1, and ArrayBuffer::New (all napi offers) aborts
// the process on a failed allocation instead of throwing: refuse larger regions up front.
constexpr uint64_t kMaxInV8Bytes = (uint64_t(32) << 30) - 1;

// Set once any environment sees napi_no_external_buffers_allowed: a property of the V8 build.
std::atomic<bool> externalRefused{false};

bool MapInV8() {
  if (externalRefused.load(std::memory_order_relaxed)) return true;
  const char* e = getenv("SPINDLE_MAP_IN_V8");
  return e && e[0] == '1' && e[1] == '\0';
}

struct Mapping {
  void* base = nullptr;          // aligned start of the shared mmap
  size_t mapLength = 0;          // bytes mapped at base (a multiple of the alignment)
  void* key = nullptr;           // the ArrayBuffer's data pointer (how unmap finds the mapping)
  bool inV8 = false;             // mapped over a V8-owned backing store: restore instead of munmap
  napi_ref keepAlive = nullptr;  // inV8: keeps the backing store allocated while mapped
  bool unmapped = false;
  bool hookRegistered = false;
};

// Per thread (each environment runs on its own thread): ArrayBuffer data pointer -> live mapping.
thread_local std::unordered_map<void*, Mapping*> liveMappings;

// Puts anonymous zeroed memory back where a file was mapped over allocator memory.
bool RestoreAnonymous(void* addr, size_t length) {
  return mmap(addr, length, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) !=
         MAP_FAILED;
}

// Leaving the file mapped inside memory the allocator is about to reuse would corrupt guest RAM
// and the heap alike; with no way to restore it, stopping is the only safe move.
[[noreturn]] void DieUnrestorable(int err) {
  fprintf(stderr, "spindle: cannot restore allocator memory under a guest memory mapping: %s\n",
          strerror(err));
  abort();
}

// Unmaps; false (errno set) only when an in-V8 mapping could not be restored.
bool Release(Mapping* m) {
  if (m->unmapped) return true;
  if (m->inV8) {
    if (!RestoreAnonymous(m->base, m->mapLength)) return false;
  } else {
    munmap(m->base, m->mapLength);
  }
  m->unmapped = true;
  liveMappings.erase(m->key);
  return true;
}

// Environment teardown (worker exit): V8 frees every backing store right after, restore first.
void OnEnvCleanup(void* arg) {
  Mapping* m = static_cast<Mapping*>(arg);
  m->hookRegistered = false;
  if (!Release(m)) DieUnrestorable(errno);
  // The environment deletes its references itself; an in-V8 mapping has no finalizer to free m.
  if (m->inV8) delete m;
}

void OnFinalize(napi_env env, void* /*data*/, void* hint) {
  Mapping* m = static_cast<Mapping*>(hint);
  Release(m);
  if (m->hookRegistered) napi_remove_env_cleanup_hook(env, OnEnvCleanup, m);
  delete m;
}

void ProbeExternalBuffers(napi_env env) {
  static char probe;
  napi_value ab;
  if (napi_create_external_arraybuffer(env, &probe, 1, nullptr, nullptr, &ab) ==
      napi_no_external_buffers_allowed)
    externalRefused.store(true);
}

}  // namespace

// memfdCreate(name, sizeBytes, seals) -> fd (close-on-exec, sized with ftruncate, then sealed
// with `seals` when not 0: F_SEAL_SHRINK | F_SEAL_GROW keeps the size what every mapping of it
// expects, so nobody holding the fd can make those mappings fault).
static Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>().Utf8Value();
  int64_t size = info[1].As<Napi::Number>().Int64Value();
  int seals = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : 0;
  if (size < 0) throw Napi::RangeError::New(env, "memfdCreate: size must not be negative");
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC | (seals ? MFD_ALLOW_SEALING : 0));
  if (fd < 0) throw ErrnoError(env, errno, "memfd_create", name);
  if (ftruncate(fd, size) != 0) {
    int e = errno;
    close(fd);
    throw ErrnoError(env, e, "ftruncate", name);
  }
  if (seals && fcntl(fd, F_ADD_SEALS, seals) != 0) {
    int e = errno;
    close(fd);
    throw ErrnoError(env, e, "fcntl(F_ADD_SEALS)", name);
  }
  return Napi::Number::New(env, fd);
}

// fileSeals(fd) -> F_GET_SEALS, or -1 when the file cannot carry seals (EINVAL: not shmem or hugetlbfs).
static Napi::Value FileSeals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 && errno != EINVAL) throw ErrnoError(env, errno, "fcntl(F_GET_SEALS)");
  return Napi::Number::New(env, seals < 0 ? -1 : seals);
}

static bool OnHugetlbfs(int fd) {
  struct statfs sfs;
  return fstatfs(fd, &sfs) == 0 && static_cast<uint64_t>(sfs.f_type) == HUGETLBFS_MAGIC;
}

static Napi::Value OnHugetlbfsJs(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), OnHugetlbfs(info[0].As<Napi::Number>().Int32Value()));
}

static void Track(Napi::Env env, Mapping* m) {
  liveMappings[m->key] = m;
  if (napi_add_env_cleanup_hook(env, OnEnvCleanup, m) == napi_ok) m->hookRegistered = true;
}

// External path: the mapping is the ArrayBuffer. Returns nullptr if this runtime refuses it.
static napi_value MapExternal(Napi::Env env, int fd, uint64_t alignedOffset, uint64_t skew, uint64_t length,
                              size_t mapLength, int prot) {
  void* base = mmap(nullptr, mapLength, prot, MAP_SHARED, fd, static_cast<off_t>(alignedOffset));
  if (base == MAP_FAILED) throw ErrnoError(env, errno, "mmap");
  auto* m = new Mapping();
  m->base = base;
  m->mapLength = mapLength;
  m->key = static_cast<char*>(base) + skew;
  napi_value ab, view;
  napi_status status =
      napi_create_external_arraybuffer(env, m->key, static_cast<size_t>(length), OnFinalize, m, &ab);
  if (status != napi_ok) {
    munmap(base, mapLength);
    delete m;
    if (status == napi_no_external_buffers_allowed) {
      externalRefused.store(true);
      return nullptr;
    }
    throw Napi::Error::New(env, "mapShared: could not create an ArrayBuffer over the mapping");
  }
  Track(env, m);
  if (napi_create_typedarray(env, napi_uint8_array, static_cast<size_t>(length), ab, 0, &view) != napi_ok)
    throw Napi::Error::New(env, "mapShared: could not create a view of the mapping");
  return view;
}

// In-V8 path: the file is mapped over the aligned part of a V8-owned backing store.
static napi_value MapInsideV8(Napi::Env env, int fd, uint64_t alignedOffset, uint64_t skew, uint64_t length,
                              size_t mapLength, uint64_t align, int prot) {
  uint64_t allocLength = mapLength + align;
  if (allocLength > kMaxInV8Bytes)
    throw Napi::RangeError::New(
        env, "mapShared: regions over 32 GiB cannot be mapped in this runtime (it refuses external buffers)");
  napi_value ab;
  void* data = nullptr;
  if (napi_create_arraybuffer(env, static_cast<size_t>(allocLength), &data, &ab) != napi_ok || !data)
    throw Napi::Error::New(env, "mapShared: could not allocate an ArrayBuffer to map into");
  uintptr_t start = reinterpret_cast<uintptr_t>(data);
  uintptr_t aligned = (start + align - 1) & ~static_cast<uintptr_t>(align - 1);
  void* base = reinterpret_cast<void*>(aligned);
  // On failure MAP_FIXED may already have dropped the old pages: put anonymous memory back before
  // the (unreferenced) ArrayBuffer can be collected and freed.
  if (mmap(base, mapLength, prot, MAP_SHARED | MAP_FIXED, fd, static_cast<off_t>(alignedOffset)) ==
      MAP_FAILED) {
    int e = errno;
    if (!RestoreAnonymous(base, mapLength)) DieUnrestorable(errno);
    throw ErrnoError(env, e, "mmap");
  }
  auto* m = new Mapping();
  m->base = base;
  m->mapLength = mapLength;
  m->key = data;
  m->inV8 = true;
  napi_value view;
  if (napi_create_reference(env, ab, 1, &m->keepAlive) != napi_ok ||
      napi_create_typedarray(env, napi_uint8_array, static_cast<size_t>(length), ab,
                             static_cast<size_t>(aligned - start + skew), &view) != napi_ok) {
    if (!RestoreAnonymous(base, mapLength)) DieUnrestorable(errno);
    if (m->keepAlive) napi_delete_reference(env, m->keepAlive);
    delete m;
    throw Napi::Error::New(env, "mapShared: could not create a view of the mapping");
  }
  Track(env, m);
  return view;
}

static Napi::Value MapShared(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber())
    throw Napi::TypeError::New(env, "mapShared(fd, offset, length[, writable])");
  int fd = info[0].As<Napi::Number>().Int32Value();
  double offsetD = info[1].As<Napi::Number>().DoubleValue();
  double lengthD = info[2].As<Napi::Number>().DoubleValue();
  bool writable = info.Length() < 4 || info[3].ToBoolean();
  if (!(offsetD >= 0) || !(lengthD > 0) || offsetD > 9007199254740991.0 || lengthD > 9007199254740991.0)
    throw Napi::RangeError::New(env, "mapShared: offset must be >= 0 and length > 0");
  uint64_t offset = static_cast<uint64_t>(offsetD);
  uint64_t length = static_cast<uint64_t>(lengthD);
  // Pages past the end of a file fault with SIGBUS when touched: refuse such ranges up front
  // (a frontend's memory table could describe one). memfd and hugetlbfs are regular files.
  struct stat st;
  if (fstat(fd, &st) != 0) throw ErrnoError(env, errno, "fstat");
  if (S_ISREG(st.st_mode) && offset + length > static_cast<uint64_t>(st.st_size))
    throw ErrnoError(env, EINVAL, "mmap (the range ends beyond the end of the file)");
  // hugetlbfs maps (and takes offsets) in whole huge pages.
  uint64_t align = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  struct statfs sfs;
  if (fstatfs(fd, &sfs) == 0 && static_cast<uint64_t>(sfs.f_type) == HUGETLBFS_MAGIC && sfs.f_bsize > 0)
    align = static_cast<uint64_t>(sfs.f_bsize);
  uint64_t alignedOffset = offset & ~(align - 1);
  uint64_t skew = offset - alignedOffset;
  size_t mapLength = static_cast<size_t>((length + skew + align - 1) & ~(align - 1));
  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  if (!MapInV8()) {
    napi_value view = MapExternal(env, fd, alignedOffset, skew, length, mapLength, prot);
    if (view) return Napi::Value(env, view);
  }
  return Napi::Value(env, MapInsideV8(env, fd, alignedOffset, skew, length, mapLength, align, prot));
}

static Napi::Value Unmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray())
    throw Napi::TypeError::New(env, "unmap(view from mapShared)");
  Napi::ArrayBuffer ab = info[0].As<Napi::TypedArray>().ArrayBuffer();
  void* data = ab.Data();
  if (!data) return env.Undefined();  // already detached
  auto it = liveMappings.find(data);
  if (it == liveMappings.end()) throw Napi::TypeError::New(env, "unmap: not a buffer from mapShared");
  Mapping* m = it->second;
  if (m->inV8) {
    // Restore before detaching: detaching drops V8's last reference and frees the backing store.
    if (!Release(m)) throw ErrnoError(env, errno, "mmap (restoring memory under a guest mapping)");
    if (napi_detach_arraybuffer(env, ab) != napi_ok)
      throw Napi::Error::New(env, "unmap: could not detach the ArrayBuffer");
    napi_delete_reference(env, m->keepAlive);
    if (m->hookRegistered) napi_remove_env_cleanup_hook(env, OnEnvCleanup, m);
    delete m;
    return env.Undefined();
  }
  // Detach first so no JS view can touch the pages after munmap.
  if (napi_detach_arraybuffer(env, ab) != napi_ok)
    throw Napi::Error::New(env, "unmap: could not detach the ArrayBuffer");
  Release(m);
  if (m->hookRegistered) {
    napi_remove_env_cleanup_hook(env, OnEnvCleanup, m);
    m->hookRegistered = false;
  }
  return env.Undefined();
}

static Napi::Value MapsInV8(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), MapInV8());
}

void InitPosixMemory(Napi::Env env, Napi::Object exports) {
  ProbeExternalBuffers(env);
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
  exports.Set("fileSeals", Napi::Function::New(env, FileSeals, "fileSeals"));
  exports.Set("onHugetlbfs", Napi::Function::New(env, OnHugetlbfsJs, "onHugetlbfs"));
  exports.Set("mapShared", Napi::Function::New(env, MapShared, "mapShared"));
  exports.Set("unmap", Napi::Function::New(env, Unmap, "unmap"));
  exports.Set("mapsInV8", Napi::Function::New(env, MapsInV8, "mapsInV8"));
}

}  // namespace spindle
