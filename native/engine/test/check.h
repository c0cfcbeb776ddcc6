// A minimal test harness for the engine's pure C++ parts (no dependency): TEST registers a
// case, CHECK / CHECK_EQ record a failure and go on. scripts/test-native-units.mjs builds and
// runs every *_test.cc here with main.cc.
#pragma once
#include <iostream>
#include <vector>

namespace unit {

struct Case {
  const char* suite;
  const char* name;
  void (*run)();
};

inline std::vector<Case>& Cases() {
  static std::vector<Case> cases;
  return cases;
}

inline int& FailedChecks() {
  static int failed = 0;
  return failed;
}

struct Register {
  Register(const char* suite, const char* name, void (*run)()) { Cases().push_back({suite, name, run}); }
};

}  // namespace unit

#define TEST(suite, name)                                                                 \
  static void suite##_##name();                                                           \
  static const unit::Register suite##_##name##_registered(#suite, #name, suite##_##name); \
  static void suite##_##name()

#define CHECK(cond)                                                                        \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      std::cout << "    " << __FILE__ << ":" << __LINE__ << ": CHECK(" #cond ") failed\n"; \
      unit::FailedChecks()++;                                                              \
    }                                                                                      \
  } while (0)

#define CHECK_EQ(actual, expected)                                                                           \
  do {                                                                                                       \
    const auto& a_ = (actual);                                                                               \
    const auto& e_ = (expected);                                                                             \
    if (!(a_ == e_)) {                                                                                       \
      std::cout << "    " << __FILE__ << ":" << __LINE__ << ": " #actual " is " << a_ << ", expected " << e_ \
                << "\n";                                                                                     \
      unit::FailedChecks()++;                                                                                \
    }                                                                                                        \
  } while (0)
