// The `io_uring` engine's kernel side (liburing): a ring per engine with its queue depth, set up
// with the cheapest completion model the kernel accepts (uring_setup.h), the file registered as a
// fixed file, the engine's eventfd registered for completions, one io_uring_submit per batch,
// every CQE reaped per wake-up. Reads, writes, fdatasync and (for files) fallocate run in the
// ring; block-device discard and zeroing (ioctls) go to the thread pool.
#include <liburing.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <cerrno>
#include <deque>
#include <system_error>
#include "backend.h"
#include "clock.h"
#include "uring_setup.h"

namespace spindle {

namespace {

class IoUring final : public Backend {
 public:
  IoUring(const Target& t, int depth, int efd, int first_setup) : t_(t), depth_(depth) {
    int chosen = uring::SetupWithFallback(
        [&](unsigned extra) {
          io_uring_params p = {};
          p.flags = IORING_SETUP_CQSIZE | extra;
          p.cq_entries = depth * 2;
          return io_uring_queue_init_params(depth, &ring_, &p);
        },
        first_setup);
    if (chosen < 0) throw std::system_error(-chosen, std::generic_category(), "io_uring_queue_init");
    defer_ = uring::kSetupChoices[chosen].defer;
    features_ = uring::kSetupChoices[chosen].name;
    int err = io_uring_register_eventfd(&ring_, efd);
    if (err < 0) {
      io_uring_queue_exit(&ring_);
      throw std::system_error(-err, std::generic_category(), "io_uring_register_eventfd");
    }
    // The file as fixed file 0: the kernel skips the fd table lookup and reference per request.
    if (io_uring_register_files(&ring_, &t_.fd, 1) == 0) {
      fd_ = 0;
      sqe_flags_ = IOSQE_FIXED_FILE;
      features_ += "+fixed-file";
    }
  }
  ~IoUring() override {
    std::vector<Req*> sink;
    while (in_kernel_) WaitReap(sink, 100);
    // The ring is torn down asynchronously; the fixed file must be let go now, or a block device
    // opened O_EXCL stays claimed for a while after close (a live switch reopens it at once).
    if (sqe_flags_) io_uring_unregister_files(&ring_);
    io_uring_queue_exit(&ring_);
  }

  bool Handles(const Req* r) const override {
    if (r->op == kRead || r->op == kWrite || r->op == kFlush) return true;
    return !t_.is_block;  // fallocate for files; BLKDISCARD/BLKZEROOUT are ioctls: pool
  }
  void Enqueue(Req* r) override { queue_.push_back(r); }
  size_t Queued() const override { return queue_.size() + unsubmitted_; }
  size_t InKernel() const override { return in_kernel_; }
  bool Stuck() const override { return stuck_; }
  std::string Features() const override { return features_; }

  void Flush(std::vector<Req*>& refused, SubmitStats& stats) override {
    stuck_ = false;
    while (!queue_.empty() && in_kernel_ + unsubmitted_ < size_t(depth_)) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (!sqe) break;
      Req* r = queue_.front();
      queue_.pop_front();
      uint64_t pos = r->offset + r->done;
      switch (r->op) {
        case kRead:
          io_uring_prep_readv(sqe, fd_, r->iov.data(), r->iov.size(), pos);
          if (r->nowait()) sqe->rw_flags = RWF_NOWAIT;
          break;
        case kWrite:
          io_uring_prep_writev(sqe, fd_, r->iov.data(), r->iov.size(), pos);
          if (r->nowait()) sqe->rw_flags = RWF_NOWAIT;
          break;
        case kFlush: io_uring_prep_fsync(sqe, fd_, IORING_FSYNC_DATASYNC); break;
        case kDiscard:
          io_uring_prep_fallocate(sqe, fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, r->offset, r->length);
          break;
        case kWriteZeroes: {
          int mode = (r->flags & kWriteZeroesMayUnmap) ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                                                       : FALLOC_FL_ZERO_RANGE;
          io_uring_prep_fallocate(sqe, fd_, mode, r->offset, r->length);
          break;
        }
      }
      sqe->flags |= sqe_flags_;
      io_uring_sqe_set_data(sqe, r);
      unsubmitted_++;
    }
    if (!unsubmitted_) return;
    uint64_t t0 = MonoNs();
    int ret = io_uring_submit(&ring_);
    stats.Record(MonoNs() - t0);
    if (ret > 0) {
      unsubmitted_ -= std::min<size_t>(ret, unsubmitted_);
      in_kernel_ += ret;
    } else if (ret < 0 && ret != -EAGAIN && ret != -EBUSY && ret != -EINTR) {
      (void)refused;  // the ring itself failed: leave the SQEs queued; the retry timer tries again
    }
    stuck_ = unsubmitted_ > 0 && in_kernel_ == 0;
  }

  void Reap(std::vector<Req*>& out) override {
    // Deferred task work: the completions are posted when this (the submitting) thread asks.
    if (defer_ && in_kernel_) io_uring_get_events(&ring_);
    io_uring_cqe* cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      Req* r = static_cast<Req*>(io_uring_cqe_get_data(cqe));
      r->res = cqe->res;
      out.push_back(r);
      n++;
    }
    io_uring_cq_advance(&ring_, n);
    in_kernel_ -= n;
  }

  void WaitReap(std::vector<Req*>& out, int timeout_ms) override {
    if (!in_kernel_) return;
    __kernel_timespec ts = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000LL};
    io_uring_cqe* cqe;
    if (io_uring_wait_cqe_timeout(&ring_, &cqe, &ts) == 0) Reap(out);
  }

 private:
  Target t_;
  int depth_;
  int fd_ = t_.fd;  // the fd, or 0: the fixed file
  unsigned sqe_flags_ = 0;
  bool defer_ = false;
  std::string features_;
  io_uring ring_{};
  std::deque<Req*> queue_;
  size_t in_kernel_ = 0, unsubmitted_ = 0;
  bool stuck_ = false;
};

}  // namespace

std::unique_ptr<Backend> MakeIoUring(const Target& t, int queue_depth, int eventfd, int first_setup) {
  return std::make_unique<IoUring>(t, queue_depth, eventfd, first_setup);
}

}  // namespace spindle
