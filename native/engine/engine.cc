#include "engine.h"
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include "clock.h"
#include "spindle.h"

namespace spindle {

namespace c = counters;

void SubmitStats::Record(uint64_t ns) {
  counters[c::kSubmitCalls] += 1;
  counters[c::kSubmitTotalNs] += double(ns);
  if (double(ns) > counters[c::kSubmitMaxNs]) counters[c::kSubmitMaxNs] = double(ns);
  counters[c::kSubmitHist + c::BucketOfNs(ns)] += 1;
}

// Data pointer and length of an ArrayBuffer, SharedArrayBuffer or typed array / DataView.
static bool MemoryOf(Napi::Value v, uint8_t** data, size_t* len) {
  if (v.IsTypedArray()) {
    auto ta = v.As<Napi::TypedArray>();
    napi_typedarray_type type;
    size_t length, byte_offset;
    void* ptr;
    napi_value ab;
    if (napi_get_typedarray_info(v.Env(), ta, &type, &length, &ptr, &ab, &byte_offset) != napi_ok) return false;
    *data = static_cast<uint8_t*>(ptr);
    *len = ta.ByteLength();
    return true;
  }
  if (v.IsArrayBuffer()) {
    auto ab = v.As<Napi::ArrayBuffer>();
    *data = static_cast<uint8_t*>(ab.Data());
    *len = ab.ByteLength();
    return true;
  }
  return false;
}

static Napi::Error EngineError(Napi::Env env, int err, const std::string& msg) {
  Napi::Error e = ErrnoError(env, err, "engine");
  e.Set("message", Napi::String::New(env, msg));
  return e;
}

Napi::Function Engine::Define(Napi::Env env) {
  return DefineClass(env, "Engine", {
    InstanceMethod<&Engine::Submit>("submit"),
    InstanceMethod<&Engine::RegisterBuffer>("registerBuffer"),
    InstanceMethod<&Engine::UnregisterBuffer>("unregisterBuffer"),
    InstanceMethod<&Engine::SetNowait>("setNowait"),
    InstanceMethod<&Engine::Destroy>("destroy"),
    InstanceAccessor<&Engine::GetInFlight>("inFlight"),
    InstanceAccessor<&Engine::GetKind>("kind"),
    InstanceAccessor<&Engine::GetBounceStats>("bounceStats"),
  });
}

Engine::Engine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Engine>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "Engine: options object expected");
  Napi::Object o = info[0].As<Napi::Object>();
  auto num = [&](const char* k, double d) { Napi::Value v = o.Get(k); return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : d; };
  auto flag = [&](const char* k) { Napi::Value v = o.Get(k); return v.IsBoolean() && v.As<Napi::Boolean>().Value(); };

  kind_ = o.Get("kind").IsString() ? o.Get("kind").As<Napi::String>().Utf8Value() : "";
  if (kind_ != "threads" && kind_ != "native" && kind_ != "io_uring")
    throw Napi::TypeError::New(env, "Engine: kind must be 'threads', 'native' or 'io_uring'");
  target_.fd = static_cast<int>(num("fd", -1));
  target_.is_block = flag("isBlock");
  target_.alignment = static_cast<uint32_t>(num("alignment", 512));
  if (target_.alignment < 512 || (target_.alignment & (target_.alignment - 1)))
    throw Napi::RangeError::New(env, "Engine: alignment must be a power of two >= 512");
  int fl = fcntl(target_.fd, F_GETFL);
  if (fl < 0) throw ErrnoError(env, errno, "fcntl(F_GETFL)");
  target_.direct = (fl & O_DIRECT) != 0;
  dsync_ = (fl & O_DSYNC) == O_DSYNC;
  if (kind_ == "native" && !target_.direct)
    throw EngineError(env, EINVAL, "aio 'native' needs a file opened with O_DIRECT (cache 'none' or 'directsync'): Linux AIO is only asynchronous with O_DIRECT");
  read_only_ = flag("readOnly") || (fl & O_ACCMODE) == O_RDONLY;
  flush_noop_ = flag("flushNoop");
  nowait_read_ = flag("nowaitRead") && kind_ != "threads";
  nowait_write_ = flag("nowaitWrite") && kind_ != "threads";
  int queue_depth = static_cast<int>(num("queueDepth", 128));
  int max_workers = static_cast<int>(num("maxWorkers", 64));
  int idle_ms = static_cast<int>(num("idleMs", 5000));
  if (queue_depth < 1 || queue_depth > 65536) throw Napi::RangeError::New(env, "Engine: queueDepth must be 1..65536");
  if (max_workers < 1 || max_workers > 1024) throw Napi::RangeError::New(env, "Engine: maxWorkers must be 1..1024");
  bounce_ = std::make_unique<BouncePool>(std::max<size_t>(target_.alignment, 4096));

  Napi::Value cv = o.Get("counters");
  if (cv.IsTypedArray() && cv.As<Napi::TypedArray>().TypedArrayType() == napi_float64_array) {
    uint8_t* d;
    size_t len;
    if (!MemoryOf(cv, &d, &len) || len < c::kSlots * sizeof(double)) throw Napi::RangeError::New(env, "Engine: counters array too small");
    counters_ = reinterpret_cast<double*>(d);
    counters_ref_ = Napi::Persistent(cv);
  } else {
    own_counters_.assign(c::kSlots, 0.0);
    counters_ = own_counters_.data();
  }
  counters_[c::kVersion] = c::kCountersVersion;
  submit_stats_.counters = counters_;

  Napi::Value tv = o.Get("tags"), rv = o.Get("results"), fn = o.Get("onComplete");
  if (!tv.IsTypedArray() || tv.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
      !rv.IsTypedArray() || rv.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array || !fn.IsFunction())
    throw Napi::TypeError::New(env, "Engine: tags (Uint32Array), results (Int32Array) and onComplete (function) are required");
  ctags_ = tv.As<Napi::Uint32Array>().Data();
  cresults_ = rv.As<Napi::Int32Array>().Data();
  ccap_ = std::min(tv.As<Napi::Uint32Array>().ElementLength(), rv.As<Napi::Int32Array>().ElementLength());
  if (ccap_ == 0) throw Napi::RangeError::New(env, "Engine: completion arrays are empty");
  tags_ref_ = Napi::Persistent(tv);
  results_ref_ = Napi::Persistent(rv);
  on_complete_ = Napi::Persistent(fn.As<Napi::Function>());
  async_ = std::make_unique<Napi::AsyncContext>(env, "spindle:engine");

  efd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd_ < 0) throw ErrnoError(env, errno, "eventfd");
  try {
    if (kind_ == "native") backend_ = MakeLinuxAio(target_, queue_depth, efd_);
    if (kind_ == "io_uring") backend_ = MakeIoUring(target_, queue_depth, efd_);
  } catch (const std::system_error& e) {
    close(efd_);
    efd_ = -1;
    throw ErrnoError(env, e.code().value(), e.what());
  }
  pool_ = std::make_unique<ThreadPool>(target_, max_workers, idle_ms, efd_, flush_noop_);

  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  poll_ = new uv_poll_t;
  uv_poll_init(loop, poll_, efd_);
  poll_->data = this;
  uv_poll_start(poll_, UV_READABLE, [](uv_poll_t* h, int status, int) {
    if (status >= 0) static_cast<Engine*>(h->data)->OnReadable();
  });
  uv_unref(reinterpret_cast<uv_handle_t*>(poll_));  // idle engines do not keep the process alive
  timer_ = new uv_timer_t;
  uv_timer_init(loop, timer_);
  timer_->data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(timer_));
  napi_add_env_cleanup_hook(env, CleanupHook, this);
}

