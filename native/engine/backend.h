// What a kernel submission interface (libaio, io_uring) provides to the engine core.
// The thread-pool engine has no backend: every request goes to the pool.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>
#include "counters.h"
#include "request.h"

namespace spindle {

// Time spent inside io_submit / io_uring_submit, written straight into the counters.
struct SubmitStats {
  counters::Counters* counters = nullptr;
  void Record(uint64_t ns);
};

class Backend {
 public:
  virtual ~Backend() = default;
  // Whether the kernel interface does this request itself (else it goes to the thread pool).
  virtual bool Handles(const Req* r) const = 0;
  // Queues a request; nothing reaches the kernel before Flush.
  virtual void Enqueue(Req* r) = 0;
  // Submits as much of the queue as the queue depth allows, in as few syscalls as possible.
  // Requests the kernel refused outright land in `refused` with r->res set.
  virtual void Flush(std::vector<Req*>& refused, SubmitStats& stats) = 0;
  // Collects every finished request (r->res set) without blocking.
  virtual void Reap(std::vector<Req*>& out) = 0;
  // Blocks until at least one request finishes or `timeout_ms` passes, then reaps.
  virtual void WaitReap(std::vector<Req*>& out, int timeout_ms) = 0;
  // Requests queued but not yet accepted by the kernel, and accepted but not finished.
  virtual size_t Queued() const = 0;
  virtual size_t InKernel() const = 0;
  // True when the last Flush left requests queued with nothing in flight to wake us (retry later).
  virtual bool Stuck() const = 0;
  // What the kernel interface was set up with (io_uring: setup flags, fixed file), for diagnostics.
  virtual std::string Features() const { return ""; }
  // Memory the requests' data lives in (guest RAM), for an interface that can pin it once
  // (io_uring fixed buffers). False when it was not taken (requests still work, unpinned).
  virtual bool RegisterMemory(uint8_t* data, size_t length) {
    (void)data;
    (void)length;
    return false;
  }
  virtual void UnregisterMemory(uint8_t* data) { (void)data; }
};

// Create a backend on `eventfd` (signalled on completions). Throw std::runtime_error with errno text.
std::unique_ptr<Backend> MakeLinuxAio(const Target& t, int queue_depth, int eventfd);
// `first_setup`: the first of uring_setup.h's kSetupChoices to try (0: the cheapest).
std::unique_ptr<Backend> MakeIoUring(const Target& t, int queue_depth, int eventfd, int first_setup = 0);

}  // namespace spindle
