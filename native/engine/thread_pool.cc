#include "thread_pool.h"
#include <unistd.h>
#include <algorithm>
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

void ThreadPool::Stop() {
  Submit();
  std::unique_lock<std::mutex> lk(mu_);
  idle_cv_.wait(lk, [&] { return queue_.empty() && running_ == 0; });
  stopping_ = true;
  work_cv_.notify_all();
  idle_cv_.wait(lk, [&] { return workers_ == 0; });
}

void ThreadPool::Submit() {
  if (staged_.empty()) return;
  std::lock_guard<std::mutex> lk(mu_);
  queue_.insert(queue_.end(), staged_.begin(), staged_.end());
  staged_.clear();
  // Idle workers first; a woken worker keeps taking from the queue until it is empty, so more
  // wakes than queued requests would only be futile context switches.
  const int want = int(std::min<size_t>(queue_.size(), size_t(max_workers_)));
  const int wake = std::min(want, idle_);
  if (wake == idle_) work_cv_.notify_all();
  else
    for (int i = 0; i < wake; i++) work_cv_.notify_one();
  for (int spawn = std::min(want - wake, max_workers_ - workers_); spawn > 0; spawn--) {
    workers_++;
    uint64_t id = next_id_++;
    std::thread([this, id] { Work(id); }).detach();  // the destructor waits for workers_ == 0
  }
}

void ThreadPool::TakeDone(std::vector<Req*>& out) {
  std::lock_guard<std::mutex> lk(mu_);
  out.insert(out.end(), done_.begin(), done_.end());
  done_.clear();
}

void ThreadPool::WaitIdle() {
  Submit();
  std::unique_lock<std::mutex> lk(mu_);
  idle_cv_.wait(lk, [&] { return queue_.empty() && running_ == 0; });
}

uint64_t ThreadPool::CpuTotalLocked() {
  uint64_t total = exited_cpu_ns_;
  for (const auto& [id, clock] : clocks_) total += ClockNs(clock);
  return total;
}

uint64_t ThreadPool::TakeCpuNs(bool now) {
  const uint64_t t = MonoNs();
  if (!now && t - cpu_sampled_at_ < kCpuSampleNs) return 0;
  cpu_sampled_at_ = t;
  uint64_t total;
  {
    std::lock_guard<std::mutex> lk(mu_);
    total = CpuTotalLocked();
  }
  uint64_t delta = total > cpu_seen_ns_ ? total - cpu_seen_ns_ : 0;
  cpu_seen_ns_ = std::max(total, cpu_seen_ns_);
  return delta;
}

void ThreadPool::Work(uint64_t id) {
  clockid_t clock;
  if (pthread_getcpuclockid(pthread_self(), &clock) != 0) clock = CLOCK_THREAD_CPUTIME_ID;
  std::unique_lock<std::mutex> lk(mu_);
  // Another thread reads this clock under mu_; the thread's own clock id would mean the reader's.
  if (clock != CLOCK_THREAD_CPUTIME_ID) clocks_.emplace(id, clock);
  Req* r = nullptr;
  for (;;) {
    if (queue_.empty()) {
      if (stopping_) break;
      idle_++;
      bool woke = work_cv_.wait_for(lk, std::chrono::milliseconds(idle_ms_),
                                    [&] { return !queue_.empty() || stopping_; });
      idle_--;
      if (!woke) break;  // idle long enough: exit; Submit starts a new worker when needed
      continue;
    }
    r = queue_.front();
    queue_.pop_front();
    running_++;
    lk.unlock();
    RunBlocking(target_, r, flush_noop_);
    lk.lock();
    running_--;
    // One eventfd write per batch of completions: the owner takes the whole list at once, so
    // only the first completion after it did needs to wake it.
    const bool wake_owner = done_.empty();
    done_.push_back(r);
    if (queue_.empty() && running_ == 0) idle_cv_.notify_all();
    if (wake_owner) {
      uint64_t one = 1;
      ssize_t ignored = write(notify_fd_, &one, sizeof one);
      (void)ignored;
    }
  }
  clocks_.erase(id);
  exited_cpu_ns_ += ThreadCpuNs();
  workers_--;
  idle_cv_.notify_all();
}

}  // namespace spindle
