#include "thread_pool.h"
#include <unistd.h>
#include <chrono>
#include <thread>

#include "clock.h"

namespace spindle {

ThreadPool::ThreadPool(Target target, int max_workers, int idle_ms, int notify_fd, bool flush_noop)
    : target_(target),
      max_workers_(max_workers),
      idle_ms_(idle_ms),
      notify_fd_(notify_fd),
      flush_noop_(flush_noop) {}

ThreadPool::~ThreadPool() {
  std::unique_lock<std::mutex> lk(mu_);
  idle_cv_.wait(lk, [&] { return queue_.empty() && running_ == 0; });
  stopping_ = true;
  work_cv_.notify_all();
  idle_cv_.wait(lk, [&] { return workers_ == 0; });
}

void ThreadPool::Push(Req* r) {
  std::lock_guard<std::mutex> lk(mu_);
  queue_.push_back(r);
  if (idle_ > 0) {
    work_cv_.notify_one();
  } else if (workers_ < max_workers_) {
    workers_++;
    std::thread([this] { Work(); }).detach();  // the destructor waits for workers_ == 0
  }
}

void ThreadPool::TakeDone(std::vector<Req*>& out) {
  std::lock_guard<std::mutex> lk(mu_);
  out.insert(out.end(), done_.begin(), done_.end());
  done_.clear();
}

void ThreadPool::WaitIdle() {
  std::unique_lock<std::mutex> lk(mu_);
  idle_cv_.wait(lk, [&] { return queue_.empty() && running_ == 0; });
}

void ThreadPool::Work() {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    if (queue_.empty()) {
      if (stopping_) break;
      idle_++;
      bool woke = work_cv_.wait_for(lk, std::chrono::milliseconds(idle_ms_),
                                    [&] { return !queue_.empty() || stopping_; });
      idle_--;
      if (!woke) break;  // idle long enough: exit; Push starts a new worker when needed
      continue;
    }
    Req* r = queue_.front();
    queue_.pop_front();
    running_++;
    lk.unlock();
    uint64_t t0 = ThreadCpuNs();
    RunBlocking(target_, r, flush_noop_);
    cpu_ns_.fetch_add(ThreadCpuNs() - t0, std::memory_order_relaxed);
    lk.lock();
    running_--;
    done_.push_back(r);
    uint64_t one = 1;
    ssize_t ignored = write(notify_fd_, &one, sizeof one);
    (void)ignored;
    if (queue_.empty() && running_ == 0) idle_cv_.notify_all();
  }
  workers_--;
  idle_cv_.notify_all();
}

}  // namespace spindle
