// Which io_uring setup flags a ring gets: a completion model, tried in order from the one asked
// for, each refusal (EINVAL: a flag this kernel does not know) falling back to the next.
// Pure (the setup call is passed in), unit-tested in test/uring_setup_test.cc.
//   single-issuer + defer-taskrun (6.1): completions are posted only when the one submitting thread
//     asks (io_uring_get_events), no task-work interrupts; the eventfd is meant to signal new work.
//     Not the default: serving a disk with it (buffered random writes on tmpfs, some punted to
//     io-wq, kernel 6.18) stalled for good in 1 run of 4 on a busy machine, 32 requests in the
//     kernel, none in the CQ ring, the eventfd at 0 (tests/native/uring-no-stall.test.ts).
//   coop-taskrun (5.19): completion task work waits for the thread's next kernel entry, no IPI;
//     the default (binding.cc).
//   plain: what every io_uring kernel takes.
#pragma once
#include <linux/io_uring.h>
#include <cerrno>

namespace spindle::uring {

struct SetupChoice {
  unsigned flags;
  const char* name;
  bool defer;  // completions need io_uring_get_events before they can be reaped
};

#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif
#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif

inline constexpr SetupChoice kSetupChoices[] = {
    {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, "single-issuer+defer-taskrun", true},
    {IORING_SETUP_COOP_TASKRUN, "coop-taskrun", false},
    {0, "plain", false},
};
inline constexpr int kSetupChoiceCount = sizeof(kSetupChoices) / sizeof(kSetupChoices[0]);

// Calls `try_setup(extra_flags)` (0 or -errno) from choice `first` on; returns the index of the
// first accepted choice, or the -errno of a refusal that is not about flags (ENOMEM, EPERM, ...),
// or of the last choice.
template <typename TrySetup>
int SetupWithFallback(TrySetup&& try_setup, int first = 0) {
  int err = -EINVAL;
  for (int i = first; i < kSetupChoiceCount; i++) {
    err = try_setup(kSetupChoices[i].flags);
    if (err == 0) return i;
    if (err != -EINVAL) return err;
  }
  return err;
}

}  // namespace spindle::uring
