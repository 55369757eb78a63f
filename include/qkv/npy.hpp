// SPDX-License-Identifier: MIT
// qkv::load_npy and qkv::save_npy: NumPy's .npy files (np.load / np.save) for float,
// double and half (float16) tensors. Reads format versions 1.0, 2.0 and 3.0; writes 1.0
// byte for byte as np.save. NumPy has no bfloat16, so neither function takes it.
#pragma once

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <istream>
#include <limits>
#include <ostream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "half.hpp"
#include "shape.hpp"
#include "tensor.hpp"
#include "tensor_view.hpp"

namespace qkv {

namespace detail {

inline constexpr char npy_magic[] = "\x93NUMPY";
inline constexpr std::size_t npy_magic_len = 6;
// np.save pads the header so that the data starts at a multiple of this.
inline constexpr std::size_t npy_alignment = 64;

template <class T>
struct NpyDtype;
template <>
struct NpyDtype<float> {
  static constexpr const char* code = "f4";
  static constexpr const char* tensor = "Tensor<float>";
};
template <>
struct NpyDtype<double> {
  static constexpr const char* code = "f8";
  static constexpr const char* tensor = "Tensor<double>";
};
template <>
struct NpyDtype<half> {
  static constexpr const char* code = "f2";
  static constexpr const char* tensor = "Tensor<half>";
};

template <class T>
void check_npy_type() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> || is_half_v<T>,
                "qkv::load_npy / qkv::save_npy: float, double or half tensors");
  static_assert(!std::is_floating_point_v<T> || std::numeric_limits<T>::is_iec559,
                "qkv's .npy support assumes IEEE-754 floats");
  static_assert(sizeof(T) == (std::is_same_v<T, double> ? 8 : std::is_same_v<T, float> ? 4 : 2),
                "qkv's .npy support copies elements as their bytes");
}

// NumPy has no bfloat16 dtype, so no .npy file holds one: load_npy and save_npy refuse
// the type, before touching any file, rather than write another dtype under its name.
inline std::invalid_argument npy_no_bfloat16(const char* fn, const std::string& what) {
  return std::invalid_argument(std::string(fn) + ": NumPy has no bfloat16 dtype, so a .npy file cannot hold " +
                               what + "; " +
                               (std::string(fn) == "qkv::load_npy"
                                    ? "load a float32 file and convert with qkv::to<qkv::bfloat16>(x)"
                                    : "save qkv::to<float>(x), which holds the same values exactly"));
}
inline std::string npy_bfloat16_what(const Shape& shape) { return "Tensor<bfloat16> of shape " + shape.str(); }

