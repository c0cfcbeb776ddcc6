// The blocking implementation of every operation: what the thread pool runs, and what the
// other engines reroute here for ops the kernel cannot do asynchronously for them.
#include "request.h"
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <algorithm>

namespace spindle {

void AdvanceIov(std::vector<iovec>& iov, uint64_t n) {
  size_t i = 0;
  while (i < iov.size() && n >= iov[i].iov_len) n -= iov[i++].iov_len;
  iov.erase(iov.begin(), iov.begin() + i);
  if (n && !iov.empty()) {
    iov[0].iov_base = static_cast<char*>(iov[0].iov_base) + n;
    iov[0].iov_len -= n;
  }
}

static void ZeroIov(const std::vector<iovec>& iov) {
  for (const iovec& v : iov) memset(v.iov_base, 0, v.iov_len);
}

// preadv/pwritev until done; a read at end of file fills the rest with zeros.
static int64_t ReadWrite(const Target& t, Req* r) {
  std::vector<iovec> iov = r->iov;
  uint64_t pos = r->offset + r->done, total = 0, want = r->length - r->done;
  while (total < want) {
    int cnt = static_cast<int>(std::min<size_t>(iov.size(), IOV_MAX));
    ssize_t n = r->op == kRead ? preadv(t.fd, iov.data(), cnt, pos) : pwritev(t.fd, iov.data(), cnt, pos);
    if (n < 0) {
      if (errno == EINTR) continue;
      // Under O_DIRECT a short read stops at an unaligned end of file: the rest is past EOF.
      if (r->op == kRead && errno == EINVAL && total > 0) { ZeroIov(iov); return want; }
      return -errno;
    }
    if (n == 0) {
      if (r->op == kRead) { ZeroIov(iov); return want; }
      return -EIO;
    }
    total += n;
    pos += n;
    AdvanceIov(iov, n);
  }
  return total;
}

static void* ZeroBlock(size_t size) {
  void* p = nullptr;
  if (posix_memalign(&p, 4096, size) != 0) return nullptr;
  memset(p, 0, size);
  return p;
}

// Writing zeros, for filesystems without FALLOC_FL_ZERO_RANGE and devices without BLKZEROOUT.
static int64_t WriteZerosByHand(const Target& t, uint64_t off, uint64_t len) {
  const size_t chunk = 1 << 20;
  void* zeros = ZeroBlock(chunk);
  if (!zeros) return -ENOMEM;
  int64_t res = 0;
  while (len > 0) {
    size_t n = std::min<uint64_t>(chunk, len);
    ssize_t w = pwrite(t.fd, zeros, n, off);
    if (w < 0) { if (errno == EINTR) continue; res = -errno; break; }
    if (w == 0) { res = -EIO; break; }
    off += w;
    len -= w;
  }
  free(zeros);
  return res;
}

static int64_t Discard(const Target& t, Req* r) {
  if (t.is_block) {
    uint64_t range[2] = {r->offset, r->length};
    return ioctl(t.fd, BLKDISCARD, range) == 0 ? 0 : -errno;
  }
  return fallocate(t.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, r->offset, r->length) == 0 ? 0 : -errno;
}

static int64_t WriteZeroes(const Target& t, Req* r) {
  if (t.is_block) {
    uint64_t range[2] = {r->offset, r->length};
    if (ioctl(t.fd, BLKZEROOUT, range) == 0) return 0;
    if (errno != EOPNOTSUPP && errno != ENOTTY) return -errno;
    return WriteZerosByHand(t, r->offset, r->length);
  }
  int mode = (r->flags & kWriteZeroesMayUnmap) ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : FALLOC_FL_ZERO_RANGE;
  if (fallocate(t.fd, mode, r->offset, r->length) == 0) return 0;
  if (errno != EOPNOTSUPP) return -errno;
  if (mode != FALLOC_FL_ZERO_RANGE && fallocate(t.fd, FALLOC_FL_ZERO_RANGE, r->offset, r->length) == 0) return 0;
  return WriteZerosByHand(t, r->offset, r->length);
}

void RunBlocking(const Target& t, Req* r, bool flush_noop) {
  switch (r->op) {
    case kRead:
    case kWrite: r->res = ReadWrite(t, r); break;
    case kFlush: r->res = flush_noop ? 0 : (fdatasync(t.fd) == 0 ? 0 : -errno); break;
    case kDiscard: r->res = Discard(t, r); break;
    case kWriteZeroes: r->res = WriteZeroes(t, r); break;
    default: r->res = -EINVAL;
  }
}

}  // namespace spindle
