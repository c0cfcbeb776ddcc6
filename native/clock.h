// Clock readings in nanoseconds, shared by the engines and the probes.
#pragma once
#include <time.h>
#include <cstdint>

namespace spindle {

inline uint64_t ClockNs(clockid_t id) {
  timespec ts;
  clock_gettime(id, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}
inline uint64_t MonoNs() { return ClockNs(CLOCK_MONOTONIC); }
// CPU time of the calling thread.
inline uint64_t ThreadCpuNs() { return ClockNs(CLOCK_THREAD_CPUTIME_ID); }

}  // namespace spindle
