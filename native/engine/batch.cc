#include "batch.h"

namespace spindle::batch {

std::string CheckFraming(const double* w, size_t n, uint32_t count) {
  for (size_t i = 0, q = 0; i < count; i++) {
    if (q + kRequestWords > n) return "submit: queue shorter than its request count";
    if (!WholeBelow(w[q], k2p32))
      return "submit: request " + std::to_string(i) +
             " has a tag that is not a whole number from 0 to 2^32-1";
    if (!WholeBelow(w[q + 5], kMaxSegments + 1))
      return "submit: request " + std::to_string(i) +
             " has a segment count that is not a whole number from 0 to 65536";
    q += kRequestWords + size_t(w[q + 5]) * kSegmentWords;
    if (q > n) return "submit: request segments run past the queue";
  }
  return "";
}

}  // namespace spindle::batch
