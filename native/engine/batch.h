// Decoding a submission batch: the Float64Array that electron/dataplane/block/engine.ts
// (SubmissionQueue) fills, in words:
//   request: tag, op, offsetBytes, lengthBytes, flags, segmentCount, then per segment
//            bufferId, bufferOffset, length.
// The words come from JS as doubles; a cast of NaN, a negative or an out-of-range double to an
// integer type is undefined behaviour, so every field is checked to be a whole number in range
// before it is converted. Pure: no Node-API, no syscalls (unit-tested in test/batch_test.cc).
#pragma once
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include "request.h"

namespace spindle::batch {

constexpr size_t kRequestWords = 6;
constexpr size_t kSegmentWords = 3;
constexpr double k2p32 = 4294967296.0;
constexpr double k2p63 = 9223372036854775808.0;
// Segments one request may have: far above any guest's (virtio seg_max 126, split at memory
// region boundaries), low enough that a bogus count is caught before the record is walked.
constexpr double kMaxSegments = 65536;
constexpr uint32_t kKnownFlags = kWriteZeroesMayUnmap | kFua;

inline bool WholeBelow(double v, double limit) { return v >= 0 && v < limit && v == std::floor(v); }

// Memory a buffer id stands for.
struct Span {
  uint8_t* data = nullptr;
  size_t length = 0;
};

// Checks the records' framing (tags and segment counts) of `count` requests in `w[0..n)`: a
// record whose tag or extent cannot be trusted cannot be completed, so such a batch is refused
// whole, before anything is submitted. Returns "" or the sentence saying what is wrong.
std::string CheckFraming(const double* w, size_t n, uint32_t count);

// Decodes the record at w[p] (framing checked) into `r` and moves `p` past it. Returns 0, or the
// -errno the request alone fails with: -EINVAL for a bad field or op, -EFAULT for a segment
// outside its registered buffer. `find(id)` gives the buffer's Span, or nullptr if none.
template <typename FindBuffer>
int64_t DecodeRequest(const double* w, size_t& p, Req* r, FindBuffer&& find) {
  const uint32_t nseg = static_cast<uint32_t>(w[p + 5]);
  r->tag = static_cast<uint32_t>(w[p]);
  const double op = w[p + 1], offset = w[p + 2], length = w[p + 3], flags = w[p + 4];
  int64_t err = 0;
  if (!WholeBelow(offset, k2p63) || !WholeBelow(length, k2p63) || offset + length > k2p63 ||
      !WholeBelow(flags, k2p32) || (static_cast<uint32_t>(flags) & ~kKnownFlags))
    err = -EINVAL;
  r->offset = err ? 0 : static_cast<uint64_t>(offset);
  r->length = err ? 0 : static_cast<uint64_t>(length);
  r->flags = err ? 0 : static_cast<uint32_t>(flags);
  p += kRequestWords;
  uint64_t seg_total = 0;
  for (uint32_t s = 0; s < nseg; s++, p += kSegmentWords) {
    if (!WholeBelow(w[p], k2p32) || !WholeBelow(w[p + 1], k2p63) || !WholeBelow(w[p + 2], k2p63)) {
      err = err ? err : -EINVAL;
      continue;
    }
    const Span* b = find(static_cast<uint32_t>(w[p]));
    uint64_t boff = static_cast<uint64_t>(w[p + 1]), len = static_cast<uint64_t>(w[p + 2]);
    if (!b || boff > b->length || len > b->length - boff) {
      err = err ? err : -EFAULT;
      continue;
    }
    if (len) r->user_iov.push_back({b->data + boff, len});
    seg_total += len;
  }
  if (!(op >= 0 && op <= 4 && op == std::floor(op))) {
    r->op = kRead;
    return -EINVAL;
  }
  r->op = static_cast<Op>(static_cast<int>(op));
  // Reads and writes take their length from their segments.
  if (r->op == kRead || r->op == kWrite) r->length = seg_total;
  return err;
}

}  // namespace spindle::batch
