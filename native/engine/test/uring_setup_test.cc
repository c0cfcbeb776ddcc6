#include "../uring_setup.h"
#include <vector>
#include "check.h"

namespace u = spindle::uring;

TEST(UringSetup, TakesTheFirstChoiceTheKernelAccepts) {
  std::vector<unsigned> tried;
  int i = u::SetupWithFallback([&](unsigned f) {
    tried.push_back(f);
    return 0;
  });
  CHECK_EQ(i, 0);
  CHECK_EQ(tried.size(), size_t(1));
  CHECK(u::kSetupChoices[i].defer);
}

TEST(UringSetup, FallsBackWhenAFlagIsRefused) {
  // A kernel without DEFER_TASKRUN (before 6.1) says EINVAL; one without COOP_TASKRUN too.
  std::vector<unsigned> tried;
  int i = u::SetupWithFallback([&](unsigned f) {
    tried.push_back(f);
    return (f & IORING_SETUP_DEFER_TASKRUN) ? -EINVAL : 0;
  });
  CHECK_EQ(std::string(u::kSetupChoices[i].name), std::string("coop-taskrun"));
  CHECK(!u::kSetupChoices[i].defer);
  i = u::SetupWithFallback([&](unsigned f) { return f ? -EINVAL : 0; });
  CHECK_EQ(std::string(u::kSetupChoices[i].name), std::string("plain"));
  CHECK_EQ(u::kSetupChoices[i].flags, 0u);
}

TEST(UringSetup, OtherErrorsAreNotRetried) {
  int calls = 0;
  int r = u::SetupWithFallback([&](unsigned) {
    calls++;
    return -ENOMEM;
  });
  CHECK_EQ(r, -ENOMEM);
  CHECK_EQ(calls, 1);
  // Every choice refused: the last refusal.
  CHECK_EQ(u::SetupWithFallback([](unsigned) { return -EINVAL; }), -EINVAL);
}
