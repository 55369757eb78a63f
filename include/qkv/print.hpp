// SPDX-License-Identifier: MIT
// Printing tensors exactly as PyTorch 1.13 and NumPy 1.24 do with their default print
// options: torch_repr and operator<< as repr(tensor), numpy_repr / numpy_str as repr / str
// of an ndarray, so that output can be compared character for character with a notebook.
// float, double, bfloat16 and half (float16) tensors; NumPy has no bfloat16, so numpy_repr
// and numpy_str refuse it.
#pragma once

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <limits>
#include <cstdint>
#include <ostream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tensor.hpp"

namespace qkv {

namespace detail {

// ----------------------------------------------------------------------------------------
// Shared by both formats.

/// Both libraries summarize tensors of more than `print_threshold` elements, keeping
/// `print_edgeitems` at each end of every dimension longer than twice that.
inline constexpr Index print_threshold = 1000;
inline constexpr Index print_edgeitems = 3;

/// `n` copies of `c`; none when `n` is not positive.
inline std::string repeat(char c, Index n) {
  return n > 0 ? std::string(static_cast<std::size_t>(n), c) : std::string();
}

inline std::string pad_left(const std::string& s, std::size_t width) {
  return s.size() < width ? std::string(width - s.size(), ' ') + s : s;
}

inline std::string rstrip(const std::string& s) {
  const auto end = s.find_last_not_of(" \n");
  return end == std::string::npos ? std::string() : s.substr(0, end + 1);
}

// Every double fits: 309 integer digits plus a sign, a point and the requested decimals,
// or the 327 characters of the shortest fixed form of the smallest denormal.
using CharsBuffer = std::array<char, 512>;

/// The shortest digits that read back as `x` (of x's own type, so a float gets float digits).
template <class T>
std::string shortest_chars(T x, std::chars_format format) {
  CharsBuffer buf{};
  const auto result = std::to_chars(buf.data(), buf.data() + buf.size(), x, format);
  return std::string(buf.data(), result.ptr);
}

/// `x` correctly rounded to `precision` digits after the point, as printf("%.*f") / "%.*e".
template <class T>
std::string rounded_chars(T x, std::chars_format format, int precision) {
  CharsBuffer buf{};
  const auto result = std::to_chars(buf.data(), buf.data() + buf.size(), x, format, precision);
  return std::string(buf.data(), result.ptr);
}

/// The shortest digits that read back as the float16 value `x` (NumPy's Dragon4 with
/// unique=True on a float16): "0.1" for the half nearest 0.1, whose float digits are
/// 0.099975586. A decimal exactly halfway to a neighbour reads back when x's significand
/// is even, as round-to-nearest-even would read it. The fixed form keeps every digit down
/// to the units ("4112", as NumPy prints it inside an array, and as to_chars' fixed form
/// does for float); str(np.float16(4112)) is "4110.0", which shortest_fixed_chars gives.
inline std::string shortest_chars(half x, std::chars_format format) {
  const double value = static_cast<double>(static_cast<float>(x));
  if (!std::isfinite(value) || value == 0) return shortest_chars(value, format);
  const bool negative = value < 0;
  const double magnitude = std::abs(value);
  // The interval of reals that round to x: half an ulp each side, a quarter below a power
  // of two (the ulp below is half as wide). Bounds and candidates are exact in double.
  const unsigned bits = static_cast<unsigned>(x.x) & 0x7fffu;
  const unsigned exponent_field = bits >> 10;
  const bool even = (bits & 1u) == 0;
  const double ulp = std::ldexp(1.0, exponent_field == 0 ? -24 : static_cast<int>(exponent_field) - 25);
  const double high = magnitude + ulp / 2;
  const double low = magnitude - ((bits & 0x3ffu) == 0 && exponent_field > 1 ? ulp / 4 : ulp / 2);

  // Every significant digit of the value (a half has at most 18), then the first p + 1 of
  // them, truncated and rounded up, for p = 0, 1, ...: the first that lies inside wins;
  // if both do, the nearer, and at an exact tie the even last digit.
  const std::string exact = rounded_chars(magnitude, std::chars_format::scientific, 24);
  const auto e = exact.find('e');
  const int exponent10 = std::stoi(exact.substr(e + 1));
  const std::string digits = exact.substr(0, 1) + exact.substr(2, e - 2);
  const int first_p = format == std::chars_format::fixed ? std::max(0, exponent10) : 0;
  for (int p = first_p;; ++p) {
    const std::size_t kept = static_cast<std::size_t>(p) + 1;
    const std::string head = digits.substr(0, kept);
    const std::string rest = digits.substr(kept);
    const std::uint64_t down = std::stoull(head), up = down + 1;
    const int scale = exponent10 - p;  // the candidates are down·10^scale and up·10^scale
    const auto value_of = [&](std::uint64_t c) {
      return std::stod(std::to_string(c) + "e" + std::to_string(scale));
    };
    const double down_value = value_of(down), up_value = value_of(up);
    const bool down_in = down_value > low || (even && down_value == low);
    const bool up_in = up_value < high || (even && up_value == high);
    if (!down_in && !up_in) continue;
    std::uint64_t chosen = down_in ? down : up;
    if (down_in && up_in) {
      const auto nonzero = rest.find_first_not_of('0');
      const int vs_half = nonzero == std::string::npos ? -1
                          : rest[0] != '5' ? (rest[0] < '5' ? -1 : 1)
                          : rest.find_first_not_of('0', 1) == std::string::npos ? 0 : 1;
      chosen = vs_half < 0 || (vs_half == 0 && down % 2 == 0) ? down : up;
    }
    // chosen·10^scale in the requested form, trailing zeros dropped.
    std::string d = std::to_string(chosen);
    int point = static_cast<int>(d.size()) + scale;  // digits before the decimal point
    std::string s = negative ? "-" : "";
    if (format == std::chars_format::scientific) {
      const int exp = point - 1;
      d.erase(d.find_last_not_of('0') + 1);
      s += d.substr(0, 1);
      if (d.size() > 1) s += "." + d.substr(1);
      const std::string exp_digits = std::to_string(exp < 0 ? -exp : exp);
      return s + "e" + (exp < 0 ? "-" : "+") + (exp_digits.size() < 2 ? "0" : "") + exp_digits;
    }
    if (point >= static_cast<int>(d.size())) return s + d + repeat('0', point - static_cast<int>(d.size()));
    if (point <= 0) {
      d = repeat('0', 1 - point) + d;
      point = 1;
    }
    std::string fraction = d.substr(static_cast<std::size_t>(point));
    fraction.erase(fraction.find_last_not_of('0') + 1);
    return s + d.substr(0, static_cast<std::size_t>(point)) + (fraction.empty() ? "" : "." + fraction);
  }
}

/// `x` correctly rounded to `precision` digits, as rounded_chars of its exact float value.
inline std::string rounded_chars(half x, std::chars_format format, int precision) {
  return rounded_chars(static_cast<double>(static_cast<float>(x)), format, precision);
}

/// The shortest round-trip significant digits of `x` in positional notation, padded with
/// zeros: float 157523856 gives "157523860", as str(np.float32(157523856)). to_chars'
/// fixed form gives the exact "157523856" instead, which is what NumPy prints for the same
/// value inside an array, where Dragon4 is asked for every digit down to the units.
template <class T>
std::string shortest_fixed_chars(T x) {
  const std::string sci = shortest_chars(x, std::chars_format::scientific);
  const auto e = sci.find('e');
  const int exponent = std::stoi(sci.substr(e + 1));
  const bool negative = sci[0] == '-';
  std::string digits;
  for (std::size_t i = negative ? 1 : 0; i < e; ++i)
    if (sci[i] != '.') digits += sci[i];

  std::string s = negative ? "-" : "";
  if (exponent < 0) return s + "0." + repeat('0', -exponent - 1) + digits;
  const std::size_t integer_digits = static_cast<std::size_t>(exponent) + 1;
  if (digits.size() <= integer_digits)
    return s + digits + std::string(integer_digits - digits.size(), '0');
  return s + digits.substr(0, integer_digits) + '.' + digits.substr(integer_digits);
}

/// Python's and NumPy's spelling of a non-finite value: the sign of a NaN is never shown.
template <class T>
std::string nonfinite_chars(T x) {
  if (std::isnan(x)) return "nan";
  return x < 0 ? "-inf" : "inf";
}

/// Python's repr of a tuple of sizes: "(2, 0)", "(0,)".
inline std::string python_tuple(const Shape& shape) {
  std::string s = "(";
  for (int i = 0; i < shape.rank(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.rank() == 1 ? ",)" : ")");
}

/// Calls on_index(i) for each index a print shows along a dimension of size `n`, with
/// on_gap() where a summarized print elides the middle.
template <class OnIndex, class OnGap>
void for_each_shown_index(Index n, bool summarize, OnIndex&& on_index, OnGap&& on_gap) {
  const bool elide = summarize && n > 2 * print_edgeitems;
  for (Index i = 0; i < n; ++i) {
    if (elide && i == print_edgeitems) {
      on_gap();
      i = n - print_edgeitems;
    }
    on_index(i);
  }
}

/// The elements a print shows, in row-major order. Both libraries size their columns
/// from these alone, so a summarized print ignores the values it hides.
template <class T>
void collect_shown(TensorView<const T> t, bool summarize, std::vector<T>& out) {
  if (t.rank() == 0) {
    out.push_back(*t.data());
    return;
  }
  for_each_shown_index(
      t.size(0), summarize, [&](Index i) { collect_shown(t[i], summarize, out); }, [] {});
}

template <class T>
std::vector<T> shown_values(TensorView<const T> t, bool summarize) {
  std::vector<T> values;
  collect_shown(t, summarize, values);
  return values;
}

template <class T>
std::string integer_chars(T x) {
  std::array<char, 24> buf{};
  // Widened so that char types print as numbers, as PyTorch prints int8 and uint8.
  using Wide = std::conditional_t<std::is_signed_v<T>, long long, unsigned long long>;
  const auto result = std::to_chars(buf.data(), buf.data() + buf.size(), static_cast<Wide>(x));
  return std::string(buf.data(), result.ptr);
}

// ----------------------------------------------------------------------------------------
// PyTorch: torch/_tensor_str.py.

inline constexpr int torch_precision = 4;
inline constexpr std::size_t torch_linewidth = 80;

/// One column width and one notation for a whole tensor, chosen from the values shown, as
/// torch._tensor_str._Formatter.
template <class T>
class TorchFormatter {
 public:
  explicit TorchFormatter(const std::vector<T>& values) {
    if constexpr (std::is_floating_point_v<T>) {
      choose_notation(values);
    } else {
      for (T v : values) max_width_ = std::max(max_width_, unpadded(v).size());
    }
  }

  std::size_t width() const noexcept { return max_width_; }
  std::string format(T value) const { return pad_left(unpadded(value), max_width_); }

 private:
  void choose_notation(const std::vector<T>& values) {
    std::vector<T> nonzero;
    for (T v : values)
      if (std::isfinite(v) && v != 0) nonzero.push_back(v);
    if (nonzero.empty()) return;  // zeros and non-finite values only: "0.", "inf", "nan"

    // PyTorch compares the magnitudes as doubles.
    double lo = std::numeric_limits<double>::infinity(), hi = 0;
    for (T v : nonzero) {
      lo = std::min(lo, std::abs(static_cast<double>(v)));
      hi = std::max(hi, std::abs(static_cast<double>(v)));
      if (std::ceil(v) != v) int_mode_ = false;
    }
    const bool wide_range = hi / lo > 1000.0 || hi > 1.0e8;
    sci_mode_ = wide_range || (!int_mode_ && lo < 1.0e-4);
    // Only nonzero finite values set the width, as in PyTorch; a wider "inf" or "-0."
    // simply overflows its column.
    for (T v : nonzero) max_width_ = std::max(max_width_, unpadded(v).size());
  }

  std::string unpadded(T value) const {
    if constexpr (std::is_same_v<T, bool>) {
      return value ? "True" : "False";
    } else if constexpr (std::is_integral_v<T>) {
      return integer_chars(value);
    } else {
      // Python formats the value as a double: the float's exact value, not its digits.
      const double v = static_cast<double>(value);
      if (!std::isfinite(v)) return nonfinite_chars(v);
      if (sci_mode_) return rounded_chars(v, std::chars_format::scientific, torch_precision);
      if (int_mode_) return rounded_chars(v, std::chars_format::fixed, 0) + '.';
      return rounded_chars(v, std::chars_format::fixed, torch_precision);
    }
  }

  bool int_mode_ = true;
  bool sci_mode_ = false;
  std::size_t max_width_ = 1;
};

/// The dtype a repr names: torch_dtype_name's for the floating types and bool, and the
/// integer types' names by size.
template <class T>
std::string torch_print_dtype() {
  static_assert(!std::is_same_v<T, long double>, "qkv: PyTorch has no long double dtype");
  if constexpr (is_floating_v<T> || std::is_same_v<T, bool>) return torch_dtype_name<T>();
  // Unsigned types wider than a byte have no PyTorch 1.13 dtype; these are the names
  // later releases gave them.
  else return std::string(std::is_signed_v<T> ? "torch.int" : "torch.uint") +
              std::to_string(8 * sizeof(T));
}

/// Dtypes PyTorch leaves unsaid in a non-empty tensor's repr.
template <class T>
inline constexpr bool torch_dtype_is_implied =
    std::is_same_v<T, float> || std::is_same_v<T, bool> ||
    (std::is_integral_v<T> && std::is_signed_v<T> && sizeof(T) == 8);

template <class T>
std::string torch_vector_str(TensorView<const T> t, Index indent, bool summarize,
                             const TorchFormatter<T>& formatter) {
  std::vector<std::string> items;
  for_each_shown_index(
      t.size(0), summarize, [&](Index i) { items.push_back(formatter.format(t(i))); },
      [&] { items.push_back(" ..."); });
  const Index room = static_cast<Index>(torch_linewidth) - indent;
  const Index per_line = std::max<Index>(1, room / static_cast<Index>(formatter.width() + 2));

  std::string s = "[";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0)
      s += i % static_cast<std::size_t>(per_line) == 0 ? ",\n" + repeat(' ', indent + 1) : ", ";
    s += items[i];
  }
  return s + "]";
}

template <class T>
std::string torch_nested_str(TensorView<const T> t, Index indent, bool summarize,
                             const TorchFormatter<T>& formatter) {
  if (t.rank() == 0) return formatter.format(*t.data());
  if (t.rank() == 1) return torch_vector_str(t, indent, summarize, formatter);
  // Blocks of rank >= 3 are set apart by rank - 2 blank lines.
  const std::string separator = "," + repeat('\n', t.rank() - 1) + repeat(' ', indent + 1);
  std::string s = "[";
  bool first = true;
  const auto append = [&](const std::string& slice) {
    s += (first ? "" : separator) + slice;
    first = false;
  };
  for_each_shown_index(
      t.size(0), summarize,
      [&](Index i) { append(torch_nested_str(t[i], indent + 1, summarize, formatter)); },
      [&] { append("..."); });
  return s + "]";
}

/// Appends ", suffix" or, past the line width, ",\n<indent>suffix", then ")".
inline std::string torch_add_suffixes(std::string text, const std::vector<std::string>& suffixes,
                                      std::size_t indent) {
  // PyTorch's measure of the last line (len - rfind("\n") + 1) counts two characters
  // more than the line holds; copying it keeps the wrapping point identical.
  const auto newline = text.rfind('\n');
  std::size_t last_line =
      newline == std::string::npos ? text.size() + 2 : text.size() - newline + 1;
  for (const std::string& suffix : suffixes) {
    if (last_line + suffix.size() + 2 > torch_linewidth) {
      text += ",\n" + std::string(indent, ' ') + suffix;
      last_line = indent + suffix.size();
    } else {
      text += ", " + suffix;
      last_line += suffix.size() + 2;
    }
  }
  return text + ")";
}

// ----------------------------------------------------------------------------------------
// NumPy: numpy/core/arrayprint.py, with the defaults precision=8, floatmode='maxprec',
// suppress=False, sign='-', linewidth=75.

inline constexpr int numpy_precision = 8;
inline constexpr Index numpy_linewidth = 75;

/// A decimal string such as "-1.5e+05" cut into "-1", "5" and "+05"; any may be empty.
struct DecimalParts {
  std::string integer, fraction, exponent;

