// FUA emulated by an fdatasync barrier, as QEMU does for drivers without native FUA (block/io.c,
// bdrv_driver_pwritev: the write, then a flush, before the request completes). A FUA write that
// finished is held until a flush started after it finishes; it then completes with the flush's
// result. One barrier at a time (group commit): writes finishing while it runs wait for the next
// one, so a burst costs a few flushes, not one each. Owning thread only.
#pragma once
#include <vector>
#include "request.h"

namespace spindle {

class FuaBarrier {
 public:
  // `needed`: false when every write is durable already (O_DSYNC fd) or flushes are no-ops
  // (cache 'unsafe'); FUA writes then complete at once.
  explicit FuaBarrier(bool needed) : needed_(needed) {}

  // A write or write-zeroes finished. True: it carries FUA and is held for a barrier.
  bool Hold(Req* w) {
    if (!needed_ || !(w->flags & kFua)) return false;
    awaiting_.push_back(w);
    return true;
  }

  // Whether FUA writes wait for a barrier (one running or not).
  bool Holding() const { return !awaiting_.empty(); }

  // Whether a barrier should start now: writes are held and none is running.
  bool Due() const { return current_ == nullptr && !awaiting_.empty(); }

  // `flush` becomes the barrier covering every write held so far.
  void Start(Req* flush) {
    current_ = flush;
    covered_.swap(awaiting_);  // the vectors trade capacity: no allocation once warm
  }

  bool IsBarrier(const Req* r) const { return r == current_; }

  // The barrier finished: hands each write it covered to `complete`, in the order they finished.
  template <typename Complete>
  void Finish(Complete&& complete) {
    current_ = nullptr;
    for (Req* w : covered_) complete(w);
    covered_.clear();
  }

 private:
  const bool needed_;
  Req* current_ = nullptr;
  std::vector<Req*> awaiting_, covered_;
};

}  // namespace spindle
