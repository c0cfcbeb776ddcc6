// Which io_uring setup flags a ring gets: the cheapest completion model the kernel accepts, tried
// in order, each refusal (EINVAL: a flag this kernel does not know) falling back to the next.
// Pure (the setup call is passed in), unit-tested in test/uring_setup_test.cc.
//   single-issuer + defer-taskrun (6.1): completions are posted only when the one submitting thread
//     asks (io_uring_get_events), no task-work interrupts; the eventfd still signals new work.
//   coop-taskrun (5.19): completion task work waits for the thread's next kernel entry, no IPI.
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
