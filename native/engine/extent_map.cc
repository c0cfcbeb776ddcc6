#include "extent_map.h"
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <cerrno>
#include <vector>

namespace spindle {

static int LoadFiemap(int fd, uint64_t size, ExtentMap& map) {
  constexpr size_t kBatch = 256;
  std::vector<uint8_t> mem(sizeof(fiemap) + kBatch * sizeof(fiemap_extent));
  auto* fm = reinterpret_cast<fiemap*>(mem.data());
  uint64_t start = 0;
  while (start < size) {
    *fm = {};
    fm->fm_start = start;
    fm->fm_length = size - start;
    fm->fm_flags = FIEMAP_FLAG_SYNC;  // delayed allocations become real extents first
    fm->fm_extent_count = kBatch;
    if (ioctl(fd, FS_IOC_FIEMAP, fm) != 0) return -errno;
    if (fm->fm_mapped_extents == 0) break;
    bool last = false;
    for (uint32_t i = 0; i < fm->fm_mapped_extents; i++) {
      const fiemap_extent& e = fm->fm_extents[i];
      // Inline or not-yet-located data (delalloc after SYNC, encoded) may still allocate: a hole.
      if (!(e.fe_flags & (FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_DATA_INLINE)))
        map.Add(e.fe_logical, std::min<uint64_t>(e.fe_logical + e.fe_length, size));
      start = e.fe_logical + e.fe_length;
      last = last || (e.fe_flags & FIEMAP_EXTENT_LAST);
    }
    if (last) break;
  }
  return 0;
}

static int LoadSeek(int fd, uint64_t size, ExtentMap& map) {
  uint64_t pos = 0;
  while (pos < size) {
    off_t data = lseek(fd, off_t(pos), SEEK_DATA);
    if (data < 0) return errno == ENXIO ? 0 : -errno;  // ENXIO: no data after pos
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return -errno;
    map.Add(uint64_t(data), std::min<uint64_t>(uint64_t(hole), size));
    pos = uint64_t(hole);
  }
  return 0;
}

int LoadExtents(int fd, uint64_t size, ExtentMap& map) {
  map.Clear();
  if (LoadFiemap(fd, size, map) == 0) return 0;
  map.Clear();
  return LoadSeek(fd, size, map);
}

}  // namespace spindle