Engine::~Engine() {
  if (!destroyed_) {
    DrainBlocking();
    Release();
  }
  if (!in_cleanup_) napi_remove_env_cleanup_hook(env_, CleanupHook, this);
  for (Req* r : free_) delete r;
}

// The thread's environment is going away (worker exit) with the engine still open:
// wait for the kernel and the pool before anything they write into is freed.
void Engine::CleanupHook(void* arg) {
  Engine* self = static_cast<Engine*>(arg);
  self->in_cleanup_ = true;
  if (!self->destroyed_) {
    self->DrainBlocking();
    self->Release();
  }
}

Req* Engine::Alloc() {
  if (free_.empty()) {
    Req* r = new Req;
    r->user_iov.reserve(8);
    r->iov.reserve(8);
    return r;
  }
  Req* r = free_.back();
  free_.pop_back();
  return r;
}

void Engine::Recycle(Req* r) {
  r->user_iov.clear();
  r->iov.clear();
  r->bounce = nullptr;
  r->done = 0;
  r->res = 0;
  r->nowait = r->via_pool = r->immediate = false;
  r->retries = 0;
  r->barrier = false;
  r->covered.clear();
  r->unaligned = r->serialising = false;
  free_.push_back(r);
}

void Engine::Signal() {
  uint64_t one = 1;
  ssize_t ignored = write(efd_, &one, sizeof one);
  (void)ignored;
}

