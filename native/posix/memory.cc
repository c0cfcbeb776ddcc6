// Shared memory: memfd_create, and mmap of an fd exposed to JS as an external ArrayBuffer
// (zero copy: the vhost-user backend maps each guest RAM region this way, and the engines
// point their iovecs straight into it).
//
// mapShared(fd, offset, length, writable = true) -> ArrayBuffer over [offset, offset+length) of fd
// unmap(buffer): detaches the ArrayBuffer (every view becomes empty), then munmaps. Idempotent.
// A mapping never unmapped explicitly is unmapped when the ArrayBuffer is collected, or when
// the thread's environment is torn down.
#include "spindle.h"
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <unordered_map>

namespace spindle {

namespace {

struct Mapping {
  void* base = nullptr;  // page-aligned start of the mmap
  size_t mapLength = 0;
  void* data = nullptr;  // what the ArrayBuffer points at (base + offset's sub-page part)
  bool unmapped = false;
  bool hookRegistered = false;
  napi_env env = nullptr;
};

// Per thread (each environment runs on its own thread): data pointer -> live mapping.
thread_local std::unordered_map<void*, Mapping*> liveMappings;

void Release(Mapping* m) {
  if (m->unmapped) return;
  m->unmapped = true;
  liveMappings.erase(m->data);
  munmap(m->base, m->mapLength);
}

void OnEnvCleanup(void* arg) {
  Mapping* m = static_cast<Mapping*>(arg);
  m->hookRegistered = false;
  Release(m);
}

void OnFinalize(napi_env env, void* /*data*/, void* hint) {
  Mapping* m = static_cast<Mapping*>(hint);
  Release(m);
  if (m->hookRegistered) napi_remove_env_cleanup_hook(env, OnEnvCleanup, m);
  delete m;
}

}  // namespace

// memfdCreate(name, sizeBytes) -> fd (close-on-exec, sized with ftruncate).
static Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>().Utf8Value();
  int64_t size = info[1].As<Napi::Number>().Int64Value();
  if (size < 0) throw Napi::RangeError::New(env, "memfdCreate: size must not be negative");
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) throw ErrnoError(env, errno, "memfd_create", name);
  if (ftruncate(fd, size) != 0) {
    int e = errno;
    close(fd);
    throw ErrnoError(env, e, "ftruncate", name);
  }
  return Napi::Number::New(env, fd);
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
  uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  uint64_t aligned = offset & ~(page - 1);
  uint64_t skew = offset - aligned;
  size_t mapLength = static_cast<size_t>(length + skew);
  void* base = mmap(nullptr, mapLength, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, static_cast<off_t>(aligned));
  if (base == MAP_FAILED) throw ErrnoError(env, errno, "mmap");

  auto* m = new Mapping();
  m->base = base;
  m->mapLength = mapLength;
  m->data = static_cast<char*>(base) + skew;
  m->env = env;
  napi_value ab;
  napi_status status = napi_create_external_arraybuffer(env, m->data, static_cast<size_t>(length), OnFinalize, m, &ab);
  if (status != napi_ok) {
    munmap(base, mapLength);
    delete m;
    // Electron's V8 memory cage refuses external buffers (napi_no_external_buffers_allowed).
    throw Napi::Error::New(env, "mapShared: this runtime does not allow external ArrayBuffers");
  }
  liveMappings[m->data] = m;
  if (napi_add_env_cleanup_hook(env, OnEnvCleanup, m) == napi_ok) m->hookRegistered = true;
  return Napi::Value(env, ab);
}

static Napi::Value Unmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) throw Napi::TypeError::New(env, "unmap(arrayBuffer)");
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  void* data = ab.Data();
  if (!data) return env.Undefined();  // already detached
  auto it = liveMappings.find(data);
  if (it == liveMappings.end()) throw Napi::TypeError::New(env, "unmap: not a buffer from mapShared");
  Mapping* m = it->second;
  // Detach first so no JS view can touch the pages after munmap.
  if (napi_detach_arraybuffer(env, ab) != napi_ok) throw Napi::Error::New(env, "unmap: could not detach the ArrayBuffer");
  Release(m);
  if (m->hookRegistered) {
    napi_remove_env_cleanup_hook(env, OnEnvCleanup, m);
    m->hookRegistered = false;
  }
  return env.Undefined();
}

void InitPosixMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
  exports.Set("mapShared", Napi::Function::New(env, MapShared, "mapShared"));
  exports.Set("unmap", Napi::Function::New(env, Unmap, "unmap"));
}

}  // namespace spindle
