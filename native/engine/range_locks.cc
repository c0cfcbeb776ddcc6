#include "range_locks.h"

namespace spindle {

// The range a modifying request holds: its own, or for a read-modify-write the blocks covering
// it, to the end of the file when the last of them reaches past it (the write may grow the file
// and cut it back).
void RangeLocks::SetRange(Req* r) {
  r->lock_begin = r->offset;
  r->lock_end = r->offset + r->length;
  if (!r->serialising()) return;
  const uint64_t a = alignment_;
  r->lock_begin &= ~uint64_t(a - 1);
  r->lock_end = (r->lock_end + a - 1) & ~uint64_t(a - 1);
  if (file_size_() < r->lock_end) r->lock_end = UINT64_MAX;
}

static inline bool Overlap(const Req* a, const Req* b) {
  return a->lock_begin < b->lock_end && b->lock_begin < a->lock_end;
}

// Whether `r` must wait: it overlaps one of the first `ahead` parked requests (order is kept),
// or a request in flight it may not run beside (a read-modify-write beside any overlapping write,
// any write beside an overlapping read-modify-write).
bool RangeLocks::MustWait(const Req* r, size_t ahead) const {
  if (!r->serialising() && serialising_ == 0 && ahead == 0) return false;
  for (size_t i = 0; i < ahead; i++)
    if (Overlap(parked_[i], r)) return true;
  for (const Req* t : tracked_)
    if ((r->serialising() || t->serialising()) && Overlap(t, r)) return true;
  return false;
}

void RangeLocks::Track(Req* r) {
  r->track_index = tracked_.size();
  tracked_.push_back(r);
  if (r->serialising()) serialising_++;
}

bool RangeLocks::Acquire(Req* r) {
  SetRange(r);
  if (MustWait(r, parked_.size())) {
    parked_.push_back(r);
    return false;
  }
  Track(r);
  return true;
}

void RangeLocks::Release(Req* r, std::vector<Req*>& runnable) {
  Req* last = tracked_.back();
  tracked_[r->track_index] = last;
  last->track_index = r->track_index;
  tracked_.pop_back();
  r->track_index = SIZE_MAX;
  if (r->serialising()) serialising_--;
  for (size_t i = 0; i < parked_.size();) {
    Req* p = parked_[i];
    if (MustWait(p, i)) {
      i++;
      continue;
    }
    parked_.erase(parked_.begin() + long(i));
    Track(p);
    runnable.push_back(p);
  }
}

}  // namespace spindle
