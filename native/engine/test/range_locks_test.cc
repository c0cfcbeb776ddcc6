#include "../range_locks.h"
#include <cstdint>
#include "check.h"

using spindle::kFlush;
using spindle::kWrite;
using spindle::RangeLocks;
using spindle::Req;
using spindle::Route;

namespace {

constexpr uint64_t kBig = uint64_t(1) << 40;  // a file far larger than any range here

Req Write(uint64_t offset, uint64_t length) {
  Req r;
  r.op = kWrite;
  r.route = Route::kKernel;
  r.offset = offset;
  r.length = length;
  return r;
}

// A write the pool does as a read-modify-write of the blocks covering it.
Req ReadModifyWrite(uint64_t offset, uint64_t length) {
  Req r = Write(offset, length);
  r.route = Route::kPoolUnaligned;
  return r;
}

RangeLocks Locks(uint64_t file_size = kBig) {
  return RangeLocks(512, [file_size] { return file_size; });
}

}  // namespace

TEST(RangeLocks, PlainWritesNeverWaitForEachOther) {
  RangeLocks locks = Locks();
  Req a = Write(0, 4096), b = Write(0, 4096), c = Write(2048, 4096);
  CHECK(locks.Acquire(&a));
  CHECK(locks.Acquire(&b));
  CHECK(locks.Acquire(&c));
  CHECK_EQ(locks.tracked(), 3u);
  CHECK_EQ(locks.parked(), 0u);
}

TEST(RangeLocks, ReadModifyWriteWaitsForAnOverlappingWriteInFlight) {
  RangeLocks locks = Locks();
  Req w = Write(0, 4096), rmw = ReadModifyWrite(100, 10);
  CHECK(locks.Acquire(&w));
  CHECK(!locks.Acquire(&rmw));
  CHECK_EQ(locks.parked(), 1u);
  std::vector<Req*> runnable;
  locks.Release(&w, runnable);
  CHECK_EQ(runnable.size(), 1u);
  CHECK(runnable.size() == 1 && runnable[0] == &rmw);
  CHECK_EQ(locks.tracked(), 1u);
  CHECK_EQ(locks.parked(), 0u);
}

TEST(RangeLocks, WriteWaitsForAnOverlappingReadModifyWriteButNotOthers) {
  RangeLocks locks = Locks();
  Req rmw = ReadModifyWrite(100, 10), overlapping = Write(0, 512), apart = Write(4096, 512);
  CHECK(locks.Acquire(&rmw));
  CHECK(!locks.Acquire(&overlapping));  // inside the block the read-modify-write rewrites
  CHECK(locks.Acquire(&apart));
  std::vector<Req*> runnable;
  locks.Release(&rmw, runnable);
  CHECK(runnable.size() == 1 && runnable[0] == &overlapping);
}

TEST(RangeLocks, ParkedRequestsKeepTheirArrivalOrder) {
  RangeLocks locks = Locks();
  // w2 does not overlap the read-modify-write but overlaps w1, parked before it: it may not
  // overtake w1.
  Req rmw = ReadModifyWrite(0, 100), w1 = Write(256, 512), w2 = Write(600, 100);
  CHECK(locks.Acquire(&rmw));
  CHECK(!locks.Acquire(&w1));
  CHECK(!locks.Acquire(&w2));
  std::vector<Req*> runnable;
  locks.Release(&rmw, runnable);
  CHECK(runnable.size() == 2 && runnable[0] == &w1 && runnable[1] == &w2);
  CHECK_EQ(locks.tracked(), 2u);
}

TEST(RangeLocks, ReleaseRunsOnlyWhatNoLongerOverlaps) {
  RangeLocks locks = Locks();
  Req a = Write(0, 512), b = Write(1024, 512), rmw = ReadModifyWrite(0, 2048);
  CHECK(locks.Acquire(&a));
  CHECK(locks.Acquire(&b));
  CHECK(!locks.Acquire(&rmw));
  std::vector<Req*> runnable;
  locks.Release(&a, runnable);
  CHECK(runnable.empty());  // b still overlaps
  locks.Release(&b, runnable);
  CHECK(runnable.size() == 1 && runnable[0] == &rmw);
}

TEST(RangeLocks, ReadModifyWriteHoldsTheCoveringBlocks) {
  int asked = 0;
  RangeLocks locks(512, [&asked] {
    asked++;
    return kBig;
  });
  Req plain = Write(700, 100);
  CHECK(locks.Acquire(&plain));
  CHECK_EQ(plain.lock_begin, 700u);
  CHECK_EQ(plain.lock_end, 800u);
  CHECK_EQ(asked, 0);  // the file size is read for read-modify-writes only
  Req rmw = ReadModifyWrite(1500, 100);
  CHECK(locks.Acquire(&rmw));
  CHECK_EQ(rmw.lock_begin, 1024u);
  CHECK_EQ(rmw.lock_end, 2048u);
  CHECK_EQ(asked, 1);
}

TEST(RangeLocks, ReadModifyWritePastTheEndOfTheFileHoldsToTheEnd) {
  // The last block, [1536, 2048), reaches past the end of a 1600-byte file: the write may grow
  // it and cut it back, so anything beyond is held too.
  RangeLocks locks = Locks(1600);
  Req rmw = ReadModifyWrite(1500, 200), far = Write(1 << 20, 512);
  CHECK(locks.Acquire(&rmw));
  CHECK_EQ(rmw.lock_end, UINT64_MAX);
  CHECK(!locks.Acquire(&far));
  RangeLocks within = Locks(4096);
  Req inside = ReadModifyWrite(1500, 200);
  CHECK(within.Acquire(&inside));
  CHECK_EQ(inside.lock_end, 2048u);
  RangeLocks device = Locks(UINT64_MAX);  // a device never grows
  Req on_device = ReadModifyWrite(1500, 200);
  CHECK(device.Acquire(&on_device));
  CHECK_EQ(on_device.lock_end, 2048u);
}

TEST(RangeLocks, FlushHoldsNoRange) {
  RangeLocks locks = Locks();
  Req rmw = ReadModifyWrite(0, 100), flush;
  flush.op = kFlush;
  CHECK(locks.Acquire(&rmw));
  CHECK(locks.Acquire(&flush));
}

TEST(RangeLocks, ReleaseInAnyOrderLeavesNothingHeld) {
  RangeLocks locks = Locks();
  Req a = Write(0, 512), b = ReadModifyWrite(4096, 10), c = Write(8192, 512);
  CHECK(locks.Acquire(&a));
  CHECK(locks.Acquire(&b));
  CHECK(locks.Acquire(&c));
  std::vector<Req*> runnable;
  locks.Release(&a, runnable);
  locks.Release(&c, runnable);
  CHECK_EQ(b.track_index, 0u);  // moved into the freed place
  locks.Release(&b, runnable);
  CHECK(runnable.empty());
  CHECK_EQ(locks.tracked(), 0u);
  CHECK_EQ(a.track_index, SIZE_MAX);
  // Nothing serialising is left: a write over b's former blocks and a new read-modify-write run.
  Req d = Write(4096, 512), e = ReadModifyWrite(0, 10);
  CHECK(locks.Acquire(&d));
  CHECK(locks.Acquire(&e));
}
