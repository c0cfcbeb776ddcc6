// Linux AIO through the raw syscalls, for the `native` engine and the nowait probe.
// libaio.a's functions carry symbol versions (io_getevents@@LIBAIO_0.4) that cannot be linked
// statically into a shared object, so only libaio.h's struct iocb and its inline io_prep_*
// helpers are used, with these wrappers. Each returns -errno on failure, as libaio does.
#pragma once
#include <libaio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <cerrno>

namespace spindle::aio {

inline long Ret(long r) { return r < 0 ? -errno : r; }
inline int Setup(unsigned nr_events, io_context_t* ctx) {
  return int(Ret(syscall(SYS_io_setup, nr_events, ctx)));
}
inline int Destroy(io_context_t ctx) { return int(Ret(syscall(SYS_io_destroy, ctx))); }
inline int Submit(io_context_t ctx, long n, iocb** cbs) {
  return int(Ret(syscall(SYS_io_submit, ctx, n, cbs)));
}
// A null timeout waits for min_nr events.
inline int Getevents(io_context_t ctx, long min_nr, long max_nr, io_event* events, timespec* timeout) {
  return int(Ret(syscall(SYS_io_getevents, ctx, min_nr, max_nr, events, timeout)));
}

// The completion ring the kernel maps at the io_context_t address (fs/aio.c struct aio_ring).
// Reading it from user space, as fio's userspace_reap does, saves the io_getevents syscall per
// wake-up. Only one thread may reap a context this way.
struct Ring {
  unsigned id, nr, head, tail, magic, compat_features, incompat_features, header_length;
  io_event events[];
};
constexpr unsigned kRingMagic = 0xa10a10a1;

// The context's ring when its layout is the one above, else nullptr (use Getevents).
inline Ring* RingOf(io_context_t ctx) {
  auto* ring = reinterpret_cast<Ring*>(ctx);
  return ring && ring->magic == kRingMagic && ring->incompat_features == 0 ? ring : nullptr;
}

// Takes up to `max` finished events off the ring without a syscall.
inline int ReapRing(Ring* ring, long max, io_event* events) {
  int n = 0;
  unsigned head = ring->head;
  while (n < max) {
    unsigned tail = __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE);
    if (head == tail) break;
    events[n++] = ring->events[head];
    head = (head + 1) % ring->nr;
    __atomic_store_n(&ring->head, head, __ATOMIC_RELEASE);
  }
  return n;
}

}  // namespace spindle::aio
