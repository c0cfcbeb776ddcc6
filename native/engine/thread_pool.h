// A bounded pool of worker threads running requests with blocking syscalls (QEMU's
// util/thread-pool.c shape): workers are started on demand up to a maximum and exit after being
// idle for a while. The costs are per batch, not per request, and a wake-up (a context switch,
// the main cost on a small machine) is spent only where it buys parallelism:
// - the owner stages requests without a lock and hands a whole batch over under one lock, then
//   wakes as many workers as the batch needs (its length times the recent service time, over a
//   time budget: page-cache requests of a few µs are run back to back by one or two workers; disk
//   requests get one worker each), outside the lock;
// - a worker whose request took long while others wait wakes one more (the work blocks: more
//   hands);
// - finished requests go on a lock-free list, and only the first one after the owner took the list
//   writes the eventfd;
// - the workers' CPU time is read from their CPU clocks once per sample period, not per request.
#pragma once
#include <pthread.h>
#include <time.h>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <vector>
#include "request.h"

namespace spindle {

class ThreadPool {
 public:
  ThreadPool(Target target, int max_workers, int idle_ms, int notify_fd, bool flush_noop);
  ~ThreadPool() { Stop(); }
  // Waits for every staged, queued and running request, then for the workers to exit.
  void Stop();

  // Stages a request (owning thread, no lock); nothing runs before Submit.
  void Push(Req* r) { staged_.push_back(r); }
  // Hands every staged request to the workers: one lock, then the wakes (and new workers, up to
  // the maximum) the batch needs.
  void Submit();
  // Moves finished requests into `out`, in the order they finished.
  void TakeDone(std::vector<Req*>& out);
  // CPU nanoseconds the workers used since the last reading. Reads the workers' CPU clocks at most
  // once per `kCpuSampleNs` (0 in between) unless `now` is set.
  uint64_t TakeCpuNs(bool now = false);
  // Submits what is staged, then blocks until nothing is queued or running (finished requests
  // stay in the done list).
  void WaitIdle();

  static constexpr uint64_t kCpuSampleNs = 50'000'000;
  // A batch should take about this long per awake worker: n requests of s ns each wake
  // ceil(n * s / budget) workers.
  static constexpr uint64_t kBatchBudgetNs = 50'000;
  // A request that took this long blocked: if others wait, the worker wakes another.
  static constexpr uint64_t kSlowNs = 100'000;

 private:
  void Work(uint64_t id);
  int Wake(int want);
  void Finished(Req* r);
  uint64_t CpuTotalLocked();
  Target target_;
  const int max_workers_, idle_ms_, notify_fd_;
  const bool flush_noop_;
  std::vector<Req*> staged_;  // owning thread only
  std::mutex mu_;
  std::condition_variable work_cv_, idle_cv_;
  std::deque<Req*> queue_;
  int workers_ = 0, idle_ = 0, running_ = 0, wakes_ = 0;  // wakes_: notified, not yet awake
  bool stopping_ = false;
  std::atomic<Req*> done_{nullptr};  // finished requests, newest first (Req::done_next)
  // Recent service time of a request (exponentially weighted), starting where a disk would be.
  std::atomic<uint64_t> service_ns_{kSlowNs};
  // Live workers' CPU clocks (pthread_getcpuclockid), and the CPU time of workers that exited.
  std::unordered_map<uint64_t, clockid_t> clocks_;
  uint64_t next_id_ = 0, exited_cpu_ns_ = 0;
  // Owning thread: the total at the last reading and when it was taken.
  uint64_t cpu_seen_ns_ = 0, cpu_sampled_at_ = 0;
};

}  // namespace spindle