  explicit DecimalParts(const std::string& s) {
    const auto e = s.find('e');
    const std::string mantissa = s.substr(0, e);
    if (e != std::string::npos) exponent = s.substr(e + 1);
    const auto point = mantissa.find('.');
    integer = mantissa.substr(0, point);
    if (point != std::string::npos) fraction = mantissa.substr(point + 1);
  }
};

/// NumPy's dragon4 with unique=True and precision=8: the shortest round-trip digits, or
/// the value rounded to 8 digits after the point when the shortest form needs more;
/// trailing zeros then go but the point stays ("1.", "0.0120713").
template <class T>
DecimalParts numpy_capped_digits(T x, std::chars_format format) {
  DecimalParts parts(shortest_chars(x, format));
  if (parts.fraction.size() > static_cast<std::size_t>(numpy_precision)) {
    parts = DecimalParts(rounded_chars(x, format, numpy_precision));
    parts.fraction.erase(parts.fraction.find_last_not_of('0') + 1);
  }
  return parts;
}

/// One notation and one set of paddings for a whole array, chosen from the values shown,
/// as numpy.core.arrayprint.FloatingFormat.
template <class T>
class NumpyFloatFormatter {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, half>,
                "qkv: numpy_repr and numpy_str print float, double and half arrays");

 public:
  explicit NumpyFloatFormatter(const std::vector<T>& values) {
    std::vector<T> finite;
    for (T v : values)
      if (std::isfinite(v)) finite.push_back(v);
    exp_format_ = needs_exp_format(finite);
    if (exp_format_) fill_exponential(finite);
    else if (!finite.empty()) fill_positional(finite);
    if (finite.size() != values.size()) widen_for_nonfinite(values);
  }

