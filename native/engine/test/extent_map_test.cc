#include "../extent_map.h"
#include "check.h"

using spindle::ExtentMap;

TEST(ExtentMap, AddMergesTouchingAndOverlapping) {
  ExtentMap m;
  m.Add(0, 4096);
  m.Add(8192, 12288);
  CHECK_EQ(m.extents(), size_t(2));
  CHECK(!m.Covers(0, 8192));
  m.Add(4096, 8192);  // fills the gap: one extent
  CHECK_EQ(m.extents(), size_t(1));
  CHECK(m.Covers(0, 12288));
  m.Add(100, 200);  // inside: nothing changes
  CHECK_EQ(m.extents(), size_t(1));
  CHECK_EQ(m.allocated_bytes(), uint64_t(12288));
}

TEST(ExtentMap, CoversOnlyWhollyAllocatedRanges) {
  ExtentMap m;
  CHECK(!m.Covers(0, 512));
  m.Add(1 << 20, 2 << 20);
  CHECK(m.Covers(1 << 20, (1 << 20) + 4096));
  CHECK(m.Covers((2 << 20) - 4096, 2 << 20));
  CHECK(!m.Covers((2 << 20) - 4096, (2 << 20) + 1));  // runs into the hole after it
  CHECK(!m.Covers((1 << 20) - 1, (1 << 20) + 4096));  // starts in the hole before it
  CHECK(!m.Covers(0, 4096));
}

TEST(ExtentMap, RemoveSplitsAndTrims) {
  ExtentMap m;
  m.Add(0, 1 << 20);
  m.Remove(4096, 8192);  // a discard in the middle
  CHECK_EQ(m.extents(), size_t(2));
  CHECK(m.Covers(0, 4096));
  CHECK(!m.Covers(4096, 8192));
  CHECK(!m.Covers(0, 8192));
  CHECK(m.Covers(8192, 1 << 20));
  m.Remove(0, 1 << 30);  // everything
  CHECK_EQ(m.extents(), size_t(0));
  m.Add(0, 4096);
  m.Add(8192, 12288);
  m.Remove(2048, 10240);  // across a gap: trims both
  CHECK(m.Covers(0, 2048));
  CHECK(m.Covers(10240, 12288));
  CHECK_EQ(m.allocated_bytes(), uint64_t(4096));
}
