// Runs every registered case; prints each failing case and a count a person reads.
#include "check.h"

int main() {
  int passed = 0, failed = 0;
  for (const unit::Case& c : unit::Cases()) {
    int before = unit::FailedChecks();
    c.run();
    if (unit::FailedChecks() == before) {
      passed++;
      std::cout << "  ok    " << c.suite << "." << c.name << "\n";
    } else {
      failed++;
      std::cout << "  FAIL  " << c.suite << "." << c.name << "\n";
    }
  }
  std::cout << "native units: " << passed << " passed, " << failed << " failed\n";
  return failed == 0 && passed > 0 ? 0 : 1;
}