  std::string operator()(T x) const {
    if (!std::isfinite(x)) return pad_left(nonfinite_chars(x), pad_left_ + pad_right_ + 1);
    return exp_format_ ? exponential(x) : positional(x);
  }

 private:
  static bool needs_exp_format(const std::vector<T>& finite) {
    T lo = std::numeric_limits<T>::infinity(), hi = T(0);
    for (T v : finite)
      if (v != T(0)) {
        const T magnitude = v < T(0) ? T(-v) : v;
        if (magnitude < lo) lo = magnitude;
        if (hi < magnitude) hi = magnitude;
      }
    if (hi == T(0)) return false;
    // The ratio is taken in the array's own type (a float32 quotient may overflow to
    // inf, a float16 one is rounded to float16), the bounds are compared as doubles, as
    // NumPy does. (No float16 lies between 1e-4 and float16(1e-4), where the two
    // comparisons could differ.)
    const T ratio = T(hi / lo);
    return static_cast<double>(hi) >= 1.0e8 || static_cast<double>(lo) < 1.0e-4 || ratio > T(1000);
  }

  void fill_positional(const std::vector<T>& finite) {
    for (T v : finite) {
      const DecimalParts parts = numpy_capped_digits(v, std::chars_format::fixed);
      pad_left_ = std::max(pad_left_, parts.integer.size());
      pad_right_ = std::max(pad_right_, parts.fraction.size());
    }
  }

