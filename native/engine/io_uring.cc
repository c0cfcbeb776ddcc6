// The `io_uring` engine's kernel side (liburing): a ring per engine with its queue depth, set up
// with the cheapest completion model the kernel accepts (uring_setup.h), the file registered as a
// fixed file (and guest RAM as fixed buffers when asked), the engine's eventfd registered for
// completions, one io_uring_submit per batch, every CQE reaped per wake-up. Reads, writes,
// fdatasync and (for files) fallocate run in the ring; block-device discard and zeroing (ioctls)
// go to the thread pool.
#include <liburing.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <algorithm>
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
  std::string Features() const override { return features_ + (fixed_used_ ? "+fixed-buffers" : ""); }

  // Guest RAM as fixed buffers: pinned once, so a request skips pinning its pages itself. A
  // region is split into slots of at most 1 GiB (the kernel's limit per buffer).
  bool RegisterMemory(uint8_t* data, size_t length) override {
    if (!fixed_ready_) {
      if (fixed_failed_ || io_uring_register_buffers_sparse(&ring_, kFixedSlots) != 0) {
        fixed_failed_ = true;
        return false;
      }
      fixed_ready_ = true;
      fixed_.assign(kFixedSlots, iovec{nullptr, 0});
      owner_.assign(kFixedSlots, nullptr);
    }
    size_t off = 0;
    for (unsigned slot = 0; slot < kFixedSlots && off < length; slot++) {
      if (fixed_[slot].iov_base) continue;
      iovec v{data + off, std::min(kMaxFixed, length - off)};
      __u64 tag = 0;
      // ENOMEM: over RLIMIT_MEMLOCK (an unprivileged user); the region stays unpinned.
      if (io_uring_register_buffers_update_tag(&ring_, slot, &v, &tag, 1) != 1) break;
      fixed_[slot] = v;
      owner_[slot] = data;
      off += v.iov_len;
    }
    if (off < length) {  // out of slots or refused: all or nothing
      UnregisterMemory(data);
      return false;
    }
    fixed_used_ = true;
    return true;
  }

  void UnregisterMemory(uint8_t* data) override {
    if (!fixed_ready_) return;
    for (unsigned slot = 0; slot < kFixedSlots; slot++) {
      if (owner_[slot] != data) continue;
      iovec none{nullptr, 0};
      __u64 tag = 0;
      // In-flight requests keep the old buffer until they finish (the kernel holds it).
      io_uring_register_buffers_update_tag(&ring_, slot, &none, &tag, 1);
      fixed_[slot] = none;
      owner_[slot] = nullptr;
    }
  }

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
        case kWrite: {
          const int slot = r->iov.size() == 1 ? FixedSlot(r->iov[0]) : -1;
          if (slot >= 0 && r->op == kRead)
            io_uring_prep_read_fixed(sqe, fd_, r->iov[0].iov_base, r->iov[0].iov_len, pos, slot);
          else if (slot >= 0)
            io_uring_prep_write_fixed(sqe, fd_, r->iov[0].iov_base, r->iov[0].iov_len, pos, slot);
          else if (r->op == kRead) io_uring_prep_readv(sqe, fd_, r->iov.data(), r->iov.size(), pos);
          else io_uring_prep_writev(sqe, fd_, r->iov.data(), r->iov.size(), pos);
          if (r->nowait()) sqe->rw_flags = RWF_NOWAIT;
          break;
        }
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
    ReapPosted(out);
    // Deferred task work: the completions are posted only when this (the submitting) thread asks,
    // and one ask runs a bounded number of them (the kernel's IO_LOCAL_TW_DEFAULT_MAX, 20 since
    // 6.13); the rest wait on a retry list that signals the eventfd no more. So ask again while
    // asking posts something and requests are still in the kernel: a pass that posts nothing means
    // none are waiting.
    while (defer_ && in_kernel_) {
      io_uring_get_events(&ring_);
      if (!ReapPosted(out)) break;
    }
  }

  void WaitReap(std::vector<Req*>& out, int timeout_ms) override {
    if (!in_kernel_) return;
    __kernel_timespec ts = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000LL};
    io_uring_cqe* cqe;
    if (io_uring_wait_cqe_timeout(&ring_, &cqe, &ts) == 0) Reap(out);
  }

 private:
  // Takes every completion posted in the CQ ring; returns how many.
  unsigned ReapPosted(std::vector<Req*>& out) {
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
    return n;
  }

  static constexpr unsigned kFixedSlots = 64;
  static constexpr size_t kMaxFixed = size_t(1) << 30;

  // The fixed buffer holding all of `v`, or -1.
  int FixedSlot(const iovec& v) const {
    if (!fixed_used_) return -1;
    auto* p = static_cast<uint8_t*>(v.iov_base);
    for (unsigned i = 0; i < kFixedSlots; i++) {
      auto* b = static_cast<uint8_t*>(fixed_[i].iov_base);
      if (b && p >= b && p + v.iov_len <= b + fixed_[i].iov_len) return int(i);
    }
    return -1;
  }

  Target t_;
  int depth_;
  int fd_ = t_.fd;  // the fd, or 0: the fixed file
  unsigned sqe_flags_ = 0;
  bool defer_ = false;
  std::string features_;
  std::vector<iovec> fixed_;     // per slot: the pinned memory, or empty
  std::vector<uint8_t*> owner_;  // per slot: the registered region it is part of
  bool fixed_ready_ = false, fixed_failed_ = false, fixed_used_ = false;
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
