// Layout of the per-disk counters the engines write into a caller-provided SharedArrayBuffer
// (a Float64Array over it). electron/dataplane/block/stats.ts reads them; the addon exports kFields
// (engineCountersLayout) and tests/native/counters-layout.test.ts checks that both sides agree.
// Bump kCountersVersion on change.
// Only the thread that owns the engine writes these slots, so plain stores suffice: readers on
// other threads may see a value one batch old, never a torn one (aligned 8-byte stores).
#pragma once
#include <cstddef>
#include <cstdint>

namespace spindle::counters {

constexpr int kCountersVersion = 3;
constexpr int kDirections = 5;  // read, write, flush, discard, write-zeroes (Op order)
constexpr int kBuckets = 32;    // log2 microsecond buckets: b covers [2^(b-1), 2^b) us, b=0 is < 1 us

struct Counters {
  double version;
  double dir[kDirections][3];  // per direction: ops, bytes, errors
  double in_flight;
  double nowait_read_submitted;
  double nowait_read_fallbacks;
  double nowait_write_submitted;
  double nowait_write_fallbacks;
  double submit_calls;  // io_submit / io_uring_submit calls, their total and longest time
  double submit_total_ns;
  double submit_max_ns;
  double cpu_pool_ns;  // CPU time of the engine's pool workers (CLOCK_THREAD_CPUTIME_ID per task)
  // Time the owning thread spends inside the engine (submit + reap), by the monotonic clock: a
  // thread CPU-clock read costs a syscall per batch, and the engine never sleeps there.
  double cpu_loop_ns;
  // The page-cache fast path (threads engine, cache modes through the page cache): requests done
  // inline on the owning thread with RWF_NOWAIT (hits), and the ones that would have blocked and
  // went to the pool (punts).
  double inline_read_hits;
  double inline_read_punts;
  double inline_write_hits;
  double inline_write_punts;
  // Allocation-aware native (extent_map.h): writes into holes sent to the pool (which allocates
  // ahead), and writes the map called allocated that bounced with EAGAIN (a busy range: ext4
  // converting unwritten extents, a timestamp update; or a hole punched behind Spindle's back),
  // written by the pool as they are, without allocating ahead.
  double alloc_pool_writes;
  double alloc_misses;
  double latency_hist[kDirections][kBuckets];  // completion latency per direction
  double submit_hist[kBuckets];                // time per submit call
  // The format layer's (electron/dataplane/format/) counters: written by the qcow2 driver on the
  // disk's thread, never by the engine (stats.ts FORMAT_SLOT names them).
  double format[8];
};

constexpr size_t kSlots = sizeof(Counters) / sizeof(double);  // 232

// Every field by its name in electron/dataplane/block/stats.ts (SLOT), its first slot and its slot count.
struct Field {
  const char* name;  // nullptr: reserved, not exported
  size_t slot, width;
};
#define SPINDLE_COUNTER_FIELD(js, member) \
  Field { js, offsetof(Counters, member) / sizeof(double), sizeof(Counters::member) / sizeof(double) }
constexpr Field kFields[] = {
    SPINDLE_COUNTER_FIELD("version", version),
    SPINDLE_COUNTER_FIELD("dirBase", dir),
    SPINDLE_COUNTER_FIELD("inFlight", in_flight),
    SPINDLE_COUNTER_FIELD("nowaitReadSubmitted", nowait_read_submitted),
    SPINDLE_COUNTER_FIELD("nowaitReadFallbacks", nowait_read_fallbacks),
    SPINDLE_COUNTER_FIELD("nowaitWriteSubmitted", nowait_write_submitted),
    SPINDLE_COUNTER_FIELD("nowaitWriteFallbacks", nowait_write_fallbacks),
    SPINDLE_COUNTER_FIELD("submitCalls", submit_calls),
    SPINDLE_COUNTER_FIELD("submitTotalNs", submit_total_ns),
    SPINDLE_COUNTER_FIELD("submitMaxNs", submit_max_ns),
    SPINDLE_COUNTER_FIELD("cpuPoolNs", cpu_pool_ns),
    SPINDLE_COUNTER_FIELD("cpuLoopNs", cpu_loop_ns),
    SPINDLE_COUNTER_FIELD("inlineReadHits", inline_read_hits),
    SPINDLE_COUNTER_FIELD("inlineReadPunts", inline_read_punts),
    SPINDLE_COUNTER_FIELD("inlineWriteHits", inline_write_hits),
    SPINDLE_COUNTER_FIELD("inlineWritePunts", inline_write_punts),
    SPINDLE_COUNTER_FIELD("allocPoolWrites", alloc_pool_writes),
    SPINDLE_COUNTER_FIELD("allocMisses", alloc_misses),
    SPINDLE_COUNTER_FIELD("latencyHist", latency_hist),
    SPINDLE_COUNTER_FIELD("submitHist", submit_hist),
    SPINDLE_COUNTER_FIELD("formatBase", format),
};
#undef SPINDLE_COUNTER_FIELD

// The table lists every member of Counters, in order, with no gap: a member added to the struct
// but not to the table fails here, at compile time.
constexpr bool FieldsTileCounters() {
  size_t next = 0;
  for (const Field& f : kFields) {
    if (f.slot != next) return false;
    next += f.width;
  }
  return next == kSlots;
}
static_assert(FieldsTileCounters(), "counters::kFields must list every member of Counters in order");
static_assert(sizeof(Counters) == kSlots * sizeof(double), "Counters holds doubles only");

inline int BucketOfNs(uint64_t ns) {
  uint64_t us = ns / 1000;
  if (us == 0) return 0;
  int b = 64 - __builtin_clzll(us);
  return b < kBuckets ? b : kBuckets - 1;
}

}  // namespace spindle::counters
