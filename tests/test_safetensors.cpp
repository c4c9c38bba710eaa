#include "transformers/safetensors.h"

#include "transformers/errors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

namespace st = transformers::safetensors;
namespace fs = std::filesystem;

namespace {

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

// A file made of an 8-byte little-endian header length, the header text and `data_bytes` zero bytes.
std::string file_with_header(const std::string& header, size_t data_bytes = 0) {
  const uint64_t length = header.size();
  std::string bytes(reinterpret_cast<const char*>(&length), sizeof(length));
  return bytes + header + std::string(data_bytes, '\0');
}

std::string length_prefix(uint64_t length) { return std::string(reinterpret_cast<const char*>(&length), 8); }

bool same_bytes(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.contiguous(), y = b.contiguous();
  return x.nbytes() == y.nbytes() && (x.nbytes() == 0 || std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0);
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "safetensors_XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name) const { return (fs::path(dir_) / name).string(); }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir_)) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  std::string dir_;
};

}  // namespace

TEST(SafetensorsDtype, NamesSizesAndScalarTypes) {
  const std::vector<std::tuple<std::string, c10::ScalarType, size_t>> expected = {
      {"F64", at::kDouble, 8}, {"F32", at::kFloat, 4}, {"F16", at::kHalf, 2},  {"BF16", at::kBFloat16, 2},
      {"I64", at::kLong, 8},   {"I32", at::kInt, 4},   {"I16", at::kShort, 2}, {"I8", at::kChar, 1},
      {"U8", at::kByte, 1},    {"BOOL", at::kBool, 1}};
  for (const auto& [name, type, size] : expected) {
    EXPECT_EQ(st::dtype_from_string(name), type) << name;
    EXPECT_EQ(st::dtype_to_string(type), name) << name;
    EXPECT_EQ(st::dtype_size(name), size) << name;
  }
  EXPECT_THROW(st::dtype_from_string("F8_E4M3"), transformers::CheckpointError);
  EXPECT_THROW(st::dtype_size("U16"), transformers::CheckpointError);
  EXPECT_THROW(st::dtype_to_string(at::kComplexFloat), transformers::CheckpointError);
}

using SafetensorsRoundTrip = SafetensorsTest;

TEST_F(SafetensorsRoundTrip, EveryDtypeAndShape) {
  const std::vector<c10::ScalarType> types = {at::kDouble, at::kFloat, at::kHalf, at::kBFloat16, at::kLong,
                                              at::kInt,    at::kShort, at::kChar, at::kByte,     at::kBool};
  const std::vector<std::vector<int64_t>> shapes = {{2, 3}, {}, {0, 4}, {5}, {3, 0, 2}};
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const c10::ScalarType type : types) {
    for (size_t i = 0; i < shapes.size(); ++i) {
      int64_t numel = 1;
      for (int64_t d : shapes[i]) numel *= d;
      at::Tensor values = at::arange(numel, at::kDouble).sub(numel / 2.0).mul(1.5).reshape(shapes[i]);
      if (type == at::kBool) values = values.gt(0);
      if (type == at::kByte) values = values.abs();
      tensors.emplace_back(st::dtype_to_string(type) + "." + std::to_string(i), values.to(type));
    }
  }
  const std::string path = file("all.safetensors");
  st::save_file(tensors, path);

  const auto loaded = st::load_file(path);
  ASSERT_EQ(loaded.size(), tensors.size());
  std::map<std::string, at::Tensor> by_name(loaded.begin(), loaded.end());
  for (const auto& [name, expected] : tensors) {
    ASSERT_EQ(by_name.count(name), 1u) << name;
    const at::Tensor& actual = by_name[name];
    EXPECT_EQ(actual.scalar_type(), expected.scalar_type()) << name;
    EXPECT_EQ(actual.sizes(), expected.sizes()) << name;
    EXPECT_TRUE(same_bytes(actual, expected)) << name;
  }
  const st::SafeOpen file(path);
  EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
}

TEST_F(SafetensorsRoundTrip, NonContiguousTensorIsWrittenInLogicalOrder) {
  const at::Tensor t = at::arange(12, at::kFloat).reshape({3, 4}).t();
  const std::string path = file("t.safetensors");
  st::save_file({{"t", t}}, path);
  const at::Tensor loaded = st::SafeOpen(path).get_tensor("t");
  EXPECT_EQ(loaded.sizes(), t.sizes());
  EXPECT_TRUE(at::equal(loaded, t));
}

