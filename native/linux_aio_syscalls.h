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
inline int Setup(unsigned nr_events, io_context_t* ctx) { return int(Ret(syscall(SYS_io_setup, nr_events, ctx))); }
inline int Destroy(io_context_t ctx) { return int(Ret(syscall(SYS_io_destroy, ctx))); }
inline int Submit(io_context_t ctx, long n, iocb** cbs) { return int(Ret(syscall(SYS_io_submit, ctx, n, cbs))); }
// A null timeout waits for min_nr events.
inline int Getevents(io_context_t ctx, long min_nr, long max_nr, io_event* events, timespec* timeout) {
  return int(Ret(syscall(SYS_io_getevents, ctx, min_nr, max_nr, events, timeout)));
}

}  // namespace spindle::aio