void Engine::Immediate(Req* r, int64_t res) {
  r->res = res;
  r->immediate = true;
  ready_.push_back(r);
}

static bool Misaligned(const std::vector<iovec>& iov, uint32_t align) {
  for (const iovec& v : iov)
    if ((reinterpret_cast<uintptr_t>(v.iov_base) | v.iov_len) & (align - 1)) return true;
  return false;
}

// Submission records come from JS as doubles; a cast of NaN, a negative or an out-of-range double
// to an integer type is undefined behaviour, so every field is checked to be a whole number in
// range before it is converted.
static constexpr double k2p32 = 4294967296.0;
static constexpr double k2p63 = 9223372036854775808.0;
// Segments one request may have: far above any guest's (virtio seg_max 126, split at memory
// region boundaries), low enough that a bogus count is caught before the record is walked.
static constexpr double kMaxSegments = 65536;
static constexpr uint32_t kKnownFlags = kWriteZeroesMayUnmap | kFua;

static inline bool WholeBelow(double v, double limit) { return v >= 0 && v < limit && v == std::floor(v); }

Napi::Value Engine::Submit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (destroyed_) throw EngineError(env, EBADF, "engine is closed");
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array || !info[1].IsNumber())
    throw Napi::TypeError::New(env, "submit(queue: Float64Array, count)");
  auto sq = info[0].As<Napi::Float64Array>();
  const double* w = sq.Data();
  const size_t n = sq.ElementLength();
  const double count_d = info[1].As<Napi::Number>().DoubleValue();
  if (!WholeBelow(count_d, k2p32)) throw Napi::RangeError::New(env, "submit: the request count must be a whole number from 0 to 2^32-1");
  const uint32_t count = static_cast<uint32_t>(count_d);
  // First the records' framing (tag and segment count): a record whose tag or extent cannot be
  // trusted cannot be completed, so such a batch is refused whole, before anything is submitted.
  for (size_t i = 0, q = 0; i < count; i++) {
    if (q + 6 > n) throw Napi::RangeError::New(env, "submit: queue shorter than its request count");
    if (!WholeBelow(w[q], k2p32)) throw Napi::RangeError::New(env, "submit: request " + std::to_string(i) + " has a tag that is not a whole number from 0 to 2^32-1");
    if (!WholeBelow(w[q + 5], kMaxSegments + 1)) throw Napi::RangeError::New(env, "submit: request " + std::to_string(i) + " has a segment count that is not a whole number from 0 to 65536");
    q += 6 + size_t(w[q + 5]) * 3;
    if (q > n) throw Napi::RangeError::New(env, "submit: request segments run past the queue");
  }
  uint64_t now = MonoNs();
  size_t p = 0;
  for (uint32_t i = 0; i < count; i++) {
    const uint32_t nseg = static_cast<uint32_t>(w[p + 5]);
    Req* r = Alloc();
    r->tag = static_cast<uint32_t>(w[p]);
    const double op = w[p + 1], offset = w[p + 2], length = w[p + 3], flags = w[p + 4];
    // Anything else wrong in the record fails just this request, with EINVAL.
    int64_t err = 0;
    if (!WholeBelow(offset, k2p63) || !WholeBelow(length, k2p63) || offset + length > k2p63 || !WholeBelow(flags, k2p32) ||
        (static_cast<uint32_t>(flags) & ~kKnownFlags))
      err = -EINVAL;
    r->offset = err ? 0 : static_cast<uint64_t>(offset);
    r->length = err ? 0 : static_cast<uint64_t>(length);
    r->flags = err ? 0 : static_cast<uint32_t>(flags);
    r->start_ns = now;
    p += 6;
    uint64_t seg_total = 0;
    for (uint32_t s = 0; s < nseg; s++, p += 3) {
      if (!WholeBelow(w[p], k2p32) || !WholeBelow(w[p + 1], k2p63) || !WholeBelow(w[p + 2], k2p63)) {
        err = err ? err : -EINVAL;
        continue;
      }
      auto it = bufs_.find(static_cast<uint32_t>(w[p]));
      uint64_t boff = static_cast<uint64_t>(w[p + 1]), len = static_cast<uint64_t>(w[p + 2]);
      if (it == bufs_.end() || it->second.dead || boff > it->second.length || len > it->second.length - boff) {
        err = err ? err : -EFAULT;
        continue;
      }
      if (len) r->user_iov.push_back({it->second.data + boff, len});
      seg_total += len;
    }
    if (inflight_++ == 0 && !keep_alive_) {
      // Keep the JS object (and the memory it references) alive while the kernel may write to it.
      Ref();
      keep_alive_ = true;
      uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
    }
    if (!(op >= 0 && op <= 4 && op == std::floor(op))) { r->op = kRead; Immediate(r, -EINVAL); continue; }
    r->op = static_cast<Op>(static_cast<int>(op));
    if (r->op == kRead || r->op == kWrite) r->length = seg_total;
    if (err) { Immediate(r, err); continue; }
    if (read_only_ && r->op != kRead && r->op != kFlush) { Immediate(r, -EROFS); continue; }
    if (r->op == kFlush && flush_noop_) { Immediate(r, 0); continue; }
    if (r->op != kFlush && r->length == 0) { Immediate(r, 0); continue; }
    if (r->op != kFlush && ((r->offset | r->length) & (target_.alignment - 1)) &&
        (((r->op == kRead || r->op == kWrite) && target_.direct) || (r->op == kWriteZeroes && target_.is_block))) {
      // The kernel takes whole logical blocks here. A virtio guest is told the block size and
      // never sends these; the pool does them on the covering blocks, off the fast path.
      r->unaligned = true;
      r->serialising = r->op != kRead;
      r->via_pool = true;
      r->iov = r->user_iov;
    } else if ((r->op == kRead || r->op == kWrite) &&
        ((target_.direct && Misaligned(r->user_iov, target_.alignment)) || r->user_iov.size() > IOV_MAX)) {
      void* b = bounce_->Get(r->length);
      if (!b) { Immediate(r, -ENOMEM); continue; }
      r->bounce = b;
      if (r->op == kWrite) GatherIov(r->user_iov, b);
      r->iov.assign(1, iovec{b, r->length});
    } else {
      r->iov = r->user_iov;
    }
    if (r->op != kRead && (target_.direct || target_.is_block)) {
      Lock(r);
      if (MustWait(r, parked_.size())) { parked_.push_back(r); continue; }
      Track(r);
    }
    Dispatch(r);
  }
  counters_[c::kInFlight] = double(inflight_);
  FlushBackend();
  if (!ready_.empty()) Signal();
  counters_[c::kCpuLoopNs] += double(MonoNs() - now);
  return env.Undefined();
}

