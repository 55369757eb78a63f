// SPDX-License-Identifier: MIT
// qkv::load_npy and qkv::save_npy: files NumPy wrote (tests/data/npy, made by
// make_npy_cases.py) read back as the formula they hold, save_npy's bytes against
// np.save's, round trips of every rank, empty and strided tensors, headers as other
// writers format them, and every malformed input with its message; float, double and half
// (float16, every bit pattern of which NumPy wrote into f2_all_bits.npy), and bfloat16,
// which NumPy lacks, refused.
#include <qkv/npy.hpp>
#include <qkv/random.hpp>
#include <qkv/tensor.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <sstream>
#include <stdexcept>
#include <streambuf>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "test_util.hpp"

namespace {

using qkv::Index;
using qkv::Shape;
using qkv::Tensor;
using qkv::TensorView;
using qkv::test::ThrowsWith;

std::string data_path(const std::string& name) { return std::string(QKV_TEST_DATA_DIR) + "/npy/" + name; }

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << path;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

template <class T>
std::string code() { return std::is_same_v<T, float> ? "f4" : std::is_same_v<T, double> ? "f8" : "f2"; }
template <class T>
using Other = std::conditional_t<std::is_same_v<T, float>, double, float>;
template <class T>
std::string tensor_type() { return std::string("Tensor<") + qkv::detail::type_name<T>() + "> ('<" + code<T>() + "')"; }

// What make_npy_cases.py stores at C-order position i: (i + 1) / 3 - 2 computed in double,
// then rounded to the file's dtype, as NumPy's astype does. (A half is rounded through
// float here; the script checks that this gives NumPy's direct rounding on these values.)
template <class T>
T value(Index i) { return static_cast<T>((static_cast<double>(i) + 1.0) / 3.0 - 2.0); }

template <class T>
Tensor<T> formula(const Shape& shape) {
  Tensor<T> t(shape);
  for (Index i = 0; i < t.numel(); ++i) t.data()[i] = value<T>(i);
  return t;
}

// Equal shapes and identical bits (so NaN payloads, -0.0 and infinities count).
template <class T>
::testing::AssertionResult SameBits(const Tensor<T>& actual, const Tensor<T>& expected) {
  if (actual.shape() != expected.shape())
    return ::testing::AssertionFailure() << "shape " << actual.shape().str() << " != " << expected.shape().str();
  if (actual.numel() && std::memcmp(actual.data(), expected.data(), std::size_t(actual.numel()) * sizeof(T)) != 0)
    return ::testing::AssertionFailure() << "elements differ for shape " << actual.shape().str();
  return ::testing::AssertionSuccess();
}

// A .npy file assembled by hand: magic, version, little-endian header length, header, data.
std::string npy_bytes(const std::string& header, const std::string& data = "", int major = 1, int minor = 0) {
  std::string bytes = "\x93NUMPY";
  bytes += static_cast<char>(major);
  bytes += static_cast<char>(minor);
  const std::size_t length_size = major == 1 ? 2 : 4;
  for (std::size_t i = 0; i < length_size; ++i) bytes += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return bytes + header + data;
}

template <class T>
std::string raw(const Tensor<T>& t) {
  return std::string(reinterpret_cast<const char*>(t.data()), std::size_t(t.numel()) * sizeof(T));
}

template <class T>
Tensor<T> load_bytes(const std::string& bytes) {
  std::istringstream in(bytes);
  return qkv::load_npy<T>(in, "memory.npy");
}

template <class T>
std::string save_bytes(TensorView<const T> t) {
  std::ostringstream out;
  qkv::save_npy(out, t);
  return out.str();
}

// A stream that cannot seek, as a pipe: load_npy then learns of a short file only by reading.
class PipeBuffer : public std::streambuf {
 public:
  explicit PipeBuffer(std::string bytes) : bytes_(std::move(bytes)) {
    setg(bytes_.data(), bytes_.data(), bytes_.data() + bytes_.size());
  }

