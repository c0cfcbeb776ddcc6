#include "core.h"
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include "clock.h"

namespace spindle {

namespace c = counters;

void SubmitStats::Record(uint64_t ns) {
  counters->submit_calls += 1;
  counters->submit_total_ns += double(ns);
  if (double(ns) > counters->submit_max_ns) counters->submit_max_ns = double(ns);
  counters->submit_hist[c::BucketOfNs(ns)] += 1;
}

// The file's size for a read-modify-write's range lock (a device never grows).
static uint64_t SizeOf(const Target& t) {
  if (t.is_block) return UINT64_MAX;
  struct stat st;
  return fstat(t.fd, &st) == 0 ? uint64_t(st.st_size) : 0;
}

Core::Core(const CoreOptions& o, int eventfd, c::Counters* counters)
    : target_(o.target),
      read_only_(o.read_only),
      flush_noop_(o.flush_noop),
      nowait_read_(o.nowait_read),
      nowait_write_(o.nowait_write),
      inline_read_(o.inline_read && !o.target.direct),
      inline_write_(o.inline_write && !o.target.direct && !o.dsync),
      efd_(eventfd),
      counters_(counters),
      bounce_(std::max<size_t>(o.target.alignment, 4096)),
      locks_(o.target.alignment, [t = o.target] { return SizeOf(t); }),
      fua_(!o.flush_noop && !o.dsync) {
  counters_->version = c::kCountersVersion;
  submit_stats_.counters = counters_;
  if (o.kind == Kind::kLinuxAio) backend_ = MakeLinuxAio(target_, o.queue_depth, efd_);
  if (o.kind == Kind::kIoUring) backend_ = MakeIoUring(target_, o.queue_depth, efd_, o.uring_first_setup);
  pool_ = std::make_unique<ThreadPool>(target_, o.max_workers, o.idle_ms, efd_, flush_noop_);
  if (o.extent_map && backend_ && !target_.is_block && o.alloc_chunk &&
      !(o.alloc_chunk & (o.alloc_chunk - 1))) {
    file_size_ = SizeOf(target_);
    // A file whose extents cannot be read is served as before (plain native): no map, no guess.
    extent_aware_ = LoadExtents(target_.fd, file_size_, extents_) == 0;
    alloc_chunk_ = std::max<uint64_t>(o.alloc_chunk, target_.alignment);
  }
}

std::string Core::features() const {
  std::string f = backend_ ? backend_->Features() : "";
  if (extent_aware_) f += std::string(f.empty() ? "" : "+") + "extent-map";
  return f;
}

Core::~Core() {
  Shutdown(false);
  for (Req* r : free_) delete r;
}

void Core::Shutdown(bool count_cpu) {
  backend_.reset();
  if (!pool_) return;
  pool_->Stop();  // the workers have exited: their last CPU time is in the total
  if (count_cpu) counters_->cpu_pool_ns += double(pool_->TakeCpuNs(true));
  pool_.reset();
}

Req* Core::Alloc() {
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

void Core::Recycle(Req* r) {
  r->user_iov.clear();
  r->iov.clear();
  r->bounce = nullptr;
  r->done = 0;
  r->res = 0;
  r->route = Route::kNew;
  r->retries = 0;
  r->alloc_begin = r->alloc_end = 0;
  free_.push_back(r);
}

void Core::Signal() {
  uint64_t one = 1;
  ssize_t ignored = write(efd_, &one, sizeof one);
  (void)ignored;
}

void Core::Immediate(Req* r, int64_t res) {
  r->res = res;
  r->route = Route::kImmediate;
  ready_.push_back(r);
}

static bool Misaligned(const std::vector<iovec>& iov, uint32_t align) {
  for (const iovec& v : iov)
    if ((reinterpret_cast<uintptr_t>(v.iov_base) | v.iov_len) & (align - 1)) return true;
  return false;
}

void Core::Start(Req* r, int64_t err) {
  inflight_++;
  const bool data = r->op == kRead || r->op == kWrite;
  if (err) return Immediate(r, err);
  if (read_only_ && r->op != kRead && r->op != kFlush) return Immediate(r, -EROFS);
  if (r->op == kFlush && flush_noop_) return Immediate(r, 0);
  if (r->op != kFlush && r->length == 0) return Immediate(r, 0);
  if (r->op != kFlush && ((r->offset | r->length) & (target_.alignment - 1)) &&
      ((data && target_.direct) || (r->op == kWriteZeroes && target_.is_block))) {
    // The kernel takes whole logical blocks here. A virtio guest is told the block size and
    // never sends these; the pool does them on the covering blocks, off the fast path.
    r->route = Route::kPoolUnaligned;
    r->iov = r->user_iov;
  } else if (data && ((target_.direct && Misaligned(r->user_iov, target_.alignment)) ||
                      r->user_iov.size() > IOV_MAX)) {
    void* b = bounce_.Get(r->length);
    if (!b) return Immediate(r, -ENOMEM);
    r->bounce = b;
    if (r->op == kWrite) GatherIov(r->user_iov, b);
    r->iov.assign(1, iovec{b, r->length});
  } else {
    r->iov = r->user_iov;
  }
  // Modifying requests the kernel may run side by side hold their range (see range_locks.h).
  if (r->op != kRead && (target_.direct || target_.is_block) && !locks_.Acquire(r)) return;
  // A range being discarded or unmapped is a hole from now on (its writes may allocate again).
  if (extent_aware_ && (r->op == kDiscard || (r->op == kWriteZeroes && (r->flags & kWriteZeroesMayUnmap))))
    extents_.Remove(r->offset, r->offset + r->length);
  Dispatch(r);
}

void Core::EndBatch(uint64_t t0) {
  counters_->in_flight = double(inflight_);
  FlushBackend();
  if (!ready_.empty()) Signal();
  counters_->cpu_loop_ns += double(MonoNs() - t0);
}

// To the backend, unless the request is on a pool route already or the backend lacks its op.
// Each dispatch to the kernel decides RWF_NOWAIT afresh (a short I/O's remainder too).
void Core::Dispatch(Req* r) {
  if (backend_ && !r->in_pool() && backend_->Handles(r)) {
    if (extent_aware_ && r->op == kWrite) {
      // Into allocated ranges only; RWF_NOWAIT makes a hole the map did not know about an EAGAIN
      // (Finish: alloc_misses) instead of an allocation inside io_submit.
      if (!extents_.Covers(r->offset + r->done, r->offset + r->length)) return ToAllocate(r);
      r->route = Route::kKernelNowait;
      counters_->nowait_write_submitted += 1;
      backend_->Enqueue(r);
      return;
    }
    if ((r->op == kRead && nowait_read_) || (r->op == kWrite && nowait_write_)) {
      r->route = Route::kKernelNowait;
      (r->op == kRead ? counters_->nowait_read_submitted : counters_->nowait_write_submitted) += 1;
    } else {
      r->route = Route::kKernel;
    }
    backend_->Enqueue(r);
  } else {
    if (!r->in_pool()) {
      if (TryInline(r)) return;
      r->route = Route::kPool;
    }
    pool_->Push(r);
  }
}

// The page-cache fast path (what io_uring does inside the kernel): a read or write the page cache
// can take without blocking is done here, on the owning thread, with no hand-off; RWF_NOWAIT makes
// the kernel say EAGAIN instead of waiting (a read of uncached data, a write that must allocate
// or is throttled), and then the pool does it. Writethrough writes (O_DSYNC) never come here: each
// would wait for the disk. A short result is continued like any short I/O (its rest tried inline
// again, which usually punts). False: the request goes to the pool.
bool Core::TryInline(Req* r) {
  const bool read = r->op == kRead;
  if (!(read ? inline_read_ : (r->op == kWrite && inline_write_))) return false;
  double& punts = read ? counters_->inline_read_punts : counters_->inline_write_punts;
  if (read ? inline_read_refused_ : inline_write_refused_) {
    punts += 1;
    return false;
  }
  const int cnt = int(r->iov.size());  // <= IOV_MAX: Start bounces longer lists
  const off_t pos = off_t(r->offset + r->done);
  ssize_t n = read ? preadv2(target_.fd, r->iov.data(), cnt, pos, RWF_NOWAIT)
                   : pwritev2(target_.fd, r->iov.data(), cnt, pos, RWF_NOWAIT);
  if (n < 0 && errno == EINTR)
    n = read ? preadv2(target_.fd, r->iov.data(), cnt, pos, RWF_NOWAIT)
             : pwritev2(target_.fd, r->iov.data(), cnt, pos, RWF_NOWAIT);
  if (n < 0) {
    // EAGAIN: it would block. EOPNOTSUPP: this filesystem takes no RWF_NOWAIT for this direction
    // (ext4 and tmpfs buffered writes, tmpfs reads on 6.x): stop asking. Anything else: the pool
    // tries again and reports the real error.
    if (errno == EOPNOTSUPP) (read ? inline_read_refused_ : inline_write_refused_) = true;
    punts += 1;
    return false;
  }
  (read ? counters_->inline_read_hits : counters_->inline_write_hits) += 1;
  r->res = n;
  r->route = Route::kInline;
  ready_.push_back(r);
  return true;
}

// Once more from a thread that may block: the kernel would have blocked (nowait) or lacks the op.
void Core::ToPool(Req* r) {
  r->route = Route::kPoolFallback;
  pool_->Push(r);
}

// A write into a hole: the pool allocates the chunks around it, then writes.
void Core::ToAllocate(Req* r) {
  const uint64_t end = r->offset + r->length, mask = alloc_chunk_ - 1;
  r->route = Route::kPoolAllocate;
  r->alloc_begin = r->offset & ~mask;
  r->alloc_end = std::min(std::max((end + mask) & ~mask, end), std::max(file_size_, end));
  counters_->alloc_pool_writes += 1;
  pool_->Push(r);
}

// What a finished request tells about the file's allocation (extent_map.h).
void Core::TrackExtents(Req* r, int64_t res) {
  if (res < 0) return;
  if (r->op == kWrite || (r->op == kWriteZeroes && !(r->flags & kWriteZeroesMayUnmap)))
    extents_.Add(r->offset, r->offset + r->length);
  if (r->route == Route::kPoolAllocate) extents_.Add(r->alloc_begin, r->alloc_end);
}

void Core::FlushBackend() {
  pool_->Submit();
  if (!backend_) return;
  size_t before = ready_.size();
  backend_->Flush(ready_, submit_stats_);
  if (ready_.size() != before) Signal();
}

void Core::Collect(std::vector<Req*>& batch) {
  batch.insert(batch.end(), ready_.begin(), ready_.end());
  ready_.clear();
  if (backend_) backend_->Reap(batch);
  pool_->TakeDone(batch);
}

// What a finished syscall means for its request: complete it, continue a short transfer,
// resubmit after a full device queue, or send it to the pool.
void Core::Finish(Req* r) {
  int64_t res = r->res;
  if (r->route == Route::kImmediate) return Complete(r, res);
  if (r->op == kRead || r->op == kWrite) {
    if (r->nowait() && (res == -EAGAIN || res == -EOPNOTSUPP)) {
      (r->op == kRead ? counters_->nowait_read_fallbacks : counters_->nowait_write_fallbacks) += 1;
      // The map said allocated: the range is busy (ext4 converting an unwritten extent, a
      // timestamp update) far more often than it is a hole punched behind Spindle's back. The
      // pool writes it as it is; allocating ahead here would cost a fallocate per bounce, and on
      // xfs a fallocate waits for every direct I/O in flight on the file.
      if (extent_aware_ && r->op == kWrite) counters_->alloc_misses += 1;
      return ToPool(r);
    }
    if (res == -EAGAIN && !r->in_pool() && r->retries++ < 1000) {
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
  // The pool knows the fallbacks (writing zeros by hand).
  if (res == -EOPNOTSUPP && !r->in_pool()) return ToPool(r);
  if (res == 0 && r->op == kWriteZeroes) return Written(r);
  Complete(r, res);
}

// A transfer finished (a read, or a write that may need to be made durable first).
void Core::Written(Req* r) {
  if (!fua_.Hold(r)) Complete(r, 0);
}

// Called after each round of finishing requests, never from inside one, so that every write
// finished in the round rides on the same barrier.
void Core::IssueBarrier() {
  if (!fua_.Due()) return;
  Req* f = Alloc();
  f->tag = 0;
  f->op = kFlush;
  f->flags = 0;
  f->offset = f->length = 0;
  f->start_ns = now_ns_;
  fua_.Start(f);
  Dispatch(f);
}

void Core::Complete(Req* r, int64_t res) {
  if (r->bounce) {
    if (r->op == kRead && res == 0) ScatterIov(r->bounce, r->user_iov);
    bounce_.Put(r->bounce, r->length);
  }
  double* d = counters_->dir[r->op];
  d[0] += 1;
  if (res < 0) d[2] += 1;
  else d[1] += double(r->length);
  uint64_t lat = now_ns_ > r->start_ns ? now_ns_ - r->start_ns : 0;
  counters_->latency_hist[r->op][c::BucketOfNs(lat)] += 1;
  if (fua_.IsBarrier(r)) {
    // The writes it covers are durable (or fail with the flush's errno), and complete now.
    fua_.Finish([&](Req* w) { Complete(w, res < 0 ? res : 0); });
    Recycle(r);
    return;
  }
  if (extent_aware_) TrackExtents(r, res);
  completed_.push_back({r->tag, static_cast<int32_t>(res)});
  inflight_--;
  if (r->track_index != SIZE_MAX) Unlock(r);
  Recycle(r);
}

// Dispatch never completes a request on the spot, so nothing re-enters here meanwhile.
void Core::Unlock(Req* r) {
  locks_.Release(r, unparked_);
  for (Req* p : unparked_) Dispatch(p);
  unparked_.clear();
}

void Core::OnWake() {
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
  if (fua_.Holding()) {
    IssueBarrier();
    FlushBackend();
  }
  counters_->cpu_loop_ns += double(MonoNs() - t0);
  if (!ready_.empty()) Signal();
}

void Core::UpdateGauges() {
  counters_->cpu_pool_ns += double(pool_->TakeCpuNs());  // once per sample period
  counters_->in_flight = double(inflight_);
}

void Core::Drain() {
  while (inflight_ > 0) {
    batch_.clear();
    Collect(batch_);
    if (batch_.empty()) {
      if (backend_ && backend_->InKernel()) {
        backend_->WaitReap(batch_, 5);
      } else if (backend_ && backend_->Queued()) {
        FlushBackend();
        if (backend_->Stuck()) usleep(1000);
      } else {
        pool_->WaitIdle();
      }
      pool_->TakeDone(batch_);
    }
    now_ns_ = MonoNs();
    for (Req* r : batch_) Finish(r);
    IssueBarrier();
    FlushBackend();
  }
  completed_.clear();
  counters_->in_flight = 0;
}

}  // namespace spindle
