// The blocking implementation of every operation: what the thread pool runs, and what the
// other engines reroute here for ops the kernel cannot do asynchronously for them.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include "request.h"

namespace spindle {

void GatherIov(const std::vector<iovec>& iov, void* dst) {
  auto* d = static_cast<uint8_t*>(dst);
  for (const iovec& v : iov) {
    memcpy(d, v.iov_base, v.iov_len);
    d += v.iov_len;
  }
}

void ScatterIov(const void* src, const std::vector<iovec>& iov) {
  auto* s = static_cast<const uint8_t*>(src);
  for (const iovec& v : iov) {
    memcpy(v.iov_base, s, v.iov_len);
    s += v.iov_len;
  }
}

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
      if (r->op == kRead && errno == EINVAL && total > 0) {
        ZeroIov(iov);
        return want;
      }
      return -errno;
    }
    if (n == 0) {
      if (r->op == kRead) {
        ZeroIov(iov);
        return want;
      }
      return -EIO;
    }
    total += n;
    pos += n;
    AdvanceIov(iov, n);
  }
  return total;
}

// An aligned heap buffer, freed with its scope (O_DIRECT needs aligned memory).
struct AlignedBuffer {
  explicit AlignedBuffer(size_t size, size_t align) {
    if (posix_memalign(&p, std::max<size_t>(align, 4096), size) != 0) p = nullptr;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { free(p); }
  uint8_t* data() const { return static_cast<uint8_t*>(p); }
  void* p = nullptr;
};

// Writing zeros, for filesystems without FALLOC_FL_ZERO_RANGE and devices without BLKZEROOUT.
static int64_t WriteZerosByHand(const Target& t, uint64_t off, uint64_t len) {
  const size_t chunk = 1 << 20;
  AlignedBuffer zeros(chunk, 4096);
  if (!zeros.p) return -ENOMEM;
  memset(zeros.p, 0, chunk);
  int64_t res = 0;
  while (len > 0) {
    size_t n = std::min<uint64_t>(chunk, len);
    ssize_t w = pwrite(t.fd, zeros.p, n, off);
    if (w < 0) {
      if (errno == EINTR) continue;
      res = -errno;
      break;
    }
    if (w == 0) {
      res = -EIO;
      break;
    }
    off += w;
    len -= w;
  }
  return res;
}

static int64_t Discard(const Target& t, Req* r) {
  if (t.is_block) {
    // BLKDISCARD takes whole logical blocks; discard is a hint, so partial blocks are kept.
    const uint64_t a = t.alignment, begin = (r->offset + a - 1) & ~(a - 1),
                   end = (r->offset + r->length) & ~(a - 1);
    if (end <= begin) return 0;
    uint64_t range[2] = {begin, end - begin};
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
  int mode =
      (r->flags & kWriteZeroesMayUnmap) ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : FALLOC_FL_ZERO_RANGE;
  if (fallocate(t.fd, mode, r->offset, r->length) == 0) return 0;
  if (errno != EOPNOTSUPP) return -errno;
  if (mode != FALLOC_FL_ZERO_RANGE && fallocate(t.fd, FALLOC_FL_ZERO_RANGE, r->offset, r->length) == 0)
    return 0;
  return WriteZerosByHand(t, r->offset, r->length);
}

// ---- Requests not aligned to the logical block size (Req::unaligned()) ----

// Reads [pos, pos+len) (aligned) into buf; what lies past the end of the file reads as zeros.
static int64_t ReadBlocks(const Target& t, uint8_t* buf, uint64_t pos, uint64_t len) {
  uint64_t done = 0;
  while (done < len) {
    ssize_t n = pread(t.fd, buf + done, len - done, pos + done);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EINVAL && done > 0) break;  // O_DIRECT after a short read at an unaligned EOF
      return -errno;
    }
    if (n == 0) break;
    done += n;
  }
  memset(buf + done, 0, len - done);
  return 0;
}

static int64_t WriteBlocks(const Target& t, const uint8_t* buf, uint64_t pos, uint64_t len) {
  while (len > 0) {
    ssize_t n = pwrite(t.fd, buf, len, pos);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) return -EIO;
    buf += n;
    pos += n;
    len -= n;
  }
  return 0;
}

