#include "../batch.h"
#include <cerrno>
#include <cmath>
#include <string>
#include <unordered_map>
#include <vector>
#include "check.h"

using spindle::kDiscard;
using spindle::kFua;
using spindle::kRead;
using spindle::kWrite;
using spindle::Req;
namespace batch = spindle::batch;

namespace {

uint8_t memory[8192];
const std::unordered_map<uint32_t, batch::Span> buffers = {{7, {memory, sizeof memory}}};

const batch::Span* Find(uint32_t id) {
  auto it = buffers.find(id);
  return it == buffers.end() ? nullptr : &it->second;
}

// One request record (tag 1) with its segments (buffer id, offset, length).
std::vector<double> Record(double op, double offset, double length, double flags,
                           std::vector<std::vector<double>> segments = {}) {
  std::vector<double> w = {1, op, offset, length, flags, double(segments.size())};
  for (auto& s : segments) w.insert(w.end(), s.begin(), s.end());
  return w;
}

int64_t Decode(const std::vector<double>& w, Req* r) {
  CHECK_EQ(batch::CheckFraming(w.data(), w.size(), 1), std::string());
  size_t p = 0;
  int64_t err = batch::DecodeRequest(w.data(), p, r, Find);
  CHECK_EQ(p, w.size());  // moved past the record, whatever was wrong inside it
  return err;
}

bool Has(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST(Batch, FramingRefusesTheWholeBatch) {
  std::vector<double> ok = Record(kRead, 0, 0, 0, {{7, 0, 512}});
  CHECK_EQ(batch::CheckFraming(ok.data(), ok.size(), 1), std::string());
  CHECK_EQ(batch::CheckFraming(ok.data(), 0, 0), std::string());
  CHECK(Has(batch::CheckFraming(ok.data(), ok.size(), 2), "queue shorter than its request count"));
  CHECK(Has(batch::CheckFraming(ok.data(), ok.size() - 1, 1), "segments run past the queue"));
  for (double tag : {-1.0, 0.5, 4294967296.0, std::nan("")}) {
    std::vector<double> w = ok;
    w[0] = tag;
    CHECK(Has(batch::CheckFraming(w.data(), w.size(), 1), "request 0 has a tag"));
  }
  std::vector<double> w = ok;
  w[5] = 65537;
  CHECK(Has(batch::CheckFraming(w.data(), w.size(), 1), "request 0 has a segment count"));
}

TEST(Batch, ReadTakesItsLengthFromItsSegments) {
  Req r;
  CHECK_EQ(Decode(Record(kRead, 4096, 1, 0, {{7, 0, 512}, {7, 1024, 0}, {7, 4096, 1024}}), &r), 0);
  CHECK_EQ(r.op, kRead);
  CHECK_EQ(r.tag, 1u);
  CHECK_EQ(r.offset, 4096u);
  CHECK_EQ(r.length, 1536u);
  CHECK_EQ(r.user_iov.size(), 2u);  // the empty segment is dropped
  CHECK(r.user_iov.size() == 2 && r.user_iov[1].iov_base == memory + 4096 && r.user_iov[1].iov_len == 1024);
}

TEST(Batch, DiscardTakesItsLengthFromTheRecord) {
  Req r;
  CHECK_EQ(Decode(Record(kDiscard, 0, 1 << 20, 0), &r), 0);
  CHECK_EQ(r.length, uint64_t(1) << 20);
}

TEST(Batch, BadFieldsFailTheRequestWithEinval) {
  const double two63 = 9223372036854775808.0;
  for (auto w :
       {Record(kWrite, -512, 0, 0), Record(kWrite, 0.5, 0, 0), Record(kDiscard, two63 - 512, 1024, 0),
        Record(kWrite, 0, 0, 1 << 3), Record(kWrite, 0, 0, std::nan("")), Record(5, 0, 0, 0),
        Record(1.5, 0, 0, 0), Record(kWrite, 0, 0, 0, {{7, -1, 512}})}) {
    Req r;
    CHECK_EQ(Decode(w, &r), -EINVAL);
  }
  Req unknown_op;
  Decode(Record(9, 0, 0, 0), &unknown_op);
  CHECK_EQ(unknown_op.op, kRead);  // completed as a failed read
  Req fua;
  CHECK_EQ(Decode(Record(kWrite, 0, 0, kFua, {{7, 0, 512}}), &fua), 0);
  CHECK_EQ(fua.flags, kFua);
}

TEST(Batch, SegmentsOutsideTheirBufferFailWithEfault) {
  for (auto w : {Record(kRead, 0, 0, 0, {{8, 0, 512}}), Record(kRead, 0, 0, 0, {{7, 8192, 1}}),
                 Record(kRead, 0, 0, 0, {{7, 8193, 0}}), Record(kRead, 0, 0, 0, {{7, 4096, 4097}})}) {
    Req r;
    CHECK_EQ(Decode(w, &r), -EFAULT);
  }
  Req r;
  CHECK_EQ(Decode(Record(kRead, 0, 0, 0, {{7, 4096, 4096}}), &r), 0);  // exactly to the end
  Req first;                                                           // the first error wins
  CHECK_EQ(Decode(Record(kWrite, -1, 0, 0, {{8, 0, 512}}), &first), -EINVAL);
}
