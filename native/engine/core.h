// The request core of an engine, without Node-API: takes decoded requests, routes each one
// (request.h Route) to the backend (libaio, io_uring) or the thread pool, bounces misaligned
// O_DIRECT memory, holds read-modify-writes apart from overlapping writes (range_locks.h),
// continues short I/O, reroutes RWF_NOWAIT bounces and unsupported ops to the pool, holds FUA
// writes for a flush barrier (fua_barrier.h), keeps the counters, and collects completions for
// the binding (binding.cc) to deliver. Everything runs on the engine's owning thread; the pool's
// workers and the kernel signal the eventfd it is given.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>
#include "backend.h"
#include "bounce_pool.h"
#include "counters.h"
#include "extent_map.h"
#include "fua_barrier.h"
#include "range_locks.h"
#include "request.h"
#include "thread_pool.h"

namespace spindle {

enum class Kind { kThreads, kLinuxAio, kIoUring };

struct CoreOptions {
  Kind kind = Kind::kThreads;
  Target target;
  int queue_depth = 128, max_workers = 64, idle_ms = 5000;
  bool read_only = false;
  bool flush_noop = false;  // FLUSH completes at once (cache 'unsafe')
  bool dsync = false;       // O_DSYNC fd: every write is durable already, FUA needs no barrier
  bool nowait_read = false, nowait_write = false;
  // The page-cache fast path: try reads (and writes) on the owning thread with RWF_NOWAIT before
  // handing them to the pool. Only for requests that would go to the pool (threads engine).
  bool inline_read = false, inline_write = false;
  int uring_first_setup = 0;  // io_uring: the first of uring_setup.h's kSetupChoices to try
  // Allocation-aware native on a file (extent_map.h): writes into allocated ranges go to Linux AIO
  // with RWF_NOWAIT, writes into holes to the pool, which allocates `alloc_chunk` bytes around them.
  bool extent_map = false;
  uint64_t alloc_chunk = 1 << 20;
};

struct Completion {
  uint32_t tag;
  int32_t result;  // bytes are not reported: 0 or -errno
};

class Core {
 public:
  // Throws std::system_error when the kernel interface cannot be set up.
  Core(const CoreOptions& o, int eventfd, counters::Counters* counters);
  ~Core();
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  // A request to fill (batch::DecodeRequest), then handed to Start.
  Req* Alloc();
  // Takes a decoded request (`err`: 0 or the -errno it fails with): in flight from now on, it
  // completes at once, is parked behind an overlapping read-modify-write, or is dispatched.
  void Start(Req* r, int64_t err);
  // After a batch of Start calls begun at `t0` (MonoNs): submits to the kernel.
  void EndBatch(uint64_t t0);
  // The eventfd is readable: finishes every completed request (continuing, rerouting or
  // completing it) in rounds, then starts a FUA barrier if writes wait for one.
  void OnWake();
  // Submits what the backend holds. Stuck(): it holds requests that nothing in flight will wake
  // it for (the kernel refused with EAGAIN): call FlushBackend again shortly.
  void FlushBackend();
  bool Stuck() const { return backend_ && backend_->Stuck(); }
  // Blocks until nothing is in flight; the completions are dropped (nobody is listening).
  void Drain();
  // Releases the backend and the pool (after Drain), adding the pool's last CPU time to the
  // counters when `count_cpu` (not while the environment, which may own them, is torn down).
  // Nothing but the accessors may follow.
  void Shutdown(bool count_cpu);

  // Swaps the completions collected so far into `into` (empty), keeping both vectors' capacity.
  void TakeCompleted(std::vector<Completion>& into) { into.swap(completed_); }
  // Writes the gauges (in flight, pool CPU time) into the counters before a delivery.
  void UpdateGauges();
  uint64_t in_flight() const { return inflight_; }
  void SetNowait(bool read, bool write) {
    nowait_read_ = read;
    nowait_write_ = write;
  }
  const BouncePool& bounce() const { return bounce_; }
  std::string features() const;
  // Registered memory (binding.cc RegisterBuffer), offered to the backend to pin (backend.h).
  bool RegisterMemory(uint8_t* data, size_t length) {
    return backend_ && backend_->RegisterMemory(data, length);
  }
  void UnregisterMemory(uint8_t* data) {
    if (backend_) backend_->UnregisterMemory(data);
  }
  const ExtentMap& extents() const { return extents_; }

 private:
  void Recycle(Req* r);
  void Immediate(Req* r, int64_t res);
  void Dispatch(Req* r);
  bool TryInline(Req* r);
  void ToPool(Req* r);
  void ToAllocate(Req* r);
  void TrackExtents(Req* r, int64_t res);
  void Collect(std::vector<Req*>& batch);
  void Finish(Req* r);
  void Written(Req* r);
  void IssueBarrier();
  void Complete(Req* r, int64_t res);
  void Unlock(Req* r);
  void Signal();

  const Target target_;
  const bool read_only_, flush_noop_;
  bool nowait_read_, nowait_write_;
  bool inline_read_, inline_write_;
  // The file refused RWF_NOWAIT for a direction (EOPNOTSUPP): not tried again, counted as punts.
  bool inline_read_refused_ = false, inline_write_refused_ = false;
  const int efd_;
  counters::Counters* const counters_;
  SubmitStats submit_stats_;
  BouncePool bounce_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<ThreadPool> pool_;
  RangeLocks locks_;
  ExtentMap extents_;
  bool extent_aware_ = false;
  uint64_t alloc_chunk_ = 0, file_size_ = 0;
  FuaBarrier fua_;
  // Requests to reuse; finished at once or refused by the kernel (finished on the next wake-up);
  // the current round; parked requests a finished one let run.
  std::vector<Req*> free_, ready_, batch_, unparked_;
  std::vector<Completion> completed_;
  uint64_t inflight_ = 0;
  uint64_t now_ns_ = 0;  // when the current round started: completion latency is measured to it
};

}  // namespace spindle