inline bool host_is_little_endian() noexcept {
  const std::uint16_t one = 1;
  unsigned char first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

// .npy data is little-endian and qkv copies it without swapping bytes.
inline void check_host_byte_order(const char* fn) {
  if (!host_is_little_endian())
    throw std::runtime_error(std::string(fn) + ": qkv reads and writes .npy files on little-endian hosts only");
}

inline std::string errno_text(int error) {
  return error ? " (" + std::generic_category().message(error) + ")" : std::string();
}

// The header, for error messages: trailing padding dropped, long headers shortened.
inline std::string npy_header_excerpt(const std::string& header) {
  std::string text = header.substr(0, header.find_last_not_of(" \t\r\n") + 1);
  return text.size() > 200 ? text.substr(0, 200) + "..." : text;
}

struct NpyHeader {
  std::string descr;          // the dtype's source text, quotes included: '<f4'
  std::string fortran_order;  // True or False, as written
  std::string shape;          // the shape's source text: (3, 4)
};

// Splits the header, a Python dict literal, into its three values. Python's syntax for
// the literals np.save writes: any key order, spaces, a trailing comma. The values are
// only delimited here; npy_dims and load_npy interpret them.
class NpyHeaderParser {
 public:
  NpyHeaderParser(const std::string& header, std::string where) : text_(header), where_(std::move(where)) {}

  NpyHeader parse() {
    skip_space();
    expect('{', "at the start");
    NpyHeader header;
    bool seen[3] = {};
    for (;;) {
      skip_space();
      if (eat('}')) break;
      const std::size_t key_at = pos_;
      const std::string key = value();
      if (key.empty() || (key[0] != '\'' && key[0] != '"')) fail("a key that is not a string", key_at);
      skip_space();
      expect(':', ("after the key " + key).c_str());
      skip_space();
      const std::string text = value();
      const int slot = key_slot(key);
      if (seen[slot]) invalid("key " + key + " appears twice in the header " + npy_header_excerpt(text_));
      seen[slot] = true;
      (slot == 0 ? header.descr : slot == 1 ? header.fortran_order : header.shape) = text;
      skip_space();
      if (eat(',')) continue;
      expect('}', ("after the value of " + key).c_str());
      break;
    }
    skip_space();
    if (pos_ != text_.size()) fail("text after the closing '}'", pos_);
    const char* names[3] = {"'descr'", "'fortran_order'", "'shape'"};
    for (int i = 0; i < 3; ++i)
      if (!seen[i]) invalid("the header has no " + std::string(names[i]) + " key: " + npy_header_excerpt(text_));
    return header;
  }

 private:
  [[noreturn]] void invalid(const std::string& what) const { throw std::runtime_error(where_ + ": " + what); }
  [[noreturn]] void fail(const std::string& what, std::size_t at) const {
    invalid("unparseable header dict: " + what + " at byte " + std::to_string(at) + " of " +
            npy_header_excerpt(text_));
  }

  int key_slot(const std::string& key) const {
    const std::string name = key.substr(1, key.size() - 2);
    if (name == "descr") return 0;
    if (name == "fortran_order") return 1;
    if (name == "shape") return 2;
    invalid("unexpected key " + key + " in the header (a .npy header has 'descr', 'fortran_order' and 'shape'): " +
            npy_header_excerpt(text_));
  }

  static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f'; }
  // The characters of a name or number: True, 12, -3, 5L.
  static bool is_word(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '+' || c == '-';
  }
  void skip_space() {
    while (pos_ < text_.size() && is_space(text_[pos_])) ++pos_;
  }
  bool eat(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void expect(char c, const char* where) {
    if (!eat(c)) fail(std::string("expected '") + c + "' " + where, pos_);
  }

  // One literal (string, name, number, or bracketed group), returned as its source text.
  std::string value() {
    const std::size_t begin = pos_;
    if (pos_ >= text_.size()) fail("expected a value", pos_);
    const char c = text_[pos_];
    if (c == '\'' || c == '"') {
      skip_string();
    } else if (c == '(' || c == '[' || c == '{') {
      skip_group();
    } else {
      while (pos_ < text_.size() && is_word(text_[pos_])) ++pos_;
      if (pos_ == begin) fail(std::string("expected a value, found '") + c + "'", pos_);
    }
    return text_.substr(begin, pos_ - begin);
  }
  void skip_string() {
    const std::size_t begin = pos_;
    const char quote = text_[pos_++];
    while (pos_ < text_.size() && text_[pos_] != quote && text_[pos_] != '\n') pos_ += text_[pos_] == '\\' ? 2u : 1u;
    if (pos_ >= text_.size() || text_[pos_] != quote) fail("unterminated string", begin);
    ++pos_;
  }
  void skip_group() {
    const std::size_t begin = pos_;
    std::string closers;
    do {
      const char c = text_[pos_];
      if (c == '\'' || c == '"') {
        skip_string();
        continue;
      }
      if (c == '(') closers += ')';
      else if (c == '[') closers += ']';
      else if (c == '{') closers += '}';
      else if (c == ')' || c == ']' || c == '}') {
        if (c != closers.back()) fail(std::string("mismatched '") + c + "'", pos_);
        closers.pop_back();
      }
      ++pos_;
    } while (!closers.empty() && pos_ < text_.size());
    if (!closers.empty()) fail(std::string("unclosed '") + text_[begin] + "'", begin);
  }

  const std::string& text_;
  std::string where_;
  std::size_t pos_ = 0;
};

// The dimensions of a shape tuple's source text: "()", "(5,)", "(3, 4)". Python's rules:
// "(5)" is the integer 5, not a tuple.
inline Shape npy_dims(const std::string& text, const std::string& where) {
  const auto bad = [&](const std::string& why) -> std::runtime_error {
    return std::runtime_error(where + ": 'shape' " + text + " " + why);
  };
  if (text.size() < 2 || text.front() != '(' || text.back() != ')')
    throw bad("is not a tuple of integers");
  std::vector<std::string> items(1);
  for (char c : text.substr(1, text.size() - 2)) {
    if (c == ',') items.emplace_back();
    else items.back() += c;
  }
  const char* space = " \t\r\n\f";
  for (std::string& item : items) {
    item.erase(0, item.find_first_not_of(space));
    item.erase(item.find_last_not_of(space) + 1);
  }
  if (items.size() == 1) {
    if (!items[0].empty()) throw bad("is not a tuple of integers (a 1-d shape is written (n,))");
    items.clear();  // ()
  } else if (items.back().empty()) {
    items.pop_back();  // the trailing comma
  }
  if (items.size() > static_cast<std::size_t>(Shape::max_rank))
    throw bad("has rank " + std::to_string(items.size()) + "; qkv tensors have rank at most " +
              std::to_string(Shape::max_rank));
  Shape shape;
  for (std::string item : items) {
    if (!item.empty() && (item.back() == 'L' || item.back() == 'l')) item.pop_back();  // Python 2's long
    if (item.empty() || item.find_first_not_of("+-0123456789") != std::string::npos ||
        item.find_first_of("+-", 1) != std::string::npos || item == "+" || item == "-")
      throw bad("is not a tuple of integers");
    if (item[0] == '-' && item.find_first_not_of("-0") != std::string::npos)
      throw bad("has a negative dimension " + item);
    Index dim = 0;
    for (char c : item.substr(item[0] == '+' || item[0] == '-' ? 1 : 0)) {
      if (dim > (std::numeric_limits<Index>::max() - (c - '0')) / 10) throw bad("has a dimension that overflows");
      dim = dim * 10 + (c - '0');
    }
    shape.push_back(dim);
  }
  return shape;
}

// Whether `count` elements of `size` bytes fit in memory sizes (the byte count of the
// nonzero dimensions, so that even an empty shape's numel() cannot overflow).
inline bool npy_shape_fits(const Shape& shape, std::size_t size) {
  Index bytes = static_cast<Index>(size);
  for (Index dim : shape) {
    if (dim == 0) continue;
    if (bytes > std::numeric_limits<Index>::max() / dim) return false;
    bytes *= dim;
  }
  return true;
}

// The bytes left in `in` when it can seek, else -1.
inline std::streamoff npy_remaining_bytes(std::istream& in) {
  const std::streampos here = in.tellg();
  if (here == std::streampos(-1)) return -1;
  in.seekg(0, std::ios::end);
  const std::streampos end = in.tellg();
  in.clear();
  in.seekg(here);
  if (end == std::streampos(-1) || !in) {
    in.clear();
    return -1;
  }
  return end - here;
}

// Reads up to `count` bytes, growing the buffer as they arrive, so that a length field
// claiming gigabytes costs no more memory than the bytes the stream really holds.
inline std::string npy_read_bytes(std::istream& in, std::size_t count) {
  std::string bytes;
  while (bytes.size() < count && in) {
    const std::size_t chunk = std::min<std::size_t>(count - bytes.size(), std::size_t(1) << 20);
    const std::size_t old = bytes.size();
    bytes.resize(old + chunk);
    in.read(&bytes[old], static_cast<std::streamsize>(chunk));
    bytes.resize(old + static_cast<std::size_t>(in.gcount()));
  }
  return bytes;
}

inline std::uint32_t npy_little_endian(const std::string& bytes) {
  std::uint32_t value = 0;
  for (std::size_t i = bytes.size(); i-- > 0;) value = value << 8 | static_cast<unsigned char>(bytes[i]);
  return value;
}

inline std::string npy_shape_repr(const Shape& shape) {  // Python's repr of the tuple
  std::string s = "(";
  for (int i = 0; i < shape.rank(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.rank() == 1 ? ",)" : ")");
}

// Magic, version 1.0, header length and the header dict, as np.save writes them. (NumPy
// 1.24 also puts spaces after the dict for the first dimension to grow into; for any shape
// of rank <= 8 whose float data fits in memory they fit in the padding, so the bytes agree.)
inline std::string npy_header_bytes(const std::string& descr, const Shape& shape) {
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + npy_shape_repr(shape) + ", }";
  const std::size_t prefix = npy_magic_len + 4;  // magic, version, 2-byte length
  dict.append(npy_alignment - (prefix + dict.size() + 1) % npy_alignment, ' ');
  dict += '\n';
  std::string bytes(npy_magic, npy_magic_len);
  bytes += {'\x01', '\x00', static_cast<char>(dict.size() & 0xff), static_cast<char>(dict.size() >> 8)};
  return bytes + dict;
}

template <class T>
void write_npy(std::ostream& out, TensorView<const T> tensor) {
  const std::string header = npy_header_bytes(std::string("<") + NpyDtype<T>::code, tensor.shape());
  out.write(header.data(), static_cast<std::streamsize>(header.size()));  // unaffected by out.width()
  if (tensor.empty()) return;
  if (tensor.is_contiguous()) {
    out.write(reinterpret_cast<const char*>(tensor.data()), static_cast<std::streamsize>(tensor.numel()) * static_cast<std::streamsize>(sizeof(T)));
    return;
  }
  // Gather a strided view into C order through a small buffer.
  std::vector<T> buffer(static_cast<std::size_t>(std::min<Index>(tensor.numel(), 4096)));
  std::size_t used = 0;
  const auto flush = [&] {
    out.write(reinterpret_cast<const char*>(buffer.data()), static_cast<std::streamsize>(used * sizeof(T)));
    used = 0;
  };
  detail::for_each_offset(tensor.shape(), [&](Index offset) {
    buffer[used++] = tensor.data()[offset];
    if (used == buffer.size()) flush();
  }, tensor.strides());
  if (used) flush();
}

}  // namespace detail

namespace detail {

template <class T>
Tensor<T> read_npy(std::istream& in, const std::string& name) {
  detail::check_npy_type<T>();
  const char* fn = "qkv::load_npy";
  detail::check_host_byte_order(fn);
  const std::string where = std::string(fn) + ": " + name;
  const auto error = [&](const std::string& what) { return std::runtime_error(where + ": " + what); };

  const std::string magic = detail::npy_read_bytes(in, detail::npy_magic_len);
  if (magic != std::string(detail::npy_magic, detail::npy_magic_len)) throw error("not a .npy file (bad magic)");
  const std::string version = detail::npy_read_bytes(in, 2);
  if (version.size() < 2) throw error("truncated header: the stream ends after the magic string");
  const int major = static_cast<unsigned char>(version[0]), minor = static_cast<unsigned char>(version[1]);
  if (major < 1 || major > 3 || minor != 0)
    throw error("unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor) +
                " (qkv reads 1.0, 2.0 and 3.0)");
  const std::size_t length_size = major == 1 ? 2 : 4;
  const std::string length_bytes = detail::npy_read_bytes(in, length_size);
  if (length_bytes.size() < length_size) throw error("truncated header: the stream ends inside the header length");
  const std::size_t header_len = detail::npy_little_endian(length_bytes);
  const std::string header = detail::npy_read_bytes(in, header_len);
  if (header.size() < header_len)
    throw error("truncated header: the header length says " + std::to_string(header_len) + " bytes but only " +
                std::to_string(header.size()) + " follow");

  const detail::NpyHeader fields = detail::NpyHeaderParser(header, where).parse();
  const std::string expected = std::string("'<") + detail::NpyDtype<T>::code + "'";
  const std::string code = detail::NpyDtype<T>::code;
  if (fields.descr == "'>" + code + "'" || fields.descr == "\">" + code + "\"")
    throw error("big-endian dtype " + fields.descr + "; qkv reads little-endian only (a.astype(" + expected + "))");
  bool dtype_ok = false;
  for (const char* order : {"<", "=", "|", ""})
    for (const char* quote : {"'", "\""})
      dtype_ok = dtype_ok || fields.descr == quote + std::string(order) + code + quote;
  if (!dtype_ok)
    throw error("dtype " + fields.descr + " does not match " + detail::NpyDtype<T>::tensor + " (" + expected + ")");
  if (fields.fortran_order == "True")
    throw error("fortran_order is True; qkv reads C order only (np.ascontiguousarray)");
  if (fields.fortran_order != "False")
    throw error("'fortran_order' must be True or False, not " + fields.fortran_order);
  const Shape shape = detail::npy_dims(fields.shape, where);
  if (!detail::npy_shape_fits(shape, sizeof(T)))
    throw error("'shape' " + fields.shape + " has more elements than memory can address");

  const Index bytes = shape.numel() * static_cast<Index>(sizeof(T));
  const auto truncated = [&](Index available) {
    return error("truncated: header says " + shape.str() + " = " + std::to_string(shape.numel()) + " elements (" +
                 std::to_string(bytes) + " bytes) but only " + std::to_string(available) + " bytes follow");
  };
  // A stream that can seek tells how much follows before the tensor is allocated; one
  // that cannot (a pipe) is read into the tensor and found short afterwards.
  const std::streamoff remaining = detail::npy_remaining_bytes(in);
  if (remaining >= 0 && remaining < bytes) throw truncated(remaining);
  Tensor<T> tensor(shape);
  if (bytes > 0) {
    in.read(reinterpret_cast<char*>(tensor.data()), static_cast<std::streamsize>(bytes));
    if (in.gcount() < bytes) throw truncated(in.gcount());
  }
  return tensor;
}

}  // namespace detail

/// \brief Reads a `.npy` array of dtype float32 ('<f4', for T = float), float64 ('<f8',
/// for T = double) or float16 ('<f2', for T = half), as `np.load`.
/// \tparam T float, double or half; the file's dtype must match it exactly (no conversion).
///
/// Reads format versions 1.0, 2.0 and 3.0, C order, little-endian, rank 0 to 8. The
/// stream is left just after the array, so arrays saved one after another into one
/// stream load one after another. `name` is what error messages call the stream.
/// \throws std::runtime_error "qkv::load_npy: <name>: ..." for anything else: another
/// dtype, fortran_order True, big-endian data, a bad magic or version, a header that is
/// not a valid dict, a bad shape, or fewer data bytes than the shape needs.
/// \throws std::invalid_argument for T = bfloat16, which NumPy has no dtype for.
/// \code
/// // Python: np.save("q.npy", q.numpy())    (q a float32 torch tensor)
/// qkv::Tensor<float> q = qkv::load_npy<float>("q.npy");
/// \endcode
/// \see save_npy
template <class T>
Tensor<T> load_npy(std::istream& in, const std::string& name = "<stream>") {
  if constexpr (std::is_same_v<T, bfloat16>) throw detail::npy_no_bfloat16("qkv::load_npy", "Tensor<bfloat16> (" + name + ")");
  else return detail::read_npy<T>(in, name);
}

/// Reads the `.npy` file at `path`; see load_npy(std::istream&, const std::string&).
/// \throws std::runtime_error also when the file cannot be opened.
template <class T>
Tensor<T> load_npy(const std::string& path) {
  if constexpr (std::is_same_v<T, bfloat16>) throw detail::npy_no_bfloat16("qkv::load_npy", "Tensor<bfloat16> (" + path + ")");
  detail::check_npy_type<T>();
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("qkv::load_npy: " + path + ": cannot open the file" + detail::errno_text(errno));
  std::error_code ignored;  // a directory opens, then reads as an empty file
  if (std::filesystem::is_directory(path, ignored)) throw std::runtime_error("qkv::load_npy: " + path + ": is a directory");
  return load_npy<T>(in, path);
}

/// \brief Writes a tensor or view as a `.npy` array (format 1.0, dtype '<f4', '<f8' or
/// '<f2', C order), byte for byte what `np.save` writes for the same array.
/// \tparam T float, double or half. bfloat16 throws std::invalid_argument: NumPy has no
/// such dtype (save qkv::to<float>(x) instead, which holds the same values).
///
/// Any strided view (transposed, sliced, broadcast) is written in C order, the order its
/// elements print in, as `np.save(path, np.ascontiguousarray(view))`.
/// \throws std::runtime_error "qkv::save_npy: <stream>: write failed" if the stream fails.
/// \code
/// qkv::save_npy("out.npy", out);             // Python: torch.from_numpy(np.load("out.npy"))
/// qkv::save_npy("kT.npy", k.view().transpose(0, 1));
/// \endcode
/// \see load_npy
template <class T>
void save_npy(std::ostream& out, TensorView<const T> tensor) {
  if constexpr (std::is_same_v<T, bfloat16>) {
    throw detail::npy_no_bfloat16("qkv::save_npy", detail::npy_bfloat16_what(tensor.shape()));
  } else {
    detail::check_npy_type<T>();
    detail::check_host_byte_order("qkv::save_npy");
    detail::write_npy(out, tensor);
    if (!out) throw std::runtime_error("qkv::save_npy: <stream>: write failed");
  }
}
template <class T>
void save_npy(std::ostream& out, TensorView<T> tensor) { save_npy<T>(out, TensorView<const T>(tensor)); }
/// Writes a tensor to `out`; see save_npy(std::ostream&, TensorView<const T>).
template <class T>
void save_npy(std::ostream& out, const Tensor<T>& tensor) { save_npy<T>(out, tensor.view()); }

/// Writes the `.npy` file `path`, replacing it if it exists.
/// \throws std::runtime_error when the file cannot be opened or written.
template <class T>
void save_npy(const std::string& path, TensorView<const T> tensor) {
  if constexpr (std::is_same_v<T, bfloat16>) {
    throw detail::npy_no_bfloat16("qkv::save_npy", detail::npy_bfloat16_what(tensor.shape()) + " (" + path + ")");
  } else {
    detail::check_npy_type<T>();
    const char* fn = "qkv::save_npy";
    detail::check_host_byte_order(fn);
    errno = 0;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(std::string(fn) + ": " + path + ": cannot open for writing" + detail::errno_text(errno));
    errno = 0;
    detail::write_npy(out, tensor);
    out.close();
    if (!out) throw std::runtime_error(std::string(fn) + ": " + path + ": write failed" + detail::errno_text(errno));
  }
}
template <class T>
void save_npy(const std::string& path, TensorView<T> tensor) { save_npy<T>(path, TensorView<const T>(tensor)); }
/// Writes a tensor to the `.npy` file `path`; see save_npy(const std::string&, TensorView<const T>).
template <class T>
void save_npy(const std::string& path, const Tensor<T>& tensor) { save_npy<T>(path, tensor.view()); }

}  // namespace qkv
