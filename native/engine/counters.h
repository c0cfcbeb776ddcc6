// Layout of the per-disk counters the engines write into a caller-provided SharedArrayBuffer
// (a Float64Array over it). Must match electron/block/stats.ts; bump kCountersVersion on change.
// Only the thread that owns the engine writes these slots, so plain stores suffice: readers on
// other threads may see a value one batch old, never a torn one (aligned 8-byte stores).
#pragma once
#include <cstdint>

namespace spindle::counters {

constexpr int kCountersVersion = 1;
constexpr int kDirections = 5;  // read, write, flush, discard, write-zeroes (BlockOp order)
constexpr int kBuckets = 32;    // log2 microsecond buckets: b covers [2^(b-1), 2^b) us, b=0 is < 1 us

constexpr int kVersion = 0;
constexpr int kDirBase = 1;  // + dir * 3 + {0: ops, 1: bytes, 2: errors}
constexpr int kInFlight = 16;
constexpr int kNowaitReadSubmitted = 17;
constexpr int kNowaitReadFallbacks = 18;
constexpr int kNowaitWriteSubmitted = 19;
constexpr int kNowaitWriteFallbacks = 20;
constexpr int kSubmitCalls = 21;
constexpr int kSubmitTotalNs = 22;
constexpr int kSubmitMaxNs = 23;
constexpr int kCpuPoolNs = 24;  // CPU time of the engine's pool workers (CLOCK_THREAD_CPUTIME_ID per task)
constexpr int kCpuLoopNs = 25;  // time the owning thread spends inside the engine (submit + reap), by the monotonic
                                // clock: a thread CPU-clock read costs a syscall per batch, and the engine never sleeps there
constexpr int kLatencyHist = 32;  // + dir * kBuckets + bucket
constexpr int kSubmitHist = kLatencyHist + kDirections * kBuckets;  // 192
constexpr int kSlots = kSubmitHist + kBuckets;                       // 224

inline int BucketOfNs(uint64_t ns) {
  uint64_t us = ns / 1000;
  if (us == 0) return 0;
  int b = 64 - __builtin_clzll(us);
  return b < kBuckets ? b : kBuckets - 1;
}

}  // namespace spindle::counters
