// Aligned bounce buffers for O_DIRECT requests whose memory is misaligned, reused instead of
// allocated per request. Buffers come in power-of-two size classes (4 KiB .. 1 MiB); each class
// keeps the buffers returned to it, up to a per-engine budget. Larger requests are rare (the
// guest is told size_max) and are allocated and freed each time. Owning thread only: no locks.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

namespace spindle {

class BouncePool {
 public:
  static constexpr size_t kMinClass = 4096;
  static constexpr int kClasses = 9;                     // 4 KiB << 0..8 = up to 1 MiB
  static constexpr size_t kMaxPooled = size_t(4) << 20;  // bytes kept idle per engine

  explicit BouncePool(size_t alignment) : alignment_(alignment < kMinClass ? kMinClass : alignment) {}
  BouncePool(const BouncePool&) = delete;
  BouncePool& operator=(const BouncePool&) = delete;
  ~BouncePool() {
    for (auto& list : free_)
      for (void* p : list) std::free(p);
  }

  // An aligned buffer of at least `length` bytes, or nullptr when memory is exhausted.
  void* Get(size_t length) {
    int c = ClassOf(length);
    if (c >= 0 && !free_[c].empty()) {
      void* p = free_[c].back();
      free_[c].pop_back();
      pooled_ -= kMinClass << c;
      reuses_++;
      return p;
    }
    void* p = nullptr;
    if (posix_memalign(&p, alignment_, c >= 0 ? kMinClass << c : length) != 0) return nullptr;
    allocations_++;
    return p;
  }

  // Gives back a buffer Get(length) returned, with the same length.
  void Put(void* p, size_t length) {
    int c = ClassOf(length);
    size_t size = c >= 0 ? kMinClass << c : 0;
    if (c < 0 || pooled_ + size > kMaxPooled) {
      std::free(p);
      return;
    }
    free_[c].push_back(p);
    pooled_ += size;
  }

  uint64_t allocations() const { return allocations_; }
  uint64_t reuses() const { return reuses_; }

 private:
  // Size class of a length (-1: too big to pool).
  static int ClassOf(size_t length) {
    size_t size = kMinClass;
    for (int c = 0; c < kClasses; c++, size <<= 1)
      if (length <= size) return c;
    return -1;
  }

  size_t alignment_;
  size_t pooled_ = 0;
  uint64_t allocations_ = 0, reuses_ = 0;
  std::vector<void*> free_[kClasses];
};

}  // namespace spindle
