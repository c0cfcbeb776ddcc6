#include "../counters.h"
#include <set>
#include <string>
#include "check.h"

namespace c = spindle::counters;

TEST(Counters, BucketsAreLog2Microseconds) {
  CHECK_EQ(c::BucketOfNs(0), 0);
  CHECK_EQ(c::BucketOfNs(999), 0);
  CHECK_EQ(c::BucketOfNs(1000), 1);
  CHECK_EQ(c::BucketOfNs(1999), 1);
  CHECK_EQ(c::BucketOfNs(2000), 2);
  CHECK_EQ(c::BucketOfNs(1000000), 10);  // 1 ms = 1000 us: [2^9, 2^10) us
  CHECK_EQ(c::BucketOfNs(UINT64_MAX), c::kBuckets - 1);
}

TEST(Counters, FieldNamesAreUnique) {
  std::set<std::string> names;
  size_t exported = 0;
  for (const c::Field& f : c::kFields)
    if (f.name) {
      names.insert(f.name);
      exported++;
    }
  CHECK_EQ(names.size(), exported);
}
