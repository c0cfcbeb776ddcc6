#include "../fua_barrier.h"
#include <vector>
#include "check.h"

using spindle::FuaBarrier;
using spindle::kFlush;
using spindle::kFua;
using spindle::kWrite;
using spindle::Req;

namespace {

Req Write(uint32_t flags) {
  Req r;
  r.op = kWrite;
  r.flags = flags;
  return r;
}

}  // namespace

TEST(FuaBarrier, NotNeededHoldsNothing) {
  FuaBarrier fua(false);
  Req w = Write(kFua);
  CHECK(!fua.Hold(&w));
  CHECK(!fua.Holding());
  CHECK(!fua.Due());
}

TEST(FuaBarrier, HoldsOnlyFuaWrites) {
  FuaBarrier fua(true);
  Req plain = Write(0), durable = Write(kFua);
  CHECK(!fua.Hold(&plain));
  CHECK(fua.Hold(&durable));
  CHECK(fua.Holding());
  CHECK(fua.Due());
}

TEST(FuaBarrier, OneBarrierAtATimeCoversWhatFinishedBeforeIt) {
  FuaBarrier fua(true);
  Req a = Write(kFua), b = Write(kFua), late = Write(kFua), flush, flush2;
  flush.op = flush2.op = kFlush;
  CHECK(fua.Hold(&a));
  CHECK(fua.Hold(&b));
  fua.Start(&flush);
  CHECK(fua.IsBarrier(&flush));
  CHECK(!fua.IsBarrier(&a));
  CHECK(!fua.Due());
  CHECK(fua.Hold(&late));  // finished after the flush started: waits for the next one
  CHECK(!fua.Due());
  std::vector<Req*> completed;
  fua.Finish([&](Req* w) { completed.push_back(w); });
  CHECK(completed.size() == 2 && completed[0] == &a && completed[1] == &b);
  CHECK(!fua.IsBarrier(&flush));
  CHECK(fua.Due());
  fua.Start(&flush2);
  completed.clear();
  fua.Finish([&](Req* w) { completed.push_back(w); });
  CHECK(completed.size() == 1 && completed[0] == &late);
  CHECK(!fua.Holding());
  CHECK(!fua.Due());
}
