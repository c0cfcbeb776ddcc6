// Serialises read-modify-writes against overlapping writes, as QEMU's block layer does with its
// "serialising requests" (block/io.c): a read-modify-write of partial blocks must not run beside
// a write to the same blocks (one would undo the other), nor be overtaken by a write that arrived
// after it. Plain writes never wait for each other. Costs one branch per write while no
// read-modify-write is around. Owning thread only: no locks in the threading sense.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>
#include "request.h"

namespace spindle {

class RangeLocks {
 public:
  // `alignment`: the logical block size a read-modify-write covers. `file_size`: the current
  // size of the file, asked only for a read-modify-write (UINT64_MAX for a device, 0 if unknown).
  RangeLocks(uint32_t alignment, std::function<uint64_t()> file_size)
      : alignment_(alignment), file_size_(std::move(file_size)) {}

  // Takes the range `r` modifies. True: it may run now (it is tracked until Release). False: it
  // is parked behind an overlapping request and comes back from a later Release.
  bool Acquire(Req* r);

  // `r` (tracked) finished. Appends to `runnable`, in arrival order, the parked requests that may
  // run now; they are tracked already.
  void Release(Req* r, std::vector<Req*>& runnable);

  size_t tracked() const { return tracked_.size(); }
  size_t parked() const { return parked_.size(); }

 private:
  void SetRange(Req* r);
  bool MustWait(const Req* r, size_t ahead) const;
  void Track(Req* r);

  const uint32_t alignment_;
  const std::function<uint64_t()> file_size_;
  // Modifying requests in flight (any order), and those parked, in arrival order.
  std::vector<Req*> tracked_, parked_;
  size_t serialising_ = 0;  // read-modify-writes among tracked_
};

}  // namespace spindle