  void fill_exponential(const std::vector<T>& finite) {
    std::size_t fraction = 0, exponent = 0;
    for (T v : finite) {
      const DecimalParts parts = numpy_capped_digits(v, std::chars_format::scientific);
      pad_left_ = std::max(pad_left_, parts.integer.size());
      fraction = std::max(fraction, parts.fraction.size());
      exponent = std::max(exponent, parts.exponent.size() - 1);  // less its sign
    }
    precision_ = static_cast<int>(fraction);
    exp_digits_ = exponent;
    pad_right_ = exp_digits_ + 2 + fraction;  // only "nan" and "inf" are padded with it
  }

  void widen_for_nonfinite(const std::vector<T>& values) {
    const bool neg_inf = std::any_of(values.begin(), values.end(),
                                     [](T v) { return std::isinf(v) && v < T(0); });
    const std::size_t longest = neg_inf ? 4 : 3;  // "-inf" or "nan" / "inf"
    const std::size_t taken = pad_right_ + 1;     // the fraction and its point
    if (longest > taken) pad_left_ = std::max(pad_left_, longest - taken);
  }

  std::string positional(T x) const {
    const DecimalParts parts = numpy_capped_digits(x, std::chars_format::fixed);
    return pad_left(parts.integer, pad_left_) + '.' + parts.fraction +
           std::string(pad_right_ - parts.fraction.size(), ' ');
  }