// ---- Serialising read-modify-writes against overlapping writes (QEMU's serialising requests) ----

// The range a modifying request holds: its own, or for a read-modify-write the blocks covering
// it, to the end of the file when the last of them reaches past it (the write may grow the file
// and cut it back).
void Engine::Lock(Req* r) {
  r->lock_begin = r->offset;
  r->lock_end = r->offset + r->length;
  if (!r->serialising) return;
  const uint64_t a = target_.alignment;
  r->lock_begin &= ~uint64_t(a - 1);
  r->lock_end = (r->lock_end + a - 1) & ~uint64_t(a - 1);
  struct stat st;
  if (!target_.is_block && (fstat(target_.fd, &st) != 0 || uint64_t(st.st_size) < r->lock_end)) r->lock_end = UINT64_MAX;
}

static inline bool Overlap(const Req* a, const Req* b) { return a->lock_begin < b->lock_end && b->lock_begin < a->lock_end; }

// Whether `r` must wait: it overlaps one of the first `ahead` parked requests (order is kept),
// or a request in flight it may not run beside (a read-modify-write beside any overlapping write,
// any write beside an overlapping read-modify-write). Costs nothing while none is around.
bool Engine::MustWait(const Req* r, size_t ahead) const {
  if (!r->serialising && serialising_ == 0 && ahead == 0) return false;
  for (size_t i = 0; i < ahead; i++)
    if (Overlap(parked_[i], r)) return true;
  for (const Req* t : tracked_)
    if ((r->serialising || t->serialising) && Overlap(t, r)) return true;
  return false;
}

