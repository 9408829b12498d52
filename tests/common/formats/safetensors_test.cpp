#include "common/formats/safetensors.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "common/base/file_util.h"

namespace lema {
namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/lema_st_XXXXXX";
  char* d = mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d;
}

// Bytes of a safetensors file with header `json` (unpadded) and `data_bytes` bytes of data.
std::string make_file(const std::string& json, size_t data_bytes, uint64_t header_len_override = 0) {
  std::string out(8, '\0');
  uint64_t n = header_len_override ? header_len_override : json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  out += json;
  for (size_t i = 0; i < data_bytes; ++i) out.push_back(static_cast<char>(i * 7 + 1));
  return out;
}

Result<SafetensorsHeader> parse(const std::string& bytes) {
  return parse_safetensors_header(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), bytes.size(),
                                  "hostile.safetensors");
}

// Expects a corruption error whose message contains every fragment.
void expect_error(const std::string& bytes, std::vector<std::string> fragments) {
  auto r = parse(bytes);
  ASSERT_FALSE(r.ok()) << "accepted: " << bytes.substr(8);
  EXPECT_EQ(r.status().code(), Status::Code::kCorruption);
  fragments.push_back("hostile.safetensors");
  for (const auto& f : fragments) {
    EXPECT_NE(r.status().message().find(f), std::string::npos) << r.status().message() << " lacks " << f;
  }
}

const char* kGood =
    R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]},)"
    R"("a":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}})";

TEST(Safetensors, ParsesGoodHeaderSortedByOffset) {
  std::string f = make_file(kGood, 24);
  auto r = parse(f);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->tensors.size(), 2u);
  uint64_t hdr = 8 + std::strlen(kGood);
  EXPECT_EQ(r->data_start, hdr);
  EXPECT_EQ(r->tensors[0].name, "a");
  EXPECT_EQ(r->tensors[0].dtype, DType::kBF16);
  EXPECT_EQ(r->tensors[0].offset, hdr);
  EXPECT_EQ(r->tensors[1].name, "b");
  EXPECT_EQ(r->tensors[1].offset, hdr + 8);
  EXPECT_EQ(r->tensors[1].nbytes, 16u);
  EXPECT_EQ(r->tensors[1].shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(r->metadata.at("format"), "pt");
}

TEST(Safetensors, EveryValidationRule) {
  auto one = [](const std::string& entry, size_t data) {
    return make_file(std::string(R"({"t":)") + entry + "}", data);
  };
  // Header length.
  expect_error(std::string("\x01\x02\x03", 3), {"too short"});
  expect_error(make_file("{}", 0, 200ull << 20), {"absurd"});
  expect_error(make_file("{}", 0, 50), {"past the end"});
  expect_error(make_file("", 0), {"not a JSON object"});
  // JSON.
  expect_error(make_file("[1,2]", 0), {"not a JSON object"});
  expect_error(make_file("{\"t\":", 0), {"not valid JSON"});
  expect_error(make_file("{" + std::string(100, '['), 0), {"nests too deep"});
  // Entries.
  expect_error(one("5", 0), {"'t'", "not a JSON object"});
  expect_error(one(R"({"shape":[1],"data_offsets":[0,4]})", 4), {"'t'", "missing 'dtype'"});
  expect_error(one(R"({"dtype":7,"shape":[1],"data_offsets":[0,4]})", 4), {"'t'", "'dtype' is not a string"});
  expect_error(one(R"({"dtype":"F33","shape":[1],"data_offsets":[0,4]})", 4), {"'t'", "unknown dtype 'F33'"});
  expect_error(one(R"({"dtype":"F32","data_offsets":[0,4]})", 4), {"'t'", "missing 'shape'"});
  expect_error(one(R"({"dtype":"F32","shape":4,"data_offsets":[0,4]})", 4), {"'t'", "not an array"});
  expect_error(one(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})", 4), {"'t'", "non-negative"});
  expect_error(one(R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,4]})", 4), {"'t'", "non-negative"});
  expect_error(one(R"({"dtype":"F32","shape":["1"],"data_offsets":[0,4]})", 4), {"'t'", "non-negative"});
  expect_error(one(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]})", 4),
               {"'t'", "too large"});
  expect_error(one(R"({"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]})", 4),
               {"'t'", "non-negative"});
  expect_error(one(R"({"dtype":"F32","shape":[1]})", 4), {"'t'", "missing 'data_offsets'"});
  expect_error(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0]})", 4), {"'t'", "[begin, end]"});
  expect_error(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,-4]})", 4), {"'t'", "[begin, end]"});
  expect_error(one(R"({"dtype":"F32","shape":[1],"data_offsets":[4,0]})", 4), {"'t'", "end < begin"});
  expect_error(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,8]})", 4),
               {"'t'", "past the data section"});
  expect_error(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})", 4),
               {"'t'", "byte length 4 != shape"});
  // Overlap, hole, trailing bytes, no tensors but data.
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                         8),
               {"'b'", "overlap tensor 'a'"});
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                         R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                         12),
               {"'b'", "hole of 4 bytes"});
  expect_error(one(R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})", 8), {"'t'", "hole"});
  expect_error(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})", 9),
               {"5 bytes after the last tensor 't'"});
  expect_error(make_file("{}", 3), {"no tensors"});
  // Metadata.
  expect_error(make_file(R"({"__metadata__":[1]})", 0), {"__metadata__"});
  expect_error(make_file(R"({"__metadata__":{"k":1}})", 0), {"__metadata__", "'k'"});
  // Accepted edge cases: empty file of tensors, zero-size tensors, scalars.
  EXPECT_TRUE(parse(make_file("{}", 0)).ok());
  EXPECT_TRUE(parse(make_file(R"({"z":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},)"
                              R"("s":{"dtype":"I64","shape":[],"data_offsets":[0,8]}})",
                              8))
                  .ok());
  EXPECT_TRUE(parse(make_file(std::string(kGood) + "     ", 24)).ok());
}

