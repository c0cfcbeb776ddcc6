// Which byte ranges of a raw image file are allocated (backed by blocks, written or unwritten), as
// far as Spindle knows: loaded at open (LoadExtents: FIEMAP, or SEEK_DATA/SEEK_HOLE), then kept up
// to date by the engine from its own writes, discards, write-zeroes and allocations (core.cc).
// It answers "may this write go to Linux AIO without allocating blocks inside io_submit?".
// The map can be wrong only if someone else changes the file; the engine submits the writes it
// allows with RWF_NOWAIT, so a write into a hole the map did not know about comes back EAGAIN,
// is counted (alloc_misses) and is written by the pool (which allocates what it needs): never silently.
// Pure except LoadExtents; unit-tested in test/extent_map_test.cc.
#pragma once
#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>

namespace spindle {

class ExtentMap {
 public:
  // [begin, end) is allocated: merged with its neighbours.
  void Add(uint64_t begin, uint64_t end) {
    if (begin >= end) return;
    auto it = map_.upper_bound(begin);
    if (it != map_.begin() && std::prev(it)->second >= begin) {
      --it;
      begin = it->first;
    }
    while (it != map_.end() && it->first <= end) {
      end = std::max(end, it->second);
      it = map_.erase(it);
    }
    map_.emplace(begin, end);
  }

  // [begin, end) is a hole now (or may be): split what overlaps it.
  void Remove(uint64_t begin, uint64_t end) {
    if (begin >= end) return;
    auto it = map_.upper_bound(begin);
    if (it != map_.begin()) --it;
    while (it != map_.end() && it->first < end) {
      const uint64_t b = it->first, e = it->second;
      if (e <= begin) {
        ++it;
        continue;
      }
      it = map_.erase(it);
      if (b < begin) map_.emplace(b, begin);
      if (e > end) map_.emplace(end, e);
    }
  }

  // Every byte of [begin, end) is allocated.
  bool Covers(uint64_t begin, uint64_t end) const {
    if (begin >= end) return true;
    auto it = map_.upper_bound(begin);
    if (it == map_.begin()) return false;
    --it;
    return it->first <= begin && it->second >= end;  // Add merges touching extents
  }

  size_t extents() const { return map_.size(); }
  uint64_t allocated_bytes() const {
    uint64_t n = 0;
    for (const auto& [b, e] : map_) n += e - b;
    return n;
  }
  void Clear() { map_.clear(); }

 private:
  std::map<uint64_t, uint64_t> map_;  // begin -> end, disjoint and not touching
};

// Fills `map` with the allocated ranges of the file `fd` (unwritten extents count as allocated:
// writing into them allocates nothing) in [0, size): FIEMAP, else SEEK_DATA/SEEK_HOLE (which may
// report unwritten extents as holes: only slower, never unsafe). Returns 0 or -errno.
int LoadExtents(int fd, uint64_t size, ExtentMap& map);

}  // namespace spindle
