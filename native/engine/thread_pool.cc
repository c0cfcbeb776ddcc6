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

// mu_ held. Makes `want` workers awake (running, notified, or new), up to the maximum; returns how
// many idle workers to notify, which the caller does after unlocking (a worker woken under the
// lock would only block on it).
int ThreadPool::Wake(int want) {
  const int n = want - (running_ + wakes_);
  const int wake = std::max(0, std::min(n, idle_ - wakes_));
  wakes_ += wake;
  for (int spawn = std::min(n - wake, max_workers_ - workers_); spawn > 0; spawn--) {
    workers_++;
    wakes_++;
    uint64_t id = next_id_++;
    std::thread([this, id] { Work(id); }).detach();  // Stop waits for workers_ == 0
  }
  return wake;
}

void ThreadPool::Submit() {
  if (staged_.empty()) return;
  const uint64_t s = service_ns_.load(std::memory_order_relaxed);
  int notify;
  {
    std::lock_guard<std::mutex> lk(mu_);
    queue_.insert(queue_.end(), staged_.begin(), staged_.end());
    staged_.clear();
    const uint64_t n = queue_.size();
    const uint64_t need = std::max<uint64_t>(1, (n * s + kBatchBudgetNs - 1) / kBatchBudgetNs);
    notify = Wake(int(std::min<uint64_t>({n, uint64_t(max_workers_), need})));
  }
  for (int i = 0; i < notify; i++) work_cv_.notify_one();
}

void ThreadPool::TakeDone(std::vector<Req*>& out) {
  Req* r = done_.exchange(nullptr, std::memory_order_acquire);
  const size_t first = out.size();
  for (; r; r = r->done_next) out.push_back(r);
  std::reverse(out.begin() + first, out.end());
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

// Onto the done list; the first request on an empty list wakes the owner, who takes the whole
// list at once (TakeDone), so a batch of completions costs one eventfd write.
void ThreadPool::Finished(Req* r) {
  Req* head = done_.load(std::memory_order_relaxed);
  do r->done_next = head;
  while (!done_.compare_exchange_weak(head, r, std::memory_order_release, std::memory_order_relaxed));
  if (head == nullptr) {
    uint64_t one = 1;
    ssize_t ignored = write(notify_fd_, &one, sizeof one);
    (void)ignored;
  }
}

void ThreadPool::Work(uint64_t id) {
  clockid_t clock;
  if (pthread_getcpuclockid(pthread_self(), &clock) != 0) clock = CLOCK_THREAD_CPUTIME_ID;
  std::unique_lock<std::mutex> lk(mu_);
  wakes_--;  // started: awake
  // Another thread reads this clock under mu_; the thread's own clock id would mean the reader's.
  if (clock != CLOCK_THREAD_CPUTIME_ID) clocks_.emplace(id, clock);
  for (;;) {
    if (queue_.empty()) {
      if (stopping_) break;
      idle_++;
      const bool timed_out =
          work_cv_.wait_for(lk, std::chrono::milliseconds(idle_ms_)) == std::cv_status::timeout;
      idle_--;
      // Awake now, notified or not: whoever counted on a notified worker can count on this one.
      if (wakes_ > 0) wakes_--;
      // Idle long enough: exit (Submit starts a new worker when needed).
      if (timed_out && queue_.empty() && !stopping_) break;
      continue;
    }
    Req* r = queue_.front();
    queue_.pop_front();
    running_++;
    lk.unlock();
    const uint64_t t0 = MonoNs();
    RunBlocking(target_, r, flush_noop_);
    const uint64_t took = MonoNs() - t0;
    const uint64_t s = service_ns_.load(std::memory_order_relaxed);
    service_ns_.store(s - s / 8 + took / 8, std::memory_order_relaxed);
    Finished(r);
    lk.lock();
    // It blocked and others wait: one more worker awake than now (this one still counted).
    if (took >= kSlowNs && !queue_.empty() && Wake(running_ + wakes_ + 1) > 0) work_cv_.notify_one();
    running_--;
    if (queue_.empty() && running_ == 0) idle_cv_.notify_all();
  }
  clocks_.erase(id);
  exited_cpu_ns_ += ThreadCpuNs();
  workers_--;
  idle_cv_.notify_all();
}

}  // namespace spindle