TEST_F(SafetensorsRoundTrip, TensorsAfterOddSizedOnesAreReadAligned) {
  // Sorted by name, "a" (3 int8 bytes) comes first, so "b"'s float32 data starts 3 bytes into the data section.
  const at::Tensor a = at::tensor(std::vector<int8_t>{1, -2, 3}), b = at::arange(5, at::kFloat).add(0.5);
  const std::string path = file("odd.safetensors");
  st::save_file({{"a", a}, {"b", b}}, path);
  const st::SafeOpen opened(path);
  const at::Tensor loaded = opened.get_tensor("b");
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(loaded.data_ptr()) % sizeof(float), 0u);
  EXPECT_TRUE(at::equal(loaded, b));
  EXPECT_TRUE(at::equal(opened.get_tensor("a"), a));
}

TEST_F(SafetensorsRoundTrip, MetadataAndKeys) {
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "hello \"world\""}, {"empty", ""}};
  const std::string path = file("m.safetensors");
  st::save_file({{"b", at::ones({2})}, {"a", at::zeros({3})}}, path, metadata);
  const st::SafeOpen file(path);
  EXPECT_EQ(file.metadata(), metadata);
  EXPECT_EQ(file.keys(), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(file.contains("a"));
  EXPECT_FALSE(file.contains("c"));
  EXPECT_EQ(file.info("a").dtype, "F32");
  EXPECT_EQ(file.info("a").shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(file.info("b").begin, 0u);  // data is laid out in the given order
  EXPECT_EQ(file.info("a").begin, 8u);
  EXPECT_EQ(file.tensors().front().name, "b");
}

TEST_F(SafetensorsRoundTrip, HeaderIsPaddedToEightBytesAndSortedByName) {
  const std::string path = file("h.safetensors");
  st::save_file({{"z", at::ones({1})}, {"a", at::ones({1})}}, path);
  const std::string bytes = read_bytes(path);
  uint64_t length = 0;
  std::memcpy(&length, bytes.data(), 8);
  EXPECT_EQ(length % 8, 0u);
  EXPECT_EQ(bytes.substr(8, length),
            R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
            R"("z":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})"
            "      ");
}

using SafetensorsZeroCopy = SafetensorsTest;

TEST_F(SafetensorsZeroCopy, TensorsAliasTheFileMapping) {
  const std::string path = file("z.safetensors");
  st::save_file({{"a", at::arange(4, at::kFloat)}, {"b", at::arange(6, at::kLong)}}, path);
  const st::SafeOpen file(path);
  const at::Tensor a1 = file.get_tensor("a");
  const at::Tensor a2 = file.get_tensor("a");
  const at::Tensor b = file.get_tensor("b");
  EXPECT_EQ(a1.data_ptr(), a2.data_ptr());
  EXPECT_EQ(static_cast<char*>(b.data_ptr()) - static_cast<char*>(a1.data_ptr()),
            int64_t(file.info("b").begin - file.info("a").begin));

  // The tensors' addresses must lie inside the mapping of this very file.
  const auto address = reinterpret_cast<uintptr_t>(a1.data_ptr());
  std::ifstream maps("/proc/self/maps");
  bool inside = false;
  for (std::string line; std::getline(maps, line);) {
    if (line.size() < path.size() || line.compare(line.size() - path.size(), path.size(), path) != 0) continue;
    uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream(line) >> std::hex >> lo >> dash >> hi;
    inside = inside || (lo <= address && address < hi);
  }
  EXPECT_TRUE(inside) << "data_ptr " << a1.data_ptr() << " is not inside a mapping of " << path;
}

TEST_F(SafetensorsZeroCopy, InPlaceChangesNeverReachTheFile) {
  const std::string path = file("cow.safetensors");
  st::save_file({{"w", at::arange(8, at::kFloat)}}, path);
  const std::string before = read_bytes(path);
  {
    const st::SafeOpen file(path);
    at::Tensor w = file.get_tensor("w");
    w.add_(100);
    EXPECT_EQ(w[0].item<float>(), 100.f);
  }
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_TRUE(at::equal(st::SafeOpen(path).get_tensor("w"), at::arange(8, at::kFloat)));
}

TEST_F(SafetensorsZeroCopy, TensorsOutliveTheSafeOpen) {
  const std::string path = file("alive.safetensors");
  st::save_file({{"w", at::arange(1000, at::kFloat)}}, path);
  at::Tensor w;
  {
    const st::SafeOpen file(path);
    w = file.get_tensor("w");
  }
  fs::remove(path);
  EXPECT_EQ(w.sum().item<float>(), 499500.f);
}

TEST_F(SafetensorsZeroCopy, ZeroSizeTensorsAreEmpty) {
  const std::string path = file("empty.safetensors");
  st::save_file({{"e", at::zeros({0, 3}, at::kBFloat16)}}, path);
  const at::Tensor e = st::SafeOpen(path).get_tensor("e");
  EXPECT_EQ(e.sizes(), (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(e.scalar_type(), at::kBFloat16);
}

using SafetensorsSave = SafetensorsTest;

TEST_F(SafetensorsSave, LeavesNoTemporaryFile) {
  st::save_file({{"a", at::ones({2})}}, file("out.safetensors"));
  st::save_file({{"a", at::zeros({3})}}, file("out.safetensors"));  // overwrite
  EXPECT_EQ(listing(), (std::vector<std::string>{"out.safetensors"}));
  EXPECT_EQ(st::SafeOpen(file("out.safetensors")).info("a").shape, (std::vector<int64_t>{3}));
}

TEST_F(SafetensorsSave, MissingDirectoryFailsWithoutCreatingTheTarget) {
  const std::string path = file("missing/out.safetensors");
  try {
    st::save_file({{"a", at::ones({2})}}, path);
    FAIL() << "expected CheckpointError";
  } catch (const transformers::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(listing().empty());
}

TEST_F(SafetensorsSave, UnsupportedDtypeFailsWithoutCreatingTheTarget) {
  const std::string path = file("out.safetensors");
  try {
    st::save_file({{"ok", at::ones({2})}, {"complex", at::ones({2}, at::kComplexFloat)}}, path);
    FAIL() << "expected CheckpointError";
  } catch (const transformers::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("complex"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(listing().empty());
}

TEST_F(SafetensorsSave, DuplicateNamesAreRejected) {
  EXPECT_THROW(st::save_file({{"a", at::ones({1})}, {"a", at::ones({1})}}, file("d.safetensors")),
               transformers::CheckpointError);
  EXPECT_TRUE(listing().empty());
}

TEST(SafetensorsFixture, ReadsAFileWrittenByPython) {
  const st::SafeOpen file(TFCPP_SOURCE_DIR "/../shared/fixtures/hf/llama-for-causal-lm/model/model.safetensors");
  EXPECT_GT(file.keys().size(), 0u);
  EXPECT_EQ(file.metadata().at("format"), "pt");
  const at::Tensor embed = file.get_tensor("model.embed_tokens.weight");
  EXPECT_EQ(embed.sizes(), (std::vector<int64_t>{99, 32}));
  EXPECT_EQ(embed.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::isfinite(embed).all().item<bool>());
}

// Each malformed file must raise a CheckpointError naming the file, the tensor (if any) and the problem.
struct BadFile {
  std::string name;
  std::string bytes;
  std::string tensor;   // expected in the message unless empty
  std::string problem;  // expected in the message
};

void PrintTo(const BadFile& bad, std::ostream* os) { *os << bad.name; }

class SafetensorsBadInput : public SafetensorsTest, public ::testing::WithParamInterface<BadFile> {};

TEST_P(SafetensorsBadInput, RaisesCheckpointError) {
  const BadFile& bad = GetParam();
  const std::string path = file(bad.name + ".safetensors");
  write_bytes(path, bad.bytes);
  try {
    st::SafeOpen file(path);
    FAIL() << "expected CheckpointError";
  } catch (const transformers::CheckpointError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(path), std::string::npos) << message;
    if (!bad.tensor.empty()) {
      EXPECT_NE(message.find("'" + bad.tensor + "'"), std::string::npos) << message;
    }
    EXPECT_NE(message.find(bad.problem), std::string::npos) << message;
  }
}

std::string entry(const std::string& dtype, const std::string& shape, const std::string& offsets) {
  return R"({"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" + offsets + "}";
}

// A file with one tensor "w" and `data_bytes` bytes of data.
std::string tensor_w(const std::string& dtype, const std::string& shape, const std::string& offsets,
                     size_t data_bytes) {
  return file_with_header(R"({"w":)" + entry(dtype, shape, offsets) + "}", data_bytes);
}

// A file with two F32 tensors "a" and "b" at the given offsets.
std::string tensors_a_b(const std::string& a_shape, const std::string& a_offsets, const std::string& b_shape,
                        const std::string& b_offsets, size_t data_bytes) {
  return file_with_header(
      R"({"a":)" + entry("F32", a_shape, a_offsets) + R"(,"b":)" + entry("F32", b_shape, b_offsets) + "}", data_bytes);
}

INSTANTIATE_TEST_SUITE_P(
    , SafetensorsBadInput,
    ::testing::Values(
        BadFile{"ShorterThan8Bytes", "abc", "", "shorter than the 8-byte"},
        BadFile{"HeaderLengthZero", length_prefix(0) + "{}", "", "header length is 0"},
        BadFile{"HeaderLengthTooLarge", length_prefix(st::kMaxHeaderBytes + 1) + "{}", "", "exceeds the limit"},
        BadFile{"HeaderPastEndOfFile", length_prefix(100) + "{}", "", "past the end of the file"},
        BadFile{"HeaderNotJson", file_with_header("{\"a\":"), "", "not valid JSON"},
        BadFile{"HeaderNotObject", file_with_header("[1, 2]"), "", "must be a JSON object, got array"},
        BadFile{"MetadataNotObject", file_with_header(R"({"__metadata__":"pt"})"), "", "'__metadata__' must be"},
        BadFile{"MetadataValueNotString", file_with_header(R"({"__metadata__":{"format":1}})"), "format",
                "must be a string, got number"},
        BadFile{"EntryNotObject", file_with_header(R"({"w":[1]})"), "w", "must be a JSON object, got array"},
        BadFile{"MissingDtype", file_with_header(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4), "w",
                "missing 'dtype'"},
        BadFile{"MissingShape", file_with_header(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", 4), "w",
                "missing 'shape'"},
        BadFile{"MissingDataOffsets", file_with_header(R"({"w":{"dtype":"F32","shape":[1]}})", 4), "w",
                "missing 'data_offsets'"},
        BadFile{"DtypeNotString", file_with_header(R"({"w":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", 4), "w",
                "'dtype' must be a string"},
        BadFile{"ShapeNotArray", tensor_w("F32", "1", "[0,4]", 4), "w", "'shape' must be an array of integers"},
        BadFile{"ShapeNotIntegers", tensor_w("F32", "[1.5]", "[0,4]", 4), "w", "'shape' must be an array of integers"},
        BadFile{"OffsetsMalformed", tensor_w("F32", "[1]", "[0]", 4), "w", "'data_offsets' must be [begin, end]"},
        BadFile{"OffsetsNegative", tensor_w("F32", "[1]", "[-4,0]", 4), "w", "'data_offsets' must be [begin, end]"},
        BadFile{"UnknownDtype", tensor_w("F33", "[1]", "[0,4]", 4), "w", "unsupported dtype 'F33'"},
        BadFile{"UnsupportedDtype", tensor_w("F8_E4M3", "[4]", "[0,4]", 4), "w", "unsupported dtype 'F8_E4M3'"},
        BadFile{"UnsupportedU16", tensor_w("U16", "[2]", "[0,4]", 4), "w", "unsupported dtype 'U16'"},
        BadFile{"NegativeDim", tensor_w("F32", "[-1]", "[0,4]", 4), "w", "negative dimension"},
        BadFile{"BeginAfterEnd", tensor_w("F32", "[1]", "[4,0]", 4), "w", "begin > end"},
        BadFile{"EndPastDataSection", tensor_w("F32", "[2]", "[0,8]", 4), "w", "past the data section (4 bytes)"},
        BadFile{"ByteCountMismatch", tensor_w("F32", "[2]", "[0,4]", 4), "w",
                "needs 8 bytes, but data_offsets [0, 4] span 4"},
        BadFile{"ShapeOverflow", tensor_w("F32", "[4294967296,4294967296]", "[0,4]", 4), "w", "is too large"},
        BadFile{"DimAboveInt64", tensor_w("U8", "[9223372036854775808]", "[0,4]", 4), "w", "is too large"},
        BadFile{"Overlap", tensors_a_b("[2]", "[0,8]", "[1]", "[4,8]", 8), "b", "overlap tensor 'a'"},
        BadFile{"Hole", tensors_a_b("[1]", "[0,4]", "[1]", "[8,12]", 12), "b", "leave a hole: bytes [4, 8)"},
        BadFile{"DataNotStartingAtZero", tensor_w("F32", "[1]", "[4,8]", 8), "w", "bytes [0, 4)"},
        BadFile{"TrailingBytes", tensor_w("F32", "[1]", "[0,4]", 12), "",
                "tensors cover 4 bytes of the data section, but it has 12"}),
    [](const ::testing::TestParamInfo<BadFile>& info) { return info.param.name; });

using SafetensorsOpen = SafetensorsTest;

TEST_F(SafetensorsOpen, MissingFile) {
  const std::string path = file("nope.safetensors");
  try {
    st::SafeOpen open(path);
    FAIL() << "expected CheckpointError";
  } catch (const transformers::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST_F(SafetensorsOpen, UnknownTensorName) {
  const std::string path = file("k.safetensors");
  st::save_file({{"a", at::ones({1})}}, path);
  const st::SafeOpen open(path);
  try {
    open.get_tensor("missing.weight");
    FAIL() << "expected CheckpointError";
  } catch (const transformers::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'missing.weight'"), std::string::npos) << e.what();
  }
}

TEST_F(SafetensorsOpen, EmptyHeaderWithoutTensorsIsValid) {
  const std::string path = file("none.safetensors");
  write_bytes(path, file_with_header("{}"));
  EXPECT_TRUE(st::SafeOpen(path).keys().empty());
}