  // Every element gets the same number of mantissa digits; an element whose shortest
  // form is shorter shows its exact value to that many digits, not zeros. One whose
  // shortest form has that many keeps it: the half 0.015625 is "1.563e-02" (1.562e-02
  // would read back as its lower neighbour), not the exact value's "1.562e-02".
  std::string exponential(T x) const {
    DecimalParts parts = numpy_capped_digits(x, std::chars_format::scientific);
    if (parts.fraction.size() < static_cast<std::size_t>(precision_))
      parts = DecimalParts(rounded_chars(x, std::chars_format::scientific, precision_));
    const char sign = parts.exponent[0];
    const std::string digits = parts.exponent.substr(1);
    return pad_left(parts.integer, pad_left_) + '.' + parts.fraction + 'e' + sign +
           std::string(exp_digits_ > digits.size() ? exp_digits_ - digits.size() : 0, '0') +
           digits;
  }

  bool exp_format_ = false;
  int precision_ = numpy_precision;
  std::size_t exp_digits_ = 2;
  std::size_t pad_left_ = 0;
  std::size_t pad_right_ = 0;
};

/// Python's str of a NumPy float scalar, which is what str() of a rank-0 array prints:
/// the shortest round-trip digits, positional from 1e-4 up to 1e16.
template <class T>
std::string numpy_scalar_str(T x) {
  if (!std::isfinite(x)) return nonfinite_chars(x);
  const double magnitude = std::abs(static_cast<double>(x));
  if (magnitude == 0 || (magnitude >= 1.0e-4 && magnitude < 1.0e16)) {
    std::string s = shortest_fixed_chars(x);
    return s.find('.') == std::string::npos ? s + ".0" : s;
  }
  return shortest_chars(x, std::chars_format::scientific);
}