void Engine::Track(Req* r) {
  r->track_index = tracked_.size();
  tracked_.push_back(r);
  if (r->serialising) serialising_++;
}

void Engine::Untrack(Req* r) {
  Req* last = tracked_.back();
  tracked_[r->track_index] = last;
  last->track_index = r->track_index;
  tracked_.pop_back();
  r->track_index = SIZE_MAX;
  if (r->serialising) serialising_--;
  for (size_t i = 0; i < parked_.size();) {
    Req* p = parked_[i];
    if (MustWait(p, i)) { i++; continue; }
    parked_.erase(parked_.begin() + long(i));
    Track(p);
    Dispatch(p);
  }
}

void Engine::Dispatch(Req* r) {
  r->nowait = false;
  if (backend_ && !r->via_pool && backend_->Handles(r)) {
    if ((r->op == kRead && nowait_read_) || (r->op == kWrite && nowait_write_)) {
      r->nowait = true;
      counters_[r->op == kRead ? c::kNowaitReadSubmitted : c::kNowaitWriteSubmitted] += 1;
    }
    backend_->Enqueue(r);
  } else {
    r->via_pool = true;
    pool_->Push(r);
  }
}

void Engine::FlushBackend() {
  if (!backend_) return;
  size_t before = ready_.size();
  backend_->Flush(ready_, submit_stats_);
  if (ready_.size() != before) Signal();
  if (backend_->Stuck() && !uv_is_active(reinterpret_cast<uv_handle_t*>(timer_))) {
    // The kernel refused with EAGAIN and nothing in flight will wake us: try again shortly.
    uv_timer_start(timer_, [](uv_timer_t* t) { static_cast<Engine*>(t->data)->FlushBackend(); }, 1, 0);
  }
}

void Engine::Collect(std::vector<Req*>& batch) {
  batch.insert(batch.end(), ready_.begin(), ready_.end());
  ready_.clear();
  if (backend_) backend_->Reap(batch);
  pool_->TakeDone(batch);
}

void Engine::Finish(Req* r) {
  int64_t res = r->res;
  if (r->immediate) return Complete(r, res);
  if (r->op == kRead || r->op == kWrite) {
    if (r->nowait && (res == -EAGAIN || res == -EOPNOTSUPP)) {
      // Would have blocked (or nowait unsupported here): do it once from a thread that may block.
      counters_[r->op == kRead ? c::kNowaitReadFallbacks : c::kNowaitWriteFallbacks] += 1;
      r->nowait = false;
      r->via_pool = true;
      pool_->Push(r);
      return;
    }
    if (res == -EAGAIN && !r->via_pool && r->retries++ < 1000) {
      backend_->Enqueue(r);  // device queue full: retry later, not rerouted
      return;
    }
    if (res < 0) return Complete(r, res);
    r->done += uint64_t(res);
    if (r->done >= r->length) return Written(r);
    if (res == 0) {
      if (r->op == kWrite) return Complete(r, -EIO);
      for (const iovec& v : r->iov) memset(v.iov_base, 0, v.iov_len);  // past end of file
      return Complete(r, 0);
    }
    AdvanceIov(r->iov, uint64_t(res));  // short I/O: continue the remainder
    return Dispatch(r);
  }
  if (res == -EOPNOTSUPP && !r->via_pool) {
    r->via_pool = true;  // the pool knows the fallbacks (writing zeros by hand)
    pool_->Push(r);
    return;
  }
  if (res == 0 && r->op == kWriteZeroes) return Written(r);
  Complete(r, res);
}

