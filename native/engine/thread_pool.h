// A bounded pool of worker threads running requests with blocking syscalls (QEMU's
// util/thread-pool.c shape): workers are started on demand up to a maximum and exit after being
// idle for a while. The costs are per batch, not per request: the owner stages requests without a
// lock and hands a whole batch over under one lock (waking as many idle workers as it needs),
// workers signal the eventfd only when the done list goes from empty to non-empty (the owner takes
// it whole), and the workers' CPU time is read from their CPU clocks once per sample period, not
// around every request.
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
  // Hands every staged request to the workers: one lock, one wake per idle worker needed, new
  // workers up to the maximum for the rest.
  void Submit();
  // Moves finished requests into `out`.
  void TakeDone(std::vector<Req*>& out);
  // CPU nanoseconds the workers used since the last reading. Reads the workers' CPU clocks at most
  // once per `kCpuSampleNs` (0 in between) unless `now` is set.
  uint64_t TakeCpuNs(bool now = false);
  // Submits what is staged, then blocks until nothing is queued or running (finished requests
  // stay in the done list).
  void WaitIdle();

  static constexpr uint64_t kCpuSampleNs = 50'000'000;

 private:
  void Work(uint64_t id);
  uint64_t CpuTotalLocked();
  Target target_;
  const int max_workers_, idle_ms_, notify_fd_;
  const bool flush_noop_;
  std::vector<Req*> staged_;  // owning thread only
  std::mutex mu_;
  std::condition_variable work_cv_, idle_cv_;
  std::deque<Req*> queue_;
  std::vector<Req*> done_;
  int workers_ = 0, idle_ = 0, running_ = 0;
  bool stopping_ = false;
  // Live workers' CPU clocks (pthread_getcpuclockid), and the CPU time of workers that exited.
  std::unordered_map<uint64_t, clockid_t> clocks_;
  uint64_t next_id_ = 0, exited_cpu_ns_ = 0;
  // Owning thread: the total at the last reading and when it was taken.
  uint64_t cpu_seen_ns_ = 0, cpu_sampled_at_ = 0;
};

}  // namespace spindle
