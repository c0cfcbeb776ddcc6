// The `native` engine's kernel side: Linux AIO through libaio. One io_context per engine with
// its queue depth, a whole batch per io_submit, completions signalled on the engine's eventfd
// (IOCB_FLAG_RESFD) and reaped all at once. Only reads and writes: fdatasync and fallocate are
// not asynchronous through Linux AIO on most filesystems, so they go to the thread pool.
#include <linux/fs.h>
#include <cerrno>
#include <deque>
#include <system_error>
#include "backend.h"
#include "clock.h"
#include "linux_aio_syscalls.h"

namespace spindle {

namespace {

class LinuxAio final : public Backend {
 public:
  LinuxAio(const Target& t, int depth, int efd)
      : t_(t), depth_(depth), efd_(efd), iocbs_(depth), ptrs_(depth), events_(depth) {
    int err = aio::Setup(depth, &ctx_);
    if (err < 0) throw std::system_error(-err, std::generic_category(), "io_setup");
    ring_ = aio::RingOf(ctx_);
    for (int i = 0; i < depth; i++) free_.push_back(&iocbs_[i]);
  }
  ~LinuxAio() override {
    std::vector<Req*> sink;
    while (in_kernel_) WaitReap(sink, 100);
    aio::Destroy(ctx_);
  }

  bool Handles(const Req* r) const override { return r->op == kRead || r->op == kWrite; }
  void Enqueue(Req* r) override { queue_.push_back(r); }
  size_t Queued() const override { return queue_.size(); }
  size_t InKernel() const override { return in_kernel_; }
  bool Stuck() const override { return stuck_; }

  void Flush(std::vector<Req*>& refused, SubmitStats& stats) override {
    stuck_ = false;
    while (!queue_.empty() && !free_.empty()) {
      size_t n = std::min(queue_.size(), free_.size());
      for (size_t i = 0; i < n; i++) {
        Req* r = queue_[i];
        iocb* cb = free_[free_.size() - 1 - i];
        auto* iov = const_cast<iovec*>(r->iov.data());
        int cnt = static_cast<int>(r->iov.size());
        uint64_t pos = r->offset + r->done;
        if (r->op == kRead) io_prep_preadv2(cb, t_.fd, iov, cnt, pos, r->nowait() ? RWF_NOWAIT : 0);
        else io_prep_pwritev2(cb, t_.fd, iov, cnt, pos, r->nowait() ? RWF_NOWAIT : 0);
        io_set_eventfd(cb, efd_);
        cb->data = r;
        ptrs_[i] = cb;
      }
      uint64_t t0 = MonoNs();
      int ret = aio::Submit(ctx_, static_cast<long>(n), ptrs_.data());
      stats.Record(MonoNs() - t0);
      if (ret > 0) {
        queue_.erase(queue_.begin(), queue_.begin() + ret);
        free_.resize(free_.size() - ret);
        in_kernel_ += ret;
        continue;
      }
      Req* first = queue_.front();
      if (ret == -EAGAIN && !first->nowait()) {
        stuck_ = in_kernel_ == 0;  // out of kernel resources: retry when completions free some
        break;
      }
      if (ret == 0) ret = -EIO;
      // The first request was refused outright (EAGAIN under nowait: it would block).
      queue_.pop_front();
      first->res = ret;
      refused.push_back(first);
    }
  }

  void Reap(std::vector<Req*>& out) override {
    timespec zero = {0, 0};
    while (in_kernel_) {
      int n = ring_ ? aio::ReapRing(ring_, depth_, events_.data())
                    : aio::Getevents(ctx_, 0, depth_, events_.data(), &zero);
      if (n <= 0) break;
      Take(n, out);
      if (n < depth_) break;
    }
  }

  void WaitReap(std::vector<Req*>& out, int timeout_ms) override {
    if (!in_kernel_) return;
    timespec ts = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
    int n = aio::Getevents(ctx_, 1, depth_, events_.data(), &ts);
    if (n > 0) Take(n, out);
  }

 private:
  void Take(int n, std::vector<Req*>& out) {
    for (int i = 0; i < n; i++) {
      Req* r = static_cast<Req*>(events_[i].data);
      long res = static_cast<long>(events_[i].res);
      r->res = res;
      free_.push_back(events_[i].obj);
      out.push_back(r);
    }
    in_kernel_ -= n;
  }

  Target t_;
  int depth_, efd_;
  io_context_t ctx_ = nullptr;
  aio::Ring* ring_ = nullptr;  // reaped from user space when the kernel's layout is known
  std::vector<iocb> iocbs_;
  std::vector<iocb*> free_, ptrs_;
  std::vector<io_event> events_;
  std::deque<Req*> queue_;
  size_t in_kernel_ = 0;
  bool stuck_ = false;
};

}  // namespace

std::unique_ptr<Backend> MakeLinuxAio(const Target& t, int queue_depth, int eventfd) {
  return std::make_unique<LinuxAio>(t, queue_depth, eventfd);
}

}  // namespace spindle