 private:
  std::string bytes_;
};

// A stream whose every write fails, as a full disk.
class FullBuffer : public std::streambuf {
 protected:
  int_type overflow(int_type) override { return traits_type::eof(); }
  std::streamsize xsputn(const char*, std::streamsize) override { return 0; }
};

// A fresh directory under the system's temporary directory, removed with its contents.
class TempDir {
 public:
  TempDir() {
    std::random_device seed;
    path_ = std::filesystem::temp_directory_path() /
            ("qkv_test_npy_" + std::to_string(seed()) + "_" + std::to_string(seed()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

template <class F>
::testing::AssertionResult RuntimeError(F&& f, std::initializer_list<std::string> parts) {
  return ThrowsWith<std::runtime_error>(std::forward<F>(f), parts);
}

using NpyTypes = ::testing::Types<float, double, qkv::half>;
struct NpyTypeNames {
  template <class T>
  static std::string GetName(int) { return qkv::detail::type_name<T>(); }
};

template <class T>
class Npy : public ::testing::Test {};
TYPED_TEST_SUITE(Npy, NpyTypes, NpyTypeNames);

// The shapes make_npy_cases.py saves with np.save, by file name.
const std::vector<std::pair<std::string, Shape>> numpy_saved = {
    {"scalar", Shape{}},      {"5", Shape{5}},     {"3x4", Shape{3, 4}},
    {"2x3x4", Shape{2, 3, 4}}, {"0x3", Shape{0, 3}}, {"rank8", Shape{1, 2, 1, 2, 1, 2, 1, 2}},
};

TYPED_TEST(Npy, ReadsWhatNumpySaved) {
  using T = TypeParam;
  for (const auto& [name, shape] : numpy_saved) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(SameBits(qkv::load_npy<T>(data_path(code<T>() + "_" + name + ".npy")), formula<T>(shape)));
  }
  const Tensor<T> transposed = qkv::load_npy<T>(data_path(code<T>() + "_3x4_transposed.npy"));
  ASSERT_EQ(transposed.shape(), (Shape{4, 3}));
  for (Index i = 0; i < 3; ++i)
    for (Index j = 0; j < 4; ++j) EXPECT_EQ(transposed(j, i), value<T>(i * 4 + j));
}

TYPED_TEST(Npy, ReadsFormatVersions2And3) {
  using T = TypeParam;
  for (const char* version : {"v2", "v3"}) {
    SCOPED_TRACE(version);
    const std::string path = data_path(code<T>() + "_2x3x4_" + version + ".npy");
    ASSERT_EQ(file_bytes(path)[6], version[1] - '0');  // the file really has that version
    EXPECT_TRUE(SameBits(qkv::load_npy<T>(path), formula<T>({2, 3, 4})));
  }
}

TYPED_TEST(Npy, WritesNumpysBytes) {
  using T = TypeParam;
  for (const auto& [name, shape] : numpy_saved) {
    SCOPED_TRACE(name);
    EXPECT_EQ(save_bytes<T>(formula<T>(shape)), file_bytes(data_path(code<T>() + "_" + name + ".npy")));
  }
  // np.save(np.ascontiguousarray(a.T)): a transposed view is written in C order.
  const Tensor<T> a = formula<T>({3, 4});
  EXPECT_EQ(save_bytes<T>(a.view().transpose(0, 1)), file_bytes(data_path(code<T>() + "_3x4_transposed.npy")));

  TempDir dir;
  qkv::save_npy(dir.file("a.npy"), a);
  EXPECT_EQ(file_bytes(dir.file("a.npy")), file_bytes(data_path(code<T>() + "_3x4.npy")));
}

TYPED_TEST(Npy, WritesAHeaderAlignedTo64Bytes) {
  using T = TypeParam;
  for (const Shape& shape : {Shape{}, Shape{1}, Shape{7, 3}, Shape{123456789, 0}, Shape{1, 1, 1, 1, 1, 1, 1, 1}}) {
    SCOPED_TRACE(shape.str());
    const std::string bytes = save_bytes<T>(formula<T>(shape));
    const std::size_t header_len = std::size_t{static_cast<unsigned char>(bytes[8])} | std::size_t{static_cast<unsigned char>(bytes[9])} << 8u;
    const std::size_t data_offset = 10 + header_len;
    EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
    EXPECT_EQ(data_offset % 64, 0u);
    EXPECT_EQ(bytes[data_offset - 1], '\n');
    EXPECT_EQ(bytes.size(), data_offset + static_cast<std::size_t>(shape.numel()) * sizeof(T));
  }
}

TYPED_TEST(Npy, RoundTripsRanks0To4WithEveryBitPattern) {
  using T = TypeParam;
  using limits = std::numeric_limits<T>;
  qkv::NumpyRandom rng(7);
  for (const Shape& shape : {Shape{}, Shape{7}, Shape{3, 5}, Shape{2, 3, 4}, Shape{2, 1, 3, 2}}) {
    SCOPED_TRACE(shape.str());
    Tensor<T> tensor;
    if constexpr (std::is_same_v<T, qkv::half>) tensor = qkv::to<T>(rng.randn<float>(shape));
    else tensor = rng.randn<T>(shape);
    const T specials[] = {limits::infinity(), -limits::infinity(), limits::quiet_NaN(), T(-0.0),
                          limits::denorm_min(), limits::max(), limits::lowest(), limits::min()};
    for (Index i = 0; i < tensor.numel() && i < 8; ++i) tensor.data()[(i * 5) % tensor.numel()] = specials[i];
    EXPECT_TRUE(SameBits(load_bytes<T>(save_bytes<T>(tensor)), tensor));
  }
}

TYPED_TEST(Npy, RoundTripsRank8AndEmptyTensors) {
  using T = TypeParam;
  for (const Shape& shape : {Shape{1, 2, 1, 2, 1, 2, 1, 3}, Shape{0}, Shape{3, 0}, Shape{0, 2, 5}, Shape{2, 0, 0, 1}}) {
    SCOPED_TRACE(shape.str());
    const Tensor<T> tensor = formula<T>(shape);
    EXPECT_TRUE(SameBits(load_bytes<T>(save_bytes<T>(tensor)), tensor));
  }
  const Tensor<T> default_constructed;
  EXPECT_TRUE(SameBits(load_bytes<T>(save_bytes<T>(default_constructed)), Tensor<T>(Shape{0})));
}

TYPED_TEST(Npy, WritesStridedViewsInCOrder) {
  using T = TypeParam;
  Tensor<T> base = formula<T>({2, 3, 4});
  const Tensor<T> column = formula<T>({1, 3, 1});
  const std::pair<const char*, TensorView<const T>> views[] = {
      {"transpose(0, 2)", base.view().transpose(0, 2)},
      {"permute(1, 2, 0)", base.view().permute({1, 2, 0})},
      {"narrow(2, 1, 2)", base.view().narrow(2, 1, 2)},
      {"slice(1, 2)", base.view().slice(1, 2)},
      {"expand(2, 3, 4)", column.view().expand({2, 3, 4})},
  };
  for (const auto& [name, view] : views) {
    SCOPED_TRACE(name);
    const Tensor<T> loaded = load_bytes<T>(save_bytes<T>(view));
    ASSERT_EQ(loaded.shape(), view.shape());
    for (Index i = 0; i < view.size(0); ++i)
      for (Index j = 0; j < view.size(1); ++j)
        for (Index k = 0; k < view.size(2); ++k) EXPECT_EQ(loaded(i, j, k), view(i, j, k));
  }
  // More elements than save_npy's gather buffer holds.
  const Tensor<T> wide = formula<T>({70, 130});
  const TensorView<const T> wide_t = wide.view().transpose(0, 1);
  const Tensor<T> loaded = load_bytes<T>(save_bytes<T>(wide_t));
  ASSERT_EQ(loaded.shape(), (Shape{130, 70}));
  for (Index i = 0; i < 130; ++i)
    for (Index j = 0; j < 70; ++j) ASSERT_EQ(loaded(i, j), value<T>(j * 130 + i));
}

TYPED_TEST(Npy, SavesAndLoadsFilesThroughEveryOverload) {
  using T = TypeParam;
  TempDir dir;
  Tensor<T> tensor = formula<T>({2, 3});
  const std::string path = dir.file("t.npy");
  const Tensor<T> expected_t = formula<T>({2, 3});

  qkv::save_npy(dir.file("big.npy"), formula<T>({50, 50}));
  qkv::save_npy(dir.file("big.npy"), tensor);  // replaces, not overwrites in place
  EXPECT_TRUE(SameBits(qkv::load_npy<T>(dir.file("big.npy")), expected_t));

  qkv::save_npy(path, tensor.view());  // TensorView<T>
  EXPECT_TRUE(SameBits(qkv::load_npy<T>(path), expected_t));
  qkv::save_npy(path, TensorView<const T>(tensor.view().transpose(0, 1)));
  EXPECT_TRUE(SameBits(qkv::load_npy<T>(path), Tensor<T>(tensor.view().transpose(0, 1))));

  {
    std::ofstream out(path, std::ios::binary);
    qkv::save_npy(out, tensor);
  }
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(SameBits(qkv::load_npy<T>(in, path), expected_t));
}

TYPED_TEST(Npy, LoadsArraysSavedOneAfterAnother) {
  using T = TypeParam;
  std::stringstream stream;
  const Tensor<T> first = formula<T>({2, 2}), second = formula<T>({5});
  qkv::save_npy(stream, first);
  qkv::save_npy(stream, second.view());
  EXPECT_TRUE(SameBits(qkv::load_npy<T>(stream), first));
  EXPECT_TRUE(SameBits(qkv::load_npy<T>(stream), second));
  EXPECT_TRUE(RuntimeError([&] { qkv::load_npy<T>(stream); },
                           {"qkv::load_npy: <stream>: not a .npy file (bad magic)"}));
}

TYPED_TEST(Npy, ReadsHeadersAsOtherWritersFormatThem) {
  using T = TypeParam;
  const std::string c = code<T>();
  const std::string data = raw(formula<T>({2, 3}));
  const std::vector<std::string> headers = {
      "{'shape': (2, 3), 'fortran_order': False, 'descr': '<" + c + "'}",  // another key order, no trailing comma
      "{\"descr\": \"<" + c + "\", \"fortran_order\": False, \"shape\": (2, 3)}",
      "{'descr':'<" + c + "','fortran_order':False,'shape':(2,3),}",
      " {\t'descr' : '=" + c + "' ,\n 'fortran_order' : False , 'shape' : ( 2 , 3 , ) , }  \n",
      "{'descr': '|" + c + "', 'fortran_order': False, 'shape': (2L, 3L), }\n",
      "{'descr': '" + c + "', 'fortran_order': False, 'shape': (+2, 3), }         \n",  // 16-byte aligned, as NumPy < 1.14
  };
  for (const std::string& header : headers) {
    SCOPED_TRACE(header);
    EXPECT_TRUE(SameBits(load_bytes<T>(npy_bytes(header, data)), formula<T>({2, 3})));
    EXPECT_TRUE(SameBits(load_bytes<T>(npy_bytes(header, data, 2)), formula<T>({2, 3})));
  }
  const std::string scalar = "{'descr': '<" + c + "', 'fortran_order': False, 'shape': (), }";
  EXPECT_TRUE(SameBits(load_bytes<T>(npy_bytes(scalar, raw(formula<T>({})))), formula<T>({})));
  const std::string vector = "{'descr': '<" + c + "', 'fortran_order': False, 'shape': (6,)}";
  EXPECT_TRUE(SameBits(load_bytes<T>(npy_bytes(vector, data + "trailing bytes are left in the stream")),
                       formula<T>({6})));
}

TYPED_TEST(Npy, RejectsOtherDtypes) {
  using T = TypeParam;
  const std::string other = code<Other<T>>() + "_3x4.npy";
  const std::string type = tensor_type<T>();
  EXPECT_TRUE(RuntimeError([&] { qkv::load_npy<T>(data_path(other)); },
                           {"qkv::load_npy: " + data_path(other) + ": dtype '<" + code<Other<T>>() +
                            "' does not match " + type}));
  for (const auto& [file, descr] : {std::pair{"bool_2x3.npy", "'|b1'"}, {"i4_6.npy", "'<i4'"}, {"i8_6.npy", "'<i8'"}})
    EXPECT_TRUE(RuntimeError([&, file = file] { qkv::load_npy<T>(data_path(file)); },
                             {"qkv::load_npy: " + data_path(file) + ": dtype " + descr + " does not match " + type}));
  const std::string structured = "{'descr': [('a', '<" + code<T>() + "')], 'fortran_order': False, 'shape': (1,), }";
  EXPECT_TRUE(RuntimeError([&] { load_bytes<T>(npy_bytes(structured, std::string(sizeof(T), '\0'))); },
                           {"qkv::load_npy: memory.npy: dtype [('a', '<" + code<T>() + "')] does not match " + type}));
}

TYPED_TEST(Npy, RejectsFortranOrderAndBigEndianFiles) {
  using T = TypeParam;
  const std::string fortran = data_path(code<T>() + "_3x4_fortran.npy");
  EXPECT_TRUE(RuntimeError([&] { qkv::load_npy<T>(fortran); },
                           {"qkv::load_npy: " + fortran +
                            ": fortran_order is True; qkv reads C order only (np.ascontiguousarray)"}));
  const std::string big = data_path(code<T>() + "_3x4_big_endian.npy");
  EXPECT_TRUE(RuntimeError([&] { qkv::load_npy<T>(big); },
                           {"qkv::load_npy: " + big + ": big-endian dtype '>" + code<T>() +
                            "'; qkv reads little-endian only (a.astype('<" + code<T>() + "'))"}));
}

TYPED_TEST(Npy, RejectsTruncatedData) {
  using T = TypeParam;
  const std::string whole = file_bytes(data_path(code<T>() + "_3x4.npy"));
  const std::string cut = whole.substr(0, whole.size() - 12 * sizeof(T) + 20);
  const std::string message = "qkv::load_npy: memory.npy: truncated: header says [3,4] = 12 elements (" +
                              std::to_string(12 * sizeof(T)) + " bytes) but only 20 bytes follow";
  EXPECT_TRUE(RuntimeError([&] { load_bytes<T>(cut); }, {message}));
  PipeBuffer pipe(cut);  // learns it by reading rather than seeking
  std::istream in(&pipe);
  EXPECT_TRUE(RuntimeError([&] { qkv::load_npy<T>(in, "memory.npy"); }, {message}));

  TempDir dir;
  std::ofstream(dir.file("cut.npy"), std::ios::binary) << cut;
  EXPECT_TRUE(RuntimeError([&] { qkv::load_npy<T>(dir.file("cut.npy")); },
                           {"qkv::load_npy: " + dir.file("cut.npy") + ": truncated: header says [3,4]"}));
}

TYPED_TEST(Npy, RejectsTruncatedHeaders) {
  using T = TypeParam;
  const std::string whole = file_bytes(data_path(code<T>() + "_3x4.npy"));
  const auto fails = [&](std::size_t keep, const std::string& message) {
    return RuntimeError([&] { load_bytes<T>(whole.substr(0, keep)); }, {"qkv::load_npy: memory.npy: " + message});
  };
  EXPECT_TRUE(fails(0, "not a .npy file (bad magic)"));
  EXPECT_TRUE(fails(4, "not a .npy file (bad magic)"));
  EXPECT_TRUE(fails(7, "truncated header: the stream ends after the magic string"));
  EXPECT_TRUE(fails(9, "truncated header: the stream ends inside the header length"));
  EXPECT_TRUE(fails(50, "truncated header: the header length says 118 bytes but only 40 follow"));
  const std::string v2 = file_bytes(data_path(code<T>() + "_2x3x4_v2.npy"));
  EXPECT_TRUE(RuntimeError([&] { load_bytes<T>(v2.substr(0, 11)); },
                           {"qkv::load_npy: memory.npy: truncated header: the stream ends inside the header length"}));
  // A length field claiming 4 GiB in a short stream.
  EXPECT_TRUE(RuntimeError([&] { load_bytes<T>(std::string("\x93NUMPY\x02\x00\xff\xff\xff\xff{}", 14)); },
                           {"truncated header: the header length says 4294967295 bytes but only 2 follow"}));
}

TYPED_TEST(Npy, RejectsBadMagicAndVersions) {
  using T = TypeParam;
  const std::string header = "{'descr': '<" + code<T>() + "', 'fortran_order': False, 'shape': (), }\n";
  const std::string data(sizeof(T), '\0');
  std::string bad_magic = npy_bytes(header, data);
  bad_magic[3] = 'X';
  EXPECT_TRUE(RuntimeError([&] { load_bytes<T>(bad_magic); }, {"qkv::load_npy: memory.npy: not a .npy file (bad magic)"}));
  EXPECT_TRUE(RuntimeError([&] { load_bytes<T>(std::string("PK\x03\x04", 4) + std::string(100, '\0')); },
                           {"qkv::load_npy: memory.npy: not a .npy file (bad magic)"}));  // a .npz
  for (const auto& [major, minor] : {std::pair{4, 0}, {1, 1}, {0, 0}, {2, 5}}) {
    const std::string version = std::to_string(major) + "." + std::to_string(minor);
    EXPECT_TRUE(RuntimeError([&, major = major, minor = minor] { load_bytes<T>(npy_bytes(header, data, major, minor)); },
                             {"qkv::load_npy: memory.npy: unsupported .npy format version " + version +
                              " (qkv reads 1.0, 2.0 and 3.0)"}));
  }
}

TYPED_TEST(Npy, RejectsUnparseableHeaders) {
  using T = TypeParam;
  const std::string d = "'descr': '<" + code<T>() + "'";
  const auto fails = [&](const std::string& header, const std::string& message) {
    return RuntimeError([&] { load_bytes<T>(npy_bytes(header, std::string(64, '\0'))); },
                        {"qkv::load_npy: memory.npy: unparseable header dict: " + message});
  };
  EXPECT_TRUE(fails("not a dict", "expected '{' at the start at byte 0 of not a dict"));
  EXPECT_TRUE(fails("{'descr' '<f4', 'fortran_order': False, 'shape': (), }",
                    "expected ':' after the key 'descr' at byte 9 of {'descr' '<f4',"));
  EXPECT_TRUE(fails("{" + d + ", 'fortran_order': False, 'shape': (3, 4)   ",
                    "expected '}' after the value of 'shape' at byte 59"));
  EXPECT_TRUE(fails("{" + d + ", 'fortran_order': False 'shape': (3, 4)}",
                    "expected '}' after the value of 'fortran_order' at byte 40"));
  EXPECT_TRUE(fails("{" + d + ", 'fortran_order': False, 'shape': (3, 4]}", "mismatched ']' at byte 55"));
  EXPECT_TRUE(fails("{" + d + ", 'fortran_order': False, 'shape': (3, 4}", "mismatched '}' at byte 55"));
  EXPECT_TRUE(fails("{" + d + ", 'fortran_order': False, 'shape': (3, 4", "unclosed '(' at byte 50"));
  EXPECT_TRUE(fails("{'descr: '<f4', 'fortran_order': False, 'shape': (), }", "expected ':' after the key 'descr: '"));
  EXPECT_TRUE(fails("{'descr': '<f4}", "unterminated string at byte 10"));
  EXPECT_TRUE(fails("{descr: '<f4', 'fortran_order': False, 'shape': (), }", "a key that is not a string at byte 1"));
  EXPECT_TRUE(fails("{" + d + ", 'fortran_order': , 'shape': (), }", "expected a value, found ','"));
  EXPECT_TRUE(fails("{" + d + ", 'fortran_order': False, 'shape': (), } x", "text after the closing '}' at byte 56"));
  EXPECT_TRUE(fails("{" + d + ", 'fortran_order': False, 'shape': (), ", "expected a value at byte 54"));
  EXPECT_TRUE(fails(std::string(100, ' '), "expected '{' at the start at byte 100"));
}

TYPED_TEST(Npy, RejectsHeadersWithMissingOrUnexpectedKeys) {
  using T = TypeParam;
  const std::string d = "'descr': '<" + code<T>() + "'";
  const auto fails = [&](const std::string& header, const std::string& message) {
    return RuntimeError([&] { load_bytes<T>(npy_bytes(header, std::string(64, '\0'))); },
                        {"qkv::load_npy: memory.npy: " + message});
  };
  EXPECT_TRUE(fails("{" + d + ", 'fortran_order': False, }",
                    "the header has no 'shape' key: {" + d + ", 'fortran_order': False, }"));
  EXPECT_TRUE(fails("{'fortran_order': False, 'shape': (2,), }", "the header has no 'descr' key"));
  EXPECT_TRUE(fails("{" + d + ", 'shape': (2,)}", "the header has no 'fortran_order' key"));
  EXPECT_TRUE(fails("{}", "the header has no 'descr' key: {}"));
  EXPECT_TRUE(fails("{" + d + ", 'fortran_order': False, 'shape': (2,), 'order': 'C'}",
                    "unexpected key 'order' in the header (a .npy header has 'descr', 'fortran_order' and 'shape')"));
  EXPECT_TRUE(fails("{" + d + ", 'shape': (2,), 'fortran_order': False, 'shape': (3,)}",
                    "key 'shape' appears twice in the header"));
}

TYPED_TEST(Npy, RejectsBadHeaderValues) {
  using T = TypeParam;
  const std::string d = "'descr': '<" + code<T>() + "'";
  const auto fails = [&](const std::string& fortran, const std::string& shape, const std::string& message) {
    const std::string header = "{" + d + ", 'fortran_order': " + fortran + ", 'shape': " + shape + ", }";
    return RuntimeError([&] { load_bytes<T>(npy_bytes(header, std::string(64, '\0'))); },
                        {"qkv::load_npy: memory.npy: " + message});
  };
  EXPECT_TRUE(fails("0", "(2,)", "'fortran_order' must be True or False, not 0"));
  EXPECT_TRUE(fails("'False'", "(2,)", "'fortran_order' must be True or False, not 'False'"));
  EXPECT_TRUE(fails("False", "[3, 4]", "'shape' [3, 4] is not a tuple of integers"));
  EXPECT_TRUE(fails("False", "(5)", "'shape' (5) is not a tuple of integers (a 1-d shape is written (n,))"));
  EXPECT_TRUE(fails("False", "5", "'shape' 5 is not a tuple of integers"));
  EXPECT_TRUE(fails("False", "(3.0, 4)", "'shape' (3.0, 4) is not a tuple of integers"));
  EXPECT_TRUE(fails("False", "(3, , 4)", "'shape' (3, , 4) is not a tuple of integers"));
  EXPECT_TRUE(fails("False", "(,)", "'shape' (,) is not a tuple of integers"));
  EXPECT_TRUE(fails("False", "(3, (4,))", "'shape' (3, (4,)) is not a tuple of integers"));
  EXPECT_TRUE(fails("False", "(3, 4-1)", "'shape' (3, 4-1) is not a tuple of integers"));
  EXPECT_TRUE(fails("False", "(1 2,)", "'shape' (1 2,) is not a tuple of integers"));
  EXPECT_TRUE(fails("False", "(3, -4)", "'shape' (3, -4) has a negative dimension -4"));
  EXPECT_TRUE(fails("False", "(99999999999999999999,)", "'shape' (99999999999999999999,) has a dimension that overflows"));
  EXPECT_TRUE(fails("False", "(4611686018427387904, 4)",
                    "'shape' (4611686018427387904, 4) has more elements than memory can address"));
  EXPECT_TRUE(fails("False", "(0, 4611686018427387904, 4)",
                    "'shape' (0, 4611686018427387904, 4) has more elements than memory can address"));
  EXPECT_TRUE(fails("False", "(1, 1, 1, 1, 1, 1, 1, 1, 1)",
                    "'shape' (1, 1, 1, 1, 1, 1, 1, 1, 1) has rank 9; qkv tensors have rank at most 8"));
  if (std::is_same_v<T, double>) {
    const std::string rank9 = data_path("f8_rank9.npy");
    EXPECT_TRUE(RuntimeError([&] { qkv::load_npy<T>(rank9); }, {"qkv::load_npy: " + rank9 + ": 'shape' (1, 1, 1, 1, 1, 1, 1, 1, 1) has rank 9"}));
  }
  // A header claiming terabytes of data in a short stream fails before allocating them.
  EXPECT_TRUE(fails("False", "(1000000, 1000000)", "truncated: header says [1000000,1000000] = 1000000000000 elements"));
}

TYPED_TEST(Npy, ReportsFilesThatCannotBeOpenedOrWritten) {
  using T = TypeParam;
  TempDir dir;
  const std::string missing = dir.file("missing.npy");
  EXPECT_TRUE(RuntimeError([&] { qkv::load_npy<T>(missing); },
                           {"qkv::load_npy: " + missing + ": cannot open the file (No such file or directory)"}));
  EXPECT_TRUE(RuntimeError([&] { qkv::load_npy<T>(dir.file("")); },
                           {"qkv::load_npy: " + dir.file("") + ": is a directory"}));
  const std::string nowhere = dir.file("no-such-directory/t.npy");
  EXPECT_TRUE(RuntimeError([&] { qkv::save_npy(nowhere, formula<T>({2})); },
                           {"qkv::save_npy: " + nowhere + ": cannot open for writing (No such file or directory)"}));
  if (std::filesystem::exists("/dev/full")) {  // every write fails with ENOSPC
    EXPECT_TRUE(RuntimeError([&] { qkv::save_npy("/dev/full", formula<T>({1000})); },
                             {"qkv::save_npy: /dev/full: write failed"}));
  }
  FullBuffer full;
  std::ostream out(&full);
  EXPECT_TRUE(RuntimeError([&] { qkv::save_npy(out, formula<T>({2})); }, {"qkv::save_npy: <stream>: write failed"}));
}

// ---------------------------------------------------------------------------------------
// float16 bit for bit, and bfloat16, which NumPy has no dtype for.

std::uint16_t bits_of(qkv::half h) { return Eigen::numext::bit_cast<std::uint16_t>(h); }

TEST(NpyHalf, ReadsEveryFloat16BitPatternNumpyWrote) {
  const Tensor<qkv::half> all = qkv::load_npy<qkv::half>(data_path("f2_all_bits.npy"));
  ASSERT_EQ(all.shape(), (Shape{256, 256}));
  for (Index i = 0; i < all.numel(); ++i) ASSERT_EQ(bits_of(all.data()[i]), static_cast<std::uint16_t>(i)) << i;
}

TEST(NpyHalf, WritesEveryFloat16BitPatternAsNumpy) {
  Tensor<qkv::half> all(Shape{256, 256});
  for (Index i = 0; i < all.numel(); ++i)
    all.data()[i] = Eigen::numext::bit_cast<qkv::half>(static_cast<std::uint16_t>(i));
  const std::string numpy = file_bytes(data_path("f2_all_bits.npy"));
  EXPECT_EQ(save_bytes<qkv::half>(all), numpy);
  // The same bytes from a transposed view of the transposed array.
  const Tensor<qkv::half> transposed(all.view().transpose(0, 1));
  EXPECT_EQ(save_bytes<qkv::half>(transposed.view().transpose(0, 1)), numpy);
  EXPECT_EQ(numpy.substr(10, 64 - 10 - 1).find("'descr': '<f2'"), 1u);
}

TEST(NpyHalf, RefusesBFloat16) {
  using qkv::bfloat16;
  const auto invalid = [](auto&& f, std::initializer_list<std::string> parts) {
    return ThrowsWith<std::invalid_argument>(f, parts);
  };
  TempDir dir;
  const std::string path = dir.file("b.npy");
  const Tensor<bfloat16> b = Tensor<bfloat16>::zeros({2, 3});
  const std::string no_dtype = "NumPy has no bfloat16 dtype, so a .npy file cannot hold Tensor<bfloat16>";
  EXPECT_TRUE(invalid([&] { qkv::save_npy(path, b); },
                      {"qkv::save_npy: " + no_dtype + " of shape [2,3] (" + path +
                       "); save qkv::to<float>(x), which holds the same values exactly"}));
  EXPECT_FALSE(std::filesystem::exists(path));  // refused before the file was opened
  std::ostringstream out;
  EXPECT_TRUE(invalid([&] { qkv::save_npy(out, b.view().transpose(0, 1)); },
                      {"qkv::save_npy: " + no_dtype + " of shape [3,2]; save qkv::to<float>(x)"}));
  EXPECT_TRUE(out.str().empty());

  const std::string f4 = data_path("f4_3x4.npy");
  EXPECT_TRUE(invalid([&] { qkv::load_npy<bfloat16>(f4); },
                      {"qkv::load_npy: " + no_dtype + " (" + f4 +
                       "); load a float32 file and convert with qkv::to<qkv::bfloat16>(x)"}));
  std::istringstream in(file_bytes(f4));
  EXPECT_TRUE(invalid([&] { qkv::load_npy<bfloat16>(in, "memory.npy"); },
                      {"qkv::load_npy: " + no_dtype + " (memory.npy); load a float32 file"}));
  EXPECT_EQ(in.tellg(), 0);  // nothing was read
}

}  // namespace