TEST(Safetensors, TruncatedAtEveryLength) {
  std::string f = make_file(kGood, 24);
  ASSERT_TRUE(parse(f).ok());
  for (size_t len = 0; len < f.size(); ++len) {
    std::string cut = f.substr(0, len);
    auto r = parse(cut);
    EXPECT_FALSE(r.ok()) << len;
  }
}

TEST(Safetensors, RandomMutationsNeverCrash) {
  std::string f = make_file(kGood, 24);
  std::mt19937 rng(1234);
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string m = f;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      size_t pos = rng() % m.size();
      if (rng() % 2)
        m[pos] = static_cast<char>(m[pos] ^ (1 << (rng() % 8)));
      else
        m[pos] = static_cast<char>(rng());
    }
    if (rng() % 8 == 0) m.resize(rng() % m.size());
    auto r = parse(m);
    if (r.ok()) {
      ++accepted;
      // Whatever was accepted is self-consistent.
      uint64_t cursor = r->data_start;
      for (const auto& t : r->tensors) {
        ASSERT_EQ(t.offset, cursor);
        cursor += t.nbytes;
      }
      ASSERT_EQ(cursor, m.size());
    }
  }
  // Flips inside the data section keep the file valid; some must be accepted.
  EXPECT_GT(accepted, 0);
}

