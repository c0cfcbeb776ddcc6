// The measuring half of `spindle inspect --probe`: one libaio request at a time on an O_DIRECT fd,
// with or without RWF_NOWAIT, counting what the kernel honours, what bounces with EAGAIN, and how
// often io_submit itself sleeps (voluntary context switches of this thread, RUSAGE_THREAD).
// The verdict (what the numbers mean) is TypeScript's job: electron/host/advisor/probe.ts.
#include <linux/fs.h>
#include <sys/resource.h>
#include <cstdlib>
#include <cstring>
#include <memory>
#include "clock.h"
#include "linux_aio_syscalls.h"
#include "spindle.h"

namespace spindle {

static long VoluntarySwitches() {
  struct rusage ru;
  getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_nvcsw;
}

// threadRusage() -> { voluntarySwitches, involuntarySwitches, userMicros, systemMicros } of the calling
// thread.
static Napi::Value ThreadRusage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct rusage ru;
  if (getrusage(RUSAGE_THREAD, &ru) != 0) throw ErrnoError(env, errno, "getrusage");
  Napi::Object out = Napi::Object::New(env);
  out.Set("voluntarySwitches", Napi::Number::New(env, static_cast<double>(ru.ru_nvcsw)));
  out.Set("involuntarySwitches", Napi::Number::New(env, static_cast<double>(ru.ru_nivcsw)));
  out.Set("userMicros", Napi::Number::New(env, ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec));
  out.Set("systemMicros", Napi::Number::New(env, ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec));
  return out;
}

struct IoContext {
  io_context_t ctx = nullptr;
  ~IoContext() {
    if (ctx) aio::Destroy(ctx);
  }
};

// aioProbe(fd, op: 'read'|'write', offsets: Float64Array, blockSize, nowait: boolean) ->
//   { submitted, honoured, bounced, bouncedAtSubmit, unsupported, errors, firstError,
//     voluntarySwitches, submitNsTotal, submitNsMax }
// Requests go one per io_submit and are reaped before the next, so every count is per request
// and the switch count covers io_submit alone, not the wait for completion. A request that bounces
// is reissued without nowait, as the engine's thread-pool fallback would: that write then updates
// timestamps and allocates like real traffic, so the next request sees what it would in service.
static Napi::Value AioProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsNumber() || !info[1].IsString() || !info[2].IsTypedArray() ||
      !info[3].IsNumber() || !info[4].IsBoolean())
    throw Napi::TypeError::New(env, "aioProbe(fd, 'read'|'write', Float64Array offsets, blockSize, nowait)");
  int fd = info[0].As<Napi::Number>().Int32Value();
  std::string op = info[1].As<Napi::String>();
  if (op != "read" && op != "write") throw Napi::TypeError::New(env, "op must be 'read' or 'write'");
  Napi::TypedArray ta = info[2].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_float64_array)
    throw Napi::TypeError::New(env, "offsets must be a Float64Array");
  Napi::Float64Array offsets = ta.As<Napi::Float64Array>();
  size_t blockSize = info[3].As<Napi::Number>().Uint32Value();
  if (blockSize == 0 || blockSize > (1u << 20) || (blockSize & 511))
    throw Napi::RangeError::New(env, "blockSize must be a multiple of 512 up to 1 MiB");
  bool nowait = info[4].As<Napi::Boolean>();

  void* p = nullptr;
  if (posix_memalign(&p, 4096, blockSize) != 0) throw ErrnoError(env, ENOMEM, "posix_memalign");
  std::unique_ptr<void, decltype(&free)> buf(p, free);
  memset(p, 0x5a, blockSize);

  IoContext io;
  int r = aio::Setup(1, &io.ctx);
  if (r < 0) throw ErrnoError(env, -r, "io_setup");

  double submitted = 0, honoured = 0, bounced = 0, bouncedAtSubmit = 0, unsupported = 0, errors = 0;
  double switches = 0, nsTotal = 0, nsMax = 0;
  int firstError = 0;
  auto reissue = [&](struct iocb* cb) {
    struct iocb* one[1] = {cb};
    cb->aio_rw_flags = 0;
    int rr;
    do rr = aio::Submit(io.ctx, 1, one);
    while (rr == -EINTR);
    if (rr != 1) return;
    struct io_event ev;
    do rr = aio::Getevents(io.ctx, 1, 1, &ev, nullptr);
    while (rr == -EINTR);
  };
  struct iocb cb;
  auto classify = [&](long res) {
    if (res == static_cast<long>(blockSize)) honoured++;
    else if (res == -EAGAIN) {
      bounced++;
      reissue(&cb);
    } else if (nowait && (res == -EOPNOTSUPP || res == -EINVAL)) unsupported++;
    else {
      errors++;
      if (!firstError) firstError = res < 0 ? static_cast<int>(-res) : EIO;
    }
  };
  for (size_t i = 0; i < offsets.ElementLength(); i++) {
    struct iocb* cbs[1] = {&cb};
    long long off = static_cast<long long>(offsets[i]);
    if (op == "write") io_prep_pwrite(&cb, fd, p, blockSize, off);
    else io_prep_pread(&cb, fd, p, blockSize, off);
    if (nowait) cb.aio_rw_flags = RWF_NOWAIT;
    long before = VoluntarySwitches();
    double t0 = double(MonoNs());
    do r = aio::Submit(io.ctx, 1, cbs);
    while (r == -EINTR);
    double dt = double(MonoNs()) - t0;
    switches += static_cast<double>(VoluntarySwitches() - before);
    nsTotal += dt;
    if (dt > nsMax) nsMax = dt;
    submitted++;
    if (r < 0) {
      if (r == -EAGAIN) bouncedAtSubmit++;
      classify(r);
      continue;
    }
    struct io_event ev;
    do r = aio::Getevents(io.ctx, 1, 1, &ev, nullptr);
    while (r == -EINTR);
    if (r != 1) throw ErrnoError(env, r < 0 ? -r : EIO, "io_getevents");
    classify(static_cast<long>(ev.res));
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("submitted", submitted);
  out.Set("honoured", honoured);
  out.Set("bounced", bounced);
  out.Set("bouncedAtSubmit", bouncedAtSubmit);
  out.Set("unsupported", unsupported);
  out.Set("errors", errors);
  out.Set("firstError", firstError ? Napi::Value(Napi::String::New(env, strerrorname_np(firstError) ?: "EIO"))
                                   : env.Null());
  out.Set("voluntarySwitches", switches);
  out.Set("submitNsTotal", nsTotal);
  out.Set("submitNsMax", nsMax);
  return out;
}

void InitAioProbe(Napi::Env env, Napi::Object exports) {
  exports.Set("threadRusage", Napi::Function::New(env, ThreadRusage, "threadRusage"));
  exports.Set("aioProbe", Napi::Function::New(env, AioProbe, "aioProbe"));
}

}  // namespace spindle