// Read or write of [offset, offset+length) through the aligned blocks covering it: a read reads
// them and copies the middle out; a write reads the partial first and last blocks, merges the
// data in and writes the blocks back (the engine keeps overlapping writes out meanwhile). A file
// that the last block grew is cut back to where the data ends.
static int64_t UnalignedReadWrite(const Target& t, Req* r) {
  const uint64_t a = t.alignment, end = r->offset + r->length;
  const uint64_t begin = r->offset & ~(a - 1), stop = (end + a - 1) & ~(a - 1), span = stop - begin;
  AlignedBuffer buf(span, a);
  if (!buf.p) return -ENOMEM;
  uint8_t* data = buf.data() + (r->offset - begin);
  if (r->op == kRead) {
    int64_t err = ReadBlocks(t, buf.data(), begin, span);
    if (err) return err;
    ScatterIov(data, r->iov);
    return r->length;
  }
  struct stat st;
  if (!t.is_block && fstat(t.fd, &st) != 0) return -errno;
  const bool partial_head = r->offset != begin, partial_tail = end != stop;
  if (partial_head) {
    int64_t err = ReadBlocks(t, buf.data(), begin, a);
    if (err) return err;
  }
  if (partial_tail && !(partial_head && span == a)) {
    int64_t err = ReadBlocks(t, buf.data() + span - a, stop - a, a);
    if (err) return err;
  }
  GatherIov(r->iov, data);
  int64_t err = WriteBlocks(t, buf.data(), begin, span);
  if (err) return err;
  const uint64_t old_size = t.is_block ? 0 : uint64_t(st.st_size);
  if (!t.is_block && stop > old_size && stop > end && ftruncate(t.fd, std::max(old_size, end)) != 0)
    return -errno;
  return r->length;
}

// Zeroes [from, to) inside the one aligned block at `block` by read-modify-write.
static int64_t ZeroInBlock(const Target& t, uint64_t block, uint64_t from, uint64_t to) {
  AlignedBuffer buf(t.alignment, t.alignment);
  if (!buf.p) return -ENOMEM;
  int64_t err = ReadBlocks(t, buf.data(), block, t.alignment);
  if (err) return err;
  memset(buf.data() + (from - block), 0, to - from);
  return WriteBlocks(t, buf.data(), block, t.alignment);
}

static int64_t WriteZeroes(const Target& t, Req* r);

// Write-zeroes on a block device (BLKZEROOUT takes whole logical blocks): the partial first and
// last blocks by read-modify-write, the whole blocks between through the usual path.
static int64_t UnalignedWriteZeroes(const Target& t, Req* r) {
  const uint64_t a = t.alignment, end = r->offset + r->length;
  const uint64_t inner_begin = (r->offset + a - 1) & ~(a - 1), inner_end = end & ~(a - 1);
  if (inner_end <= inner_begin) {  // inside one block, or across one block boundary
    uint64_t block = r->offset & ~(a - 1);
    for (uint64_t from = r->offset; from < end; block += a, from = block) {
      int64_t err = ZeroInBlock(t, block, from, std::min(end, block + a));
      if (err) return err;
    }
    return 0;
  }
  if (r->offset != inner_begin) {
    int64_t err = ZeroInBlock(t, inner_begin - a, r->offset, inner_begin);
    if (err) return err;
  }
  if (end != inner_end) {
    int64_t err = ZeroInBlock(t, inner_end, inner_end, end);
    if (err) return err;
  }
  Req inner = *r;
  inner.offset = inner_begin;
  inner.length = inner_end - inner_begin;
  return WriteZeroes(t, &inner);
}

static int64_t RunUnaligned(const Target& t, Req* r) {
  if (r->op == kWriteZeroes) return UnalignedWriteZeroes(t, r);
  return UnalignedReadWrite(t, r);
}

void RunBlocking(const Target& t, Req* r, bool flush_noop) {
  // Allocating ahead, in one call for the whole chunk, so that the writes that follow into it
  // need no allocation and may go to Linux AIO (extent_map.h). Existing data is untouched.
  if (r->route == Route::kPoolAllocate && r->alloc_end > r->alloc_begin &&
      fallocate(t.fd, FALLOC_FL_KEEP_SIZE, off_t(r->alloc_begin), off_t(r->alloc_end - r->alloc_begin)) != 0)
    r->alloc_end = r->alloc_begin;
  if (r->unaligned()) {
    r->res = RunUnaligned(t, r);
    return;
  }
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