/// numpy.core.arrayprint._formatArray: nested brackets with a hanging indent; rows wrap
/// at the line width, outer dimensions are separated by rank - 1 newlines.
template <class T>
class NumpyArrayLayout {
 public:
  NumpyArrayLayout(const NumpyFloatFormatter<T>& formatter, std::string separator, bool summarize)
      : formatter_(formatter), separator_(std::move(separator)), summarize_(summarize) {}

  std::string format(TensorView<const T> a, const std::string& hanging_indent, Index width) const {
    if (a.rank() == 0) return formatter_(*a.data());
    const std::string body =
        a.rank() == 1 ? row(a, hanging_indent, width) : block(a, hanging_indent, width);
    return "[" + body.substr(hanging_indent.size()) + "]";
  }

 private:
  std::string row(TensorView<const T> a, const std::string& hanging_indent, Index width) const {
    // Room for the separator's comma or the closing bracket after each element.
    const Index element_width = width - 1;
    const Index last = a.size(0) - 1;
    std::string s, line = hanging_indent;
    for_each_shown_index(
        a.size(0), summarize_,
        [&](Index i) {
          extend_line(s, line, formatter_(a(i)), element_width, hanging_indent);
          if (i != last) line += separator_;
        },
        [&] {
          extend_line(s, line, "...", element_width, hanging_indent);
          line += separator_;
        });
    return s + line;
  }

  std::string block(TensorView<const T> a, const std::string& hanging_indent, Index width) const {
    const std::string line_sep = rstrip(separator_) + repeat('\n', a.rank() - 1);
    const Index last = a.size(0) - 1;
    std::string s;
    for_each_shown_index(
        a.size(0), summarize_,
        [&](Index i) {
          s += hanging_indent + format(a[i], hanging_indent + ' ', width - 1);
          if (i != last) s += line_sep;
        },
        [&] { s += hanging_indent + "..." + line_sep; });
    return s;
  }

