// One I/O request as the engines see it, and the blocking code path the thread pool runs.
#pragma once
#include <limits.h>
#include <stdint.h>
#include <sys/uio.h>
#include <cstdint>
#include <vector>

namespace spindle {

enum Op : uint8_t { kRead = 0, kWrite = 1, kFlush = 2, kDiscard = 3, kWriteZeroes = 4 };
constexpr uint32_t kWriteZeroesMayUnmap = 1;  // electron/dataplane/block/types.ts WRITE_ZEROES_MAY_UNMAP
// Write or write-zeroes that must be durable before it completes (the guest turned its write
// cache off): electron/dataplane/block/engine.ts REQUEST_FLAG_FUA. Emulated with an fdatasync barrier.
constexpr uint32_t kFua = 1u << 16;

// What the request's file descriptor is, fixed per engine.
struct Target {
  int fd = -1;
  bool is_block = false;
  bool direct = false;
  uint32_t alignment = 512;
};

// Where a request runs and why: one value instead of a set of flags. Set at submission and on
// each dispatch by the engine core (core.cc). The pool routes are final: a request that went to
// the pool stays there, its short-I/O continuations included.
enum class Route : uint8_t {
  kNew,            // not dispatched yet
  kImmediate,      // completed at submission without I/O: invalid record, read-only target, no-op
  kInline,         // done on the owning thread with RWF_NOWAIT (page cache hit); EAGAIN goes to kPool
  kKernel,         // in the backend (libaio, io_uring)
  kKernelNowait,   // in the backend with RWF_NOWAIT: EAGAIN or EOPNOTSUPP sends it to kPoolFallback
  kPool,           // in the thread pool: the threads engine, or an op the backend does not do
  kPoolFallback,   // in the thread pool after the backend would have blocked (nowait) or lacked the op
  kPoolUnaligned,  // in the thread pool on the covering blocks (not aligned where the kernel needs it)
  kPoolAllocate,   // a write into a hole (extent_map.h): the pool allocates [alloc_begin, alloc_end) first
};

struct Req {
  uint32_t tag = 0;
  Op op = kRead;
  Route route = Route::kNew;
  uint32_t flags = 0;
  uint64_t offset = 0;          // byte offset of the whole request
  uint64_t length = 0;          // total bytes
  uint64_t done = 0;            // bytes already transferred (short I/O is continued from here)
  std::vector<iovec> user_iov;  // the caller's memory
  std::vector<iovec> iov;       // what is submitted: user_iov, or the bounce buffer; advanced on short I/O
  void* bounce = nullptr;       // aligned copy under O_DIRECT when user memory is misaligned
  int64_t res = 0;              // last syscall result: bytes or -errno
  uint64_t start_ns = 0;
  int retries = 0;  // resubmissions after the backend's EAGAIN (device queue full)
  // Byte range a modifying request holds while in flight (aligned out for a read-modify-write),
  // and its position among the range locks' tracked requests (range_locks.h), SIZE_MAX: none.
  uint64_t lock_begin = 0, lock_end = 0;
  size_t track_index = SIZE_MAX;
  // kPoolAllocate: the range the pool allocates (fallocate, keeping the size) before writing; set
  // empty by the pool when that failed (the write itself still runs).
  uint64_t alloc_begin = 0, alloc_end = 0;
  Req* done_next = nullptr;  // the thread pool's list of finished requests (thread_pool.h)

  bool nowait() const { return route == Route::kKernelNowait; }
  bool in_pool() const { return route >= Route::kPool; }  // kPool and the pool routes after it
  // Offset or length not aligned to the logical block size where the kernel needs it (O_DIRECT
  // data, BLKZEROOUT, BLKDISCARD): the pool does it on the covering blocks (RunBlocking).
  bool unaligned() const { return route == Route::kPoolUnaligned; }
  // A read-modify-write: overlapping writes must neither run during it nor be overtaken by it.
  bool serialising() const { return route == Route::kPoolUnaligned && op != kRead; }
};

// Runs `r` to completion with blocking syscalls, from r->done onward; sets r->res to the bytes
// transferred by this call (read/write) or 0 / -errno. Reads past end of file return zeros.
// An unaligned() request works on the blocks covering it (read-modify-write for writes).
void RunBlocking(const Target& t, Req* r, bool flush_noop);

// Drops the first `n` bytes from an iovec list.
void AdvanceIov(std::vector<iovec>& iov, uint64_t n);

// Copies an iovec list's bytes into a flat buffer, and a flat buffer's bytes into an iovec list.
void GatherIov(const std::vector<iovec>& iov, void* dst);
void ScatterIov(const void* src, const std::vector<iovec>& iov);

}  // namespace spindle