TEST(Safetensors, WriterRoundTripAndSpecLayout) {
  std::string dir = temp_dir();
  std::string path = path_join(dir, "m.safetensors");
  SafetensorsWriter w;
  ASSERT_TRUE(w.add_tensor("w1", DType::kF32, {3, 5}).ok());
  ASSERT_TRUE(w.add_tensor("empty", DType::kF16, {0}).ok());
  ASSERT_TRUE(w.add_tensor("w2", DType::kBF16, {7}).ok());
  EXPECT_FALSE(w.add_tensor("w1", DType::kF32, {1}).ok());
  w.set_metadata("format", "pt");
  w.set_metadata("note", "a \"quoted\" value");
  ASSERT_TRUE(w.open(path).ok());
  EXPECT_EQ(w.data_start() % 8, 0u);
  std::vector<float> a(15);
  for (int i = 0; i < 15; ++i) a[i] = i * 0.5f - 3;
  std::vector<uint16_t> b(7);
  for (int i = 0; i < 7; ++i) b[i] = static_cast<uint16_t>(0x3F80 + i);
  // Wrong order and wrong size are refused.
  EXPECT_FALSE(w.write_tensor("w2", b.data(), 14).ok());
  EXPECT_FALSE(w.write_tensor("w1", a.data(), 59).ok());
  EXPECT_FALSE(w.write_tensor("nope", a.data(), 60).ok());
  // In parts.
  ASSERT_TRUE(w.write_tensor_part("w1", a.data(), 20).ok());
  EXPECT_FALSE(w.write_tensor_part("w1", a.data(), 41).ok());
  ASSERT_TRUE(w.write_tensor_part("w1", reinterpret_cast<const char*>(a.data()) + 20, 40).ok());
  EXPECT_FALSE(w.commit().ok());  // incomplete: refused, writer still usable
  ASSERT_TRUE(w.write_tensor("w2", b.data(), 14).ok());
  EXPECT_FALSE(w.write_tensor("w1", a.data(), 60).ok());
  ASSERT_TRUE(w.commit().ok());

  auto raw = read_file(path);
  ASSERT_TRUE(raw.ok());
  // Spec layout: u64 LE header length, JSON padded with spaces, offsets
  // relative to the data section.
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>((*raw)[i]);
  EXPECT_EQ((8 + n) % 8, 0u);
  std::string hdr = raw->substr(8, n);
  EXPECT_EQ(hdr.front(), '{');
  EXPECT_EQ(hdr.find_last_not_of(' '), hdr.find_last_of('}'));
  EXPECT_NE(hdr.find(R"("w1":{"dtype":"F32","shape":[3,5],"data_offsets":[0,60]})"), std::string::npos)
      << hdr;
  EXPECT_NE(hdr.find(R"("w2":{"dtype":"BF16","shape":[7],"data_offsets":[60,74]})"), std::string::npos)
      << hdr;
  EXPECT_EQ(raw->size(), 8 + n + 74);
  EXPECT_EQ(std::memcmp(raw->data() + 8 + n, a.data(), 60), 0);

  auto r = SafetensorsReader::open(path);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const TensorInfo* t1 = (*r)->find("w1");
  ASSERT_NE(t1, nullptr);
  EXPECT_EQ(std::memcmp((*r)->data(*t1), a.data(), 60), 0);
  const TensorInfo* t2 = (*r)->find("w2");
  ASSERT_NE(t2, nullptr);
  EXPECT_EQ(std::memcmp((*r)->data(*t2), b.data(), 14), 0);
  EXPECT_EQ((*r)->metadata().at("note"), "a \"quoted\" value");
  EXPECT_EQ((*r)->find("missing"), nullptr);
  (*r)->release(t1->offset, t1->nbytes);
  EXPECT_EQ(std::memcmp((*r)->data(*t1), a.data(), 60), 0);  // still readable after release

  auto h = read_safetensors_header(path);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->tensors.size(), 3u);
  EXPECT_EQ(h->tensors[2].offset, t2->offset);
  EXPECT_TRUE(remove_all(dir).ok());
}

TEST(Safetensors, WriterWithoutCommitLeavesNothing) {
  std::string dir = temp_dir();
  std::string path = path_join(dir, "x.safetensors");
  {
    SafetensorsWriter w;
    ASSERT_TRUE(w.add_tensor("a", DType::kU8, {4}).ok());
    ASSERT_TRUE(w.open(path).ok());
    uint8_t d[4] = {1, 2, 3, 4};
    ASSERT_TRUE(w.write_tensor_part("a", d, 2).ok());
    EXPECT_FALSE(w.commit().ok());
  }
  EXPECT_FALSE(path_exists(path));
  int entries = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) (void)e, ++entries;
  EXPECT_EQ(entries, 0);
  EXPECT_TRUE(remove_all(dir).ok());
}

TEST(Safetensors, ReaderErrorsNameTheFile) {
  std::string dir = temp_dir();
  std::string path = path_join(dir, "trunc.safetensors");
  std::string f = make_file(kGood, 24);
  ASSERT_TRUE(write_file_atomic(path, f.substr(0, f.size() - 3)).ok());
  auto r = SafetensorsReader::open(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(path), std::string::npos);
  auto h = read_safetensors_header(path);
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find(path), std::string::npos);
  auto missing = SafetensorsReader::open(path_join(dir, "none.safetensors"));
  EXPECT_EQ(missing.status().code(), Status::Code::kNotFound);
  EXPECT_TRUE(remove_all(dir).ok());
}

}  // namespace
}  // namespace lema