  // A word goes on a new line when it would pass the width, unless the line holds only
  // the indent, where wrapping could not help.
  static void extend_line(std::string& s, std::string& line, const std::string& word, Index width,
                          const std::string& indent) {
    const Index length = static_cast<Index>(line.size() + word.size());
    if (length > width && line.size() > indent.size()) {
      s += rstrip(line) + '\n';
      line = indent;
    }
    line += word;
  }

  const NumpyFloatFormatter<T>& formatter_;
  std::string separator_;
  bool summarize_;
};

/// numpy.array2string; `prefix_length` is the length of "array(" for a repr, 0 for str.
template <class T>
std::string numpy_array2string(TensorView<const T> a, Index line_width,
                               const std::string& separator, std::size_t prefix_length) {
  if (a.numel() == 0) return "[]";
  const bool summarize = a.numel() > print_threshold;
  const NumpyFloatFormatter<T> formatter(shown_values(a, summarize));
  const NumpyArrayLayout<T> layout(formatter, separator, summarize);
  return layout.format(a, std::string(1 + prefix_length, ' '), line_width);
}

/// The bracketed elements of a non-empty tensor. PyTorch prints float16 and bfloat16
/// tensors through .float(): their exact values, formatted as float32's are.
template <class T>
std::string torch_tensor_str(TensorView<const T> t, Index indent) {
  if constexpr (is_half_v<T>) {
    const Tensor<float> widened = to<float>(t);
    return torch_tensor_str(widened.view(), indent);
  } else {
    const bool summarize = t.numel() > print_threshold;
    const TorchFormatter<T> formatter(shown_values(t, summarize));
    return torch_nested_str(t, indent, summarize, formatter);
  }
}

template <class T>
std::string torch_repr_impl(TensorView<const T> t) {
  const std::string prefix = "tensor(";
  const Index indent = static_cast<Index>(prefix.size());
  std::vector<std::string> suffixes;
  std::string body = "[]";
  if (t.numel() == 0) {
    // An empty tensor shows its shape unless it is (0,), and any dtype but the default.
    if (t.rank() != 1) suffixes.push_back("size=" + python_tuple(t.shape()));
    if (!std::is_same_v<T, float>) suffixes.push_back("dtype=" + torch_print_dtype<T>());
  } else {
    if (!torch_dtype_is_implied<T>) suffixes.push_back("dtype=" + torch_print_dtype<T>());
    body = torch_tensor_str(t, indent);
  }
  return torch_add_suffixes(prefix + body, suffixes, prefix.size());
}

/// NumPy's name of T's dtype.
template <class T>
const char* numpy_dtype_name() noexcept {
  if constexpr (std::is_same_v<T, half>) return "float16";
  else if constexpr (std::is_same_v<T, float>) return "float32";
  else return "float64";
}

/// NumPy has no bfloat16 dtype: numpy_repr and numpy_str refuse it rather than print the
/// array as some other dtype.
inline std::invalid_argument numpy_has_no_bfloat16(const char* fn, const Shape& shape) {
  return std::invalid_argument(std::string(fn) + ": NumPy has no bfloat16 dtype (Tensor<bfloat16> of shape " +
                               shape.str() + "); print qkv::to<float>(x), which holds the same values");
}

template <class T>
std::string numpy_repr_text(TensorView<const T> a) {
  const std::string prefix = "array(";
  const bool show_dtype = !std::is_same_v<T, double> || a.numel() == 0;
  // NumPy narrows the line by the ")" or "," that will follow the elements.
  const std::string suffix = show_dtype ? "," : ")";
  const std::string elements =
      a.numel() > 0 || a.rank() == 1
          ? numpy_array2string(a, numpy_linewidth - static_cast<Index>(suffix.size()), ", ",
                               prefix.size())
          : "[], shape=" + python_tuple(a.shape());
  const std::string text = prefix + elements + suffix;
  if (!show_dtype) return text;

  const std::string dtype = std::string("dtype=") + numpy_dtype_name<T>() + ")";
  const auto newline = text.rfind('\n');
  const std::size_t last_line =
      newline == std::string::npos ? text.size() : text.size() - newline - 1;
  const bool wrap = static_cast<Index>(last_line + dtype.size() + 1) > numpy_linewidth;
  return text + (wrap ? "\n" + std::string(prefix.size(), ' ') : " ") + dtype;
}