// A write finished: it completes now, or once an fdatasync covers it (FUA, QEMU's emulation).
void Engine::Written(Req* r) {
  if ((r->flags & kFua) && !flush_noop_ && !dsync_) awaiting_flush_.push_back(r);
  else Complete(r, 0);
}

// Called after each round of finishing requests, never from inside one, so that every write
// finished in the round rides on the same barrier.
void Engine::IssueBarrier() {
  if (barrier_in_flight_ || awaiting_flush_.empty()) return;
  Req* f = Alloc();
  f->tag = 0;
  f->op = kFlush;
  f->flags = 0;
  f->offset = f->length = 0;
  f->start_ns = now_ns_;
  f->barrier = true;
  f->covered.swap(awaiting_flush_);  // the vectors trade capacity: no allocation once warm
  barrier_in_flight_ = true;
  Dispatch(f);
}

void Engine::Complete(Req* r, int64_t res) {
  if (r->bounce) {
    if (r->op == kRead && res == 0) ScatterIov(r->bounce, r->user_iov);
    bounce_->Put(r->bounce, r->length);
  }
  int dir = r->op;
  double* d = counters_ + c::kDirBase + dir * 3;
  d[0] += 1;
  if (res < 0) d[2] += 1;
  else d[1] += double(r->length);
  uint64_t lat = now_ns_ > r->start_ns ? now_ns_ - r->start_ns : 0;
  counters_[c::kLatencyHist + dir * c::kBuckets + c::BucketOfNs(lat)] += 1;
  if (r->barrier) {
    // The writes it covers are durable (or fail with the flush's errno), and complete now.
    barrier_in_flight_ = false;
    for (Req* w : r->covered) Complete(w, res < 0 ? res : 0);
    Recycle(r);
    return;
  }
  completed_.emplace_back(r->tag, static_cast<int32_t>(res));
  inflight_--;
  if (r->track_index != SIZE_MAX) Untrack(r);
  Recycle(r);
}

void Engine::OnReadable() {
  if (destroyed_) return;
  uint64_t t0 = MonoNs();
  uint64_t v;
  ssize_t ignored = read(efd_, &v, sizeof v);  // one read resets the counter
  (void)ignored;
  for (int round = 0; round < 64; round++) {
    batch_.clear();
    Collect(batch_);
    if (batch_.empty()) break;
    now_ns_ = MonoNs();
    for (Req* r : batch_) Finish(r);
    FlushBackend();
  }
  if (!awaiting_flush_.empty()) {
    IssueBarrier();
    FlushBackend();
  }
  counters_[c::kCpuLoopNs] += double(MonoNs() - t0);
  if (!ready_.empty()) Signal();
  Deliver();
}

void Engine::Deliver() {
  counters_[c::kCpuPoolNs] += double(pool_->TakeCpuNs());
  counters_[c::kInFlight] = double(inflight_);
  if (have_dead_bufs_ && inflight_ == 0) PruneDeadBuffers();
  if (completed_.empty()) return;
  delivering_.swap(completed_);
  bool release = inflight_ == 0 && keep_alive_;
  if (release) {
    keep_alive_ = false;
    uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
  }
  Napi::Env env = env_;
  Napi::HandleScope scope(env);
  for (size_t i = 0; i < delivering_.size() && !in_cleanup_;) {
    size_t k = std::min(ccap_, delivering_.size() - i);
    for (size_t j = 0; j < k; j++) {
      ctags_[j] = delivering_[i + j].first;
      cresults_[j] = delivering_[i + j].second;
    }
    i += k;
    try {
      on_complete_.MakeCallback(Value(), {Napi::Number::New(env, double(k))}, *async_);
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());  // an exception in the JS callback is the caller's bug: report it as uncaught
    }
  }
  delivering_.clear();
  if (release) Unref();  // last: the object may be collected after this
}

