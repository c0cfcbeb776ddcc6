// A bounded pool of worker threads running requests with blocking syscalls (QEMU's
// util/thread-pool.c shape): workers are started on demand up to a maximum, exit after being
// idle for a while, and signal finished requests on the engine's eventfd.
#pragma once
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <vector>
#include "request.h"

namespace spindle {

class ThreadPool {
 public:
  ThreadPool(Target target, int max_workers, int idle_ms, int notify_fd, bool flush_noop);
  ~ThreadPool();  // waits for every queued and running request, then for the workers to exit

  void Push(Req* r);
  // Moves finished requests into `out`.
  void TakeDone(std::vector<Req*>& out);
  // CPU nanoseconds used by workers since the last call.
  uint64_t TakeCpuNs() { return cpu_ns_.exchange(0, std::memory_order_relaxed); }
  // Blocks until nothing is queued or running (finished requests stay in the done list).
  void WaitIdle();

 private:
  void Work();
  Target target_;
  const int max_workers_, idle_ms_, notify_fd_;
  const bool flush_noop_;
  std::mutex mu_;
  std::condition_variable work_cv_, idle_cv_;
  std::deque<Req*> queue_;
  std::vector<Req*> done_;
  int workers_ = 0, idle_ = 0, running_ = 0;
  bool stopping_ = false;
  std::atomic<uint64_t> cpu_ns_{0};
};

}  // namespace spindle