template <class T>
std::string numpy_repr_impl(TensorView<const T> a) {
  if constexpr (std::is_same_v<T, bfloat16>) throw numpy_has_no_bfloat16("qkv::numpy_repr", a.shape());
  else return numpy_repr_text(a);
}

template <class T>
std::string numpy_str_impl(TensorView<const T> a) {
  if constexpr (std::is_same_v<T, bfloat16>) {
    throw numpy_has_no_bfloat16("qkv::numpy_str", a.shape());
  } else {
    if (a.rank() == 0) return numpy_scalar_str(*a.data());
    return numpy_array2string(a, numpy_linewidth, " ", 0);
  }
}

}  // namespace detail

/// What PyTorch 1.13 prints for repr(tensor) / print(tensor) with the default print options:
/// 4 decimals (or "1." when every value is integral, or scientific notation when the
/// magnitudes span more than 1000x), rows wrapped at 80 columns, tensors of more than 1000
/// elements summarized with "...", and a ", dtype=torch.float64" suffix for double
/// (torch.bfloat16, torch.float16 for the 16-bit types, whose values print as floats do).
/// \code
/// qkv::torch_repr(qkv::Tensor<float>{0.9544f, 1.4950f})  // "tensor([0.9544, 1.4950])"
/// \endcode
template <class T>
std::string torch_repr(TensorView<const T> t) {
  return detail::torch_repr_impl(t);
}
template <class T>
std::string torch_repr(TensorView<T> t) {
  return detail::torch_repr_impl(TensorView<const T>(t));
}
/// torch_repr of a tensor; see torch_repr(TensorView<const T>).
template <class T>
std::string torch_repr(const Tensor<T>& t) {
  return detail::torch_repr_impl(t.view());
}

/// What NumPy 1.24 prints for repr(array) of a float32, float64 or float16 (qkv::half)
/// array: up to 8 decimals, the fewest that round-trip in the array's dtype, aligned on the
/// point, in "array([...])" wrapped at 75 columns. NumPy has no bfloat16: a bfloat16
/// tensor throws std::invalid_argument (print qkv::to<float>(x) instead).
/// \code
/// qkv::numpy_repr(qkv::Tensor<double>{1.5, -0.25})  // "array([ 1.5 , -0.25])"
/// \endcode
template <class T>
std::string numpy_repr(TensorView<const T> a) {
  return detail::numpy_repr_impl(a);
}
template <class T>
std::string numpy_repr(TensorView<T> a) {
  return detail::numpy_repr_impl(TensorView<const T>(a));
}
/// numpy_repr of a tensor; see numpy_repr(TensorView<const T>).
template <class T>
std::string numpy_repr(const Tensor<T>& a) {
  return detail::numpy_repr_impl(a.view());
}

/// What NumPy 1.24 prints for str(array) / print(array): the elements of numpy_repr
/// separated by spaces, without "array(" and the dtype. bfloat16 throws, as numpy_repr.
template <class T>
std::string numpy_str(TensorView<const T> a) {
  return detail::numpy_str_impl(a);
}
template <class T>
std::string numpy_str(TensorView<T> a) {
  return detail::numpy_str_impl(TensorView<const T>(a));
}
/// numpy_str of a tensor; see numpy_str(TensorView<const T>).
template <class T>
std::string numpy_str(const Tensor<T>& a) {
  return detail::numpy_str_impl(a.view());
}

/// Streams torch_repr(t), so that `std::cout << t` looks like print(t) in Python.
template <class T>
std::ostream& operator<<(std::ostream& os, const Tensor<T>& t) {
  return os << torch_repr(t);
}
/// Streams torch_repr(t) of a view, as for a tensor.
template <class T>
std::ostream& operator<<(std::ostream& os, TensorView<T> t) {
  return os << torch_repr(t);
}

}  // namespace qkv