void Engine::DrainBlocking() {
  while (inflight_ > 0) {
    batch_.clear();
    Collect(batch_);
    if (batch_.empty()) {
      if (backend_ && backend_->InKernel()) backend_->WaitReap(batch_, 5);
      else if (backend_ && backend_->Queued()) { FlushBackend(); if (backend_->Stuck()) usleep(1000); }
      else pool_->WaitIdle();
      pool_->TakeDone(batch_);
    }
    now_ns_ = MonoNs();
    for (Req* r : batch_) Finish(r);
    IssueBarrier();
    FlushBackend();
  }
  completed_.clear();
  counters_[c::kInFlight] = 0;
}

void Engine::PruneDeadBuffers() {
  for (auto it = bufs_.begin(); it != bufs_.end();) {
    if (it->second.dead) it = bufs_.erase(it);
    else ++it;
  }
  have_dead_bufs_ = false;
}

void Engine::Release() {
  destroyed_ = true;
  backend_.reset();
  pool_.reset();
  if (poll_) {
    uv_poll_stop(poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    poll_ = nullptr;
  }
  if (timer_) {
    uv_timer_stop(timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    timer_ = nullptr;
  }
  if (efd_ >= 0) close(efd_);
  efd_ = -1;
  if (!in_cleanup_) bufs_.clear();
  if (keep_alive_ && !in_cleanup_) {
    keep_alive_ = false;
    Unref();
  }
}

Napi::Value Engine::RegisterBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (destroyed_) throw EngineError(env, EBADF, "engine is closed");
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  Buf b;
  if (!MemoryOf(info[1], &b.data, &b.length)) throw Napi::TypeError::New(env, "registerBuffer(id, ArrayBuffer | TypedArray)");
  auto it = bufs_.find(id);
  if (it != bufs_.end() && !it->second.dead) throw Napi::Error::New(env, "registerBuffer: id " + std::to_string(id) + " is already registered");
  b.ref = Napi::Persistent(info[1]);
  bufs_[id] = std::move(b);
  return env.Undefined();
}

Napi::Value Engine::UnregisterBuffer(const Napi::CallbackInfo& info) {
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  auto it = bufs_.find(id);
  if (it == bufs_.end()) return info.Env().Undefined();
  if (inflight_ == 0) bufs_.erase(it);
  else { it->second.dead = true; have_dead_bufs_ = true; }  // the kernel may still be writing into it
  return info.Env().Undefined();
}

Napi::Value Engine::SetNowait(const Napi::CallbackInfo& info) {
  bool supported = kind_ != "threads";
  nowait_read_ = supported && info[0].ToBoolean().Value();
  nowait_write_ = supported && info[1].ToBoolean().Value();
  return Napi::Boolean::New(info.Env(), supported);
}

Napi::Value Engine::Destroy(const Napi::CallbackInfo& info) {
  if (!destroyed_) {
    DrainBlocking();
    Release();
  }
  return info.Env().Undefined();
}

Napi::Value Engine::GetInFlight(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(inflight_)); }
Napi::Value Engine::GetKind(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), kind_); }

// How often a bounced request had to allocate memory, and how often it reused a pooled buffer.
Napi::Value Engine::GetBounceStats(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("allocations", double(bounce_->allocations()));
  o.Set("reuses", double(bounce_->reuses()));
  return o;
}

void InitEngine(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", Engine::Define(env));
  Napi::Object layout = Napi::Object::New(env);
  layout.Set("version", c::kCountersVersion);
  layout.Set("slots", c::kSlots);
  exports.Set("engineCountersLayout", layout);
}

}  // namespace spindle
