// SPDX-License-Identifier: MIT
// Tests for qkv/half.hpp: qkv::bfloat16 and qkv::half against references written here from
// the formats' definitions with integer arithmetic: every bit pattern decodes to its exact
// value and round-trips through float; float rounds to nearest even at every tie between
// two 16-bit neighbours, just below and above it, past the largest finite value, into the
// subnormals and from float subnormals; NaN stays NaN. Also qkv::to on strided views, and
// the traits.
#include <qkv/half.hpp>
#include <qkv/tensor.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>

namespace {

using qkv::Index;
using qkv::Shape;
using qkv::Tensor;
using qkv::TensorView;

// ---------------------------------------------------------------------------------------
// The two formats, as the IEEE-style definition gives them: a sign bit, an exponent field
// of width `exponent_bits`, a fraction of `fraction_bits`; a normal value is
// (2^fraction_bits + fraction) * 2^(field - bias - fraction_bits), a subnormal one
// fraction * 2^(1 - bias - fraction_bits).

struct Format {
  const char* name;
  int exponent_bits, fraction_bits, bias;

  int max_field() const { return (1 << exponent_bits) - 1; }
  int quantum_exponent(int field) const { return (field == 0 ? 1 : field) - bias - fraction_bits; }
  std::uint32_t implicit() const { return std::uint32_t(1) << fraction_bits; }
};
constexpr Format binary16{"half", 5, 10, 15};
constexpr Format bfloat16_format{"bfloat16", 8, 7, 127};
constexpr Format binary32{"float", 8, 23, 127};

template <class H>
constexpr const Format& format_of() {
  if constexpr (std::is_same_v<H, qkv::half>) return binary16;
  else return bfloat16_format;
}

std::uint32_t float_bits(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}
float bits_float(std::uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}
template <class H>
std::uint16_t bits16(H h) { return Eigen::numext::bit_cast<std::uint16_t>(h); }
template <class H>
H from_bits16(std::uint32_t b) { return Eigen::numext::bit_cast<H>(static_cast<std::uint16_t>(b)); }

// The value of a 16-bit pattern, from the definition (exact in double, and in float).
double decode(const Format& f, std::uint32_t bits) {
  const bool negative = (bits >> (f.exponent_bits + f.fraction_bits)) & 1;
  const int field = static_cast<int>((bits >> f.fraction_bits) & static_cast<std::uint32_t>(f.max_field()));
  const std::uint32_t fraction = bits & (f.implicit() - 1);
  double magnitude;
  if (field == f.max_field()) magnitude = fraction ? std::numeric_limits<double>::quiet_NaN()
                                                   : std::numeric_limits<double>::infinity();
  else magnitude = std::ldexp(static_cast<double>(field ? f.implicit() + fraction : fraction), f.quantum_exponent(field));
  return negative ? -magnitude : magnitude;
}

// The 16-bit pattern nearest a finite float, ties to the even pattern, ±inf past the
// largest finite value: the float's exact value is m * 2^e with integers m, e; the result
// is q * 2^k, k the quantum of the binade the float lies in (never below the subnormals'),
// q = m * 2^(e - k) rounded to nearest even by the bits shifted out.
std::uint32_t round_to(const Format& f, float x) {
  const std::uint32_t xb = float_bits(x);
  const std::uint32_t sign = (xb >> 31) << (f.exponent_bits + f.fraction_bits);
  const int xfield = static_cast<int>((xb >> 23) & 0xff);
  const std::uint64_t m = (xb & 0x7fffff) | (xfield ? 0x800000u : 0u);
  const int e = binary32.quantum_exponent(xfield);
  if (m == 0) return sign;
  int top = 63;
  while (!((m >> top) & 1)) --top;
  const int binade = e + top;  // 2^binade <= |x| < 2^(binade + 1)
  const int min_quantum = f.quantum_exponent(0);
  const int k = std::max(binade - f.fraction_bits, min_quantum);
  std::uint64_t q;
  if (e >= k) {
    q = m << (e - k);
  } else {
    const int shift = k - e;
    if (shift > 40) {
      q = 0;  // far below half the smallest subnormal
    } else {
      q = m >> shift;
      const std::uint64_t rest = m & ((std::uint64_t(1) << shift) - 1), half_way = std::uint64_t(1) << (shift - 1);
      if (rest > half_way || (rest == half_way && (q & 1))) ++q;
    }
  }
  if (q == 0) return sign;
  // q * 2^k back into fields; rounding up may have carried into the next binade.
  int kk = k;
  if (q >= (std::uint64_t(2) << f.fraction_bits)) {
    q >>= 1;  // q was 2^(fraction_bits + 1): exact
    ++kk;
  }
  if (q < f.implicit()) return sign | static_cast<std::uint32_t>(q);  // subnormal (kk is the minimum)
  const int field = kk + f.bias + f.fraction_bits;
  if (field >= f.max_field()) return sign | (static_cast<std::uint32_t>(f.max_field()) << f.fraction_bits);
  return sign | (static_cast<std::uint32_t>(field) << f.fraction_bits) | static_cast<std::uint32_t>(q - f.implicit());
}

bool is_nan16(const Format& f, std::uint32_t bits) { return std::isnan(decode(f, bits)); }

template <class H>
::testing::AssertionResult RoundsAsReference(float x) {
  const Format& f = format_of<H>();
  const std::uint32_t expected = round_to(f, x);
  const std::uint32_t actual = bits16(static_cast<H>(x));
  if (actual == expected) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << f.name << "(float bits 0x" << std::hex << float_bits(x) << " = "
                                       << std::hexfloat << x << ") gave 0x" << actual << ", expected 0x"
                                       << expected;
}

template <class H>
class Half16 : public ::testing::Test {};
using HalfTypes = ::testing::Types<qkv::bfloat16, qkv::half>;
struct HalfTypeNames {
  template <class T>
  static std::string GetName(int) { return qkv::detail::type_name<T>(); }
};
TYPED_TEST_SUITE(Half16, HalfTypes, HalfTypeNames);

// ---------------------------------------------------------------------------------------
// 16 bits -> float -> 16 bits

TYPED_TEST(Half16, EveryBitPatternDecodesExactlyAndRoundTrips) {
  using H = TypeParam;
  const Format& f = format_of<H>();
  int nans = 0, infinities = 0, subnormals = 0;
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const H h = from_bits16<H>(b);
    const float wide = static_cast<float>(h);
    const double exact = decode(f, b);
    if (std::isnan(exact)) {
      ++nans;
      ASSERT_TRUE(std::isnan(wide)) << std::hex << b;
      ASSERT_TRUE(is_nan16(f, bits16(static_cast<H>(wide)))) << std::hex << b;  // NaN stays NaN
      continue;
    }
    ASSERT_EQ(static_cast<double>(wide), exact) << std::hex << b;
    ASSERT_EQ(std::signbit(wide), b >= 0x8000) << std::hex << b;  // -0 stays -0
    ASSERT_EQ(bits16(static_cast<H>(wide)), b) << std::hex << b;
    infinities += std::isinf(wide);
    subnormals += wide != 0 && std::abs(wide) < std::ldexp(1.0f, 1 - f.bias);
  }
  EXPECT_EQ(infinities, 2);
  EXPECT_EQ(nans, 2 * static_cast<int>(f.implicit() - 1));
  EXPECT_EQ(subnormals, 2 * static_cast<int>(f.implicit() - 1));
}

TYPED_TEST(Half16, BFloat16IsTheTopHalfOfAFloat) {
  using H = TypeParam;
  if constexpr (std::is_same_v<H, qkv::bfloat16>) {
    for (std::uint32_t b = 0; b < 65536; ++b) {
      const float wide = static_cast<float>(from_bits16<H>(b));
      if (!is_nan16(bfloat16_format, b)) {
        ASSERT_EQ(float_bits(wide), b << 16) << std::hex << b;
      }
    }
  } else {
    // binary16's one and largest finite value by the definition.
    EXPECT_EQ(static_cast<float>(from_bits16<H>(0x3c00)), 1.0f);
    EXPECT_EQ(static_cast<float>(from_bits16<H>(0x7bff)), 65504.0f);
    EXPECT_EQ(static_cast<float>(from_bits16<H>(0x0001)), std::ldexp(1.0f, -24));
  }
}

// ---------------------------------------------------------------------------------------
// float -> 16 bits

TYPED_TEST(Half16, RoundsToNearestEvenAtEveryTieAndBesideIt) {
  using H = TypeParam;
  const Format& f = format_of<H>();
  // For each pair of neighbouring finite values: the midpoint (a tie), the floats just
  // below and above it, and the neighbours themselves; both signs.
  int ties_up = 0, ties_down = 0;
  for (std::uint32_t b = 0; b < 0x7fffu; ++b) {
    const double lo = decode(f, b), hi = decode(f, b + 1);
    if (std::isnan(lo) || std::isnan(hi)) continue;
    const double mid_exact = std::isinf(hi) ? lo + (lo - decode(f, b - 1)) / 2 : (lo + hi) / 2;
    const float mid = static_cast<float>(mid_exact);
    ASSERT_EQ(static_cast<double>(mid), mid_exact) << "midpoints are floats";
    for (const float x : {static_cast<float>(lo), static_cast<float>(hi), std::nextafter(mid, 0.0f), mid,
                          std::nextafter(mid, std::numeric_limits<float>::infinity())}) {
      ASSERT_TRUE(RoundsAsReference<H>(x));
      ASSERT_TRUE(RoundsAsReference<H>(-x));
    }
    // The tie goes to the even pattern, which is b or b + 1 by turns.
    const std::uint32_t at_tie = bits16(static_cast<H>(mid));
    ASSERT_EQ(at_tie % 2, 0u) << std::hex << b;
    (at_tie == b ? ties_down : ties_up)++;
    // Just off the tie, the nearer neighbour (past the largest finite value, infinity).
    ASSERT_EQ(bits16(static_cast<H>(std::nextafter(mid, 0.0f))), b) << std::hex << b;
    ASSERT_EQ(bits16(static_cast<H>(std::nextafter(mid, std::numeric_limits<float>::infinity()))), b + 1)
        << std::hex << b;
  }
  EXPECT_GT(ties_up, 1000);
  EXPECT_GT(ties_down, 1000);
}

TYPED_TEST(Half16, RoundsRandomFloatsAsTheReference) {
  using H = TypeParam;
  std::mt19937 bits(15);
  for (int i = 0; i < 1000000; ++i) {
    const float x = bits_float(static_cast<std::uint32_t>(bits()));
    if (std::isnan(x)) continue;
    ASSERT_TRUE(RoundsAsReference<H>(x));
  }
}

TYPED_TEST(Half16, FloatSubnormalInputs) {
  using H = TypeParam;
  const Format& f = format_of<H>();
  for (std::uint32_t m = 1; m < 0x800000; m = m * 3 + 1) {
    for (std::uint32_t b : {m, m | 0x80000000u}) ASSERT_TRUE(RoundsAsReference<H>(bits_float(b)));
  }
  const float tiny = std::numeric_limits<float>::denorm_min();
  if (std::is_same_v<H, qkv::half>) {
    // Far below half's smallest subnormal: signed zeros.
    EXPECT_EQ(bits16(static_cast<H>(tiny)), 0x0000u);
    EXPECT_EQ(bits16(static_cast<H>(-tiny)), 0x8000u);
    EXPECT_EQ(bits16(static_cast<H>(std::numeric_limits<float>::min())), 0x0000u);
  } else {
    // bfloat16 has float's exponent range: float subnormals round to bfloat16 subnormals,
    // 16 float quanta apart (2^-133). 0x8000 float quanta is a tie between 0 and 1.
    EXPECT_EQ(bits16(static_cast<H>(bits_float(0x00008000u))), 0x0000u);
    EXPECT_EQ(bits16(static_cast<H>(bits_float(0x00008001u))), 0x0001u);
    EXPECT_EQ(bits16(static_cast<H>(bits_float(0x00018000u))), 0x0002u);  // tie 1|2: even
    EXPECT_EQ(bits16(static_cast<H>(bits_float(0x80010000u))), 0x8001u);
    EXPECT_EQ(decode(f, 0x0001), std::ldexp(1.0, -133));
  }
}

TYPED_TEST(Half16, OverflowsToInfinity) {
  using H = TypeParam;
  const float inf = std::numeric_limits<float>::infinity();
  const std::uint32_t pos_inf = std::is_same_v<H, qkv::half> ? 0x7c00u : 0x7f80u;
  if (std::is_same_v<H, qkv::half>) {
    // 65504 is the largest half; 65520 is the tie with 65536 (odd 0x7bff vs even "0x7c00").
    EXPECT_EQ(bits16(static_cast<H>(65504.0f)), 0x7bffu);
    EXPECT_EQ(bits16(static_cast<H>(65519.99f)), 0x7bffu);
    EXPECT_EQ(bits16(static_cast<H>(std::nextafter(65520.0f, 0.0f))), 0x7bffu);
    EXPECT_EQ(bits16(static_cast<H>(65520.0f)), pos_inf);
    EXPECT_EQ(bits16(static_cast<H>(-65520.0f)), pos_inf | 0x8000u);
    EXPECT_EQ(bits16(static_cast<H>(1e6f)), pos_inf);
  } else {
    // bfloat16's largest is 0x7f7f (float 0x7f7f0000); the tie with 2^128 is float
    // 0x7f7f8000, below FLT_MAX (0x7f7fffff).
    EXPECT_EQ(bits16(static_cast<H>(bits_float(0x7f7f7fffu))), 0x7f7fu);
    EXPECT_EQ(bits16(static_cast<H>(bits_float(0x7f7f8000u))), pos_inf);
    EXPECT_EQ(bits16(static_cast<H>(std::numeric_limits<float>::max())), pos_inf);
    EXPECT_EQ(bits16(static_cast<H>(std::numeric_limits<float>::lowest())), pos_inf | 0x8000u);
    EXPECT_EQ(bits16(static_cast<H>(bits_float(0x7f7e8000u))), 0x7f7eu);  // tie, even below
  }
  EXPECT_EQ(bits16(static_cast<H>(inf)), pos_inf);
  EXPECT_EQ(bits16(static_cast<H>(-inf)), pos_inf | 0x8000u);
  EXPECT_TRUE(RoundsAsReference<H>(std::numeric_limits<float>::max()));
}

TYPED_TEST(Half16, NaNStaysNaN) {
  using H = TypeParam;
  const Format& f = format_of<H>();
  // Quiet and signalling NaNs of both signs, with payloads only in the low bits (which a
  // plain truncation would turn into infinity) or only in the high ones.
  for (std::uint32_t b : {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fa00000u, 0x7fffffffu,
                          0x7f80ffffu, 0x7fc00001u}) {
    const float x = bits_float(b);
    ASSERT_TRUE(std::isnan(x));
    const std::uint32_t r = bits16(static_cast<H>(x));
    EXPECT_TRUE(is_nan16(f, r)) << std::hex << b << " -> " << r;
    EXPECT_TRUE(std::isnan(static_cast<float>(static_cast<H>(x)))) << std::hex << b;
  }
  EXPECT_TRUE(std::isnan(static_cast<float>(std::numeric_limits<H>::quiet_NaN())));
}

TEST(HalfRounding, SubnormalResults) {
  using qkv::half;
  const float q = std::ldexp(1.0f, -24);  // half's smallest subnormal
  EXPECT_EQ(bits16(static_cast<half>(q)), 0x0001u);
  EXPECT_EQ(bits16(static_cast<half>(q / 2)), 0x0000u);                          // tie 0|1: even
  EXPECT_EQ(bits16(static_cast<half>(std::nextafter(q / 2, 1.0f))), 0x0001u);   // just above
  EXPECT_EQ(bits16(static_cast<half>(-q / 2)), 0x8000u);                         // -0
  EXPECT_EQ(bits16(static_cast<half>(1.5f * q)), 0x0002u);                       // tie 1|2: even
  EXPECT_EQ(bits16(static_cast<half>(2.5f * q)), 0x0002u);                       // tie 2|3: even
  EXPECT_EQ(bits16(static_cast<half>(std::nextafter(2.5f * q, 1.0f))), 0x0003u);
  EXPECT_EQ(bits16(static_cast<half>(1023 * q)), 0x03ffu);                       // largest subnormal
  EXPECT_EQ(bits16(static_cast<half>(1023.5f * q)), 0x0400u);                    // tie up to 2^-14
  EXPECT_EQ(bits16(static_cast<half>(std::ldexp(1.0f, -14))), 0x0400u);          // smallest normal
  for (float x : {q, q / 2, 1.5f * q, 1023.5f * q, 0.3f * q, 700.25f * q}) EXPECT_TRUE(RoundsAsReference<half>(x));
}

TEST(HalfRounding, TiesInNormalRange) {
  // 1 + 2^-11 lies halfway between half's 1 and 1 + 2^-10: even (1) wins; 1 + 3 * 2^-11
  // lies between 1 + 2^-10 (odd) and 1 + 2^-9 (even): up.
  EXPECT_EQ(bits16(static_cast<qkv::half>(1.0f + std::ldexp(1.0f, -11))), 0x3c00u);
  EXPECT_EQ(bits16(static_cast<qkv::half>(1.0f + 3 * std::ldexp(1.0f, -11))), 0x3c02u);
  // bfloat16: 1 + 2^-8 is halfway between 1 and 1 + 2^-7: 1; 1 + 3 * 2^-8: 1 + 2^-6.
  EXPECT_EQ(bits16(static_cast<qkv::bfloat16>(1.0f + std::ldexp(1.0f, -8))), 0x3f80u);
  EXPECT_EQ(bits16(static_cast<qkv::bfloat16>(1.0f + 3 * std::ldexp(1.0f, -8))), 0x3f82u);
  EXPECT_EQ(bits16(static_cast<qkv::bfloat16>(-(1.0f + 3 * std::ldexp(1.0f, -8)))), 0xbf82u);
}

// ---------------------------------------------------------------------------------------
// qkv::to on strided views

template <class U, class T>
::testing::AssertionResult ConvertsEveryElement(TensorView<const T> view) {
  const Tensor<U> out = qkv::to<U>(view);
  if (out.shape() != view.shape()) return ::testing::AssertionFailure() << "shape " << out.shape().str();
  Index i = 0, checked = 0;
  std::string failure;
  qkv::detail::for_each_offset(view.shape(), [&](Index offset) {
    const U expected = static_cast<U>(static_cast<qkv::detail::compute_t<T>>(view.data()[offset]));
    const U actual = out.data()[i];
    const bool same = std::memcmp(&expected, &actual, sizeof(U)) == 0 ||
                      (std::isnan(static_cast<double>(expected)) && std::isnan(static_cast<double>(actual)));
    if (!same && failure.empty()) failure = "element " + std::to_string(i) + " differs";
    ++i;
    ++checked;
  }, view.strides());
  if (!failure.empty()) return ::testing::AssertionFailure() << failure;
  if (checked != view.numel() || checked == 0) return ::testing::AssertionFailure() << checked << " elements";
  return ::testing::AssertionSuccess();
}

TEST(To, ConvertsEveryElementOfStridedViews) {
  std::mt19937 gen(7);
  std::normal_distribution<float> normal(0.0f, 100.0f);
  Tensor<float> x(Shape{3, 4, 5});
  for (float& v : x) v = normal(gen);
  const float specials[] = {std::numeric_limits<float>::infinity(), -0.0f, std::numeric_limits<float>::quiet_NaN(),
                            1e-30f, 65520.0f, -3e38f, std::numeric_limits<float>::denorm_min(), 1.0f + std::ldexp(1.0f, -11)};
  for (std::size_t i = 0; i < std::size(specials); ++i) x.data()[7 * i] = specials[i];

  const TensorView<const float> transposed = x.view().transpose(0, 2);  // (5, 4, 3)
  ASSERT_FALSE(transposed.is_contiguous());
  EXPECT_TRUE((ConvertsEveryElement<qkv::half, float>(transposed)));
  EXPECT_TRUE((ConvertsEveryElement<qkv::bfloat16, float>(transposed)));
  EXPECT_TRUE((ConvertsEveryElement<double, float>(transposed)));
  const TensorView<const float> permuted = x.view().permute({1, 2, 0}).narrow(1, 1, 3);
  EXPECT_TRUE((ConvertsEveryElement<qkv::half, float>(permuted)));
  EXPECT_TRUE((ConvertsEveryElement<qkv::bfloat16, float>(permuted)));

  // From the 16-bit types: to float exactly, and across to the other 16-bit type.
  const Tensor<qkv::half> h = qkv::to<qkv::half>(x);
  const Tensor<qkv::bfloat16> b = qkv::to<qkv::bfloat16>(x);
  EXPECT_TRUE((ConvertsEveryElement<float, qkv::half>(h.view().transpose(0, 1))));
  EXPECT_TRUE((ConvertsEveryElement<double, qkv::half>(h.view().transpose(0, 2))));
  EXPECT_TRUE((ConvertsEveryElement<qkv::bfloat16, qkv::half>(h.view().transpose(1, 2))));
  EXPECT_TRUE((ConvertsEveryElement<float, qkv::bfloat16>(b.view().transpose(0, 1))));
  EXPECT_TRUE((ConvertsEveryElement<qkv::half, qkv::bfloat16>(b.view().permute({2, 0, 1}))));

  // And each element of the transposed conversion is where the transposed element was.
  const Tensor<qkv::half> ht = qkv::to<qkv::half>(transposed);
  for (Index i = 0; i < 5; ++i)
    for (Index j = 0; j < 4; ++j)
      for (Index k = 0; k < 3; ++k) {
        if (std::isnan(x(k, j, i))) {  // specials[2]; the reference rounds non-NaN values
          ASSERT_TRUE(std::isnan(static_cast<float>(ht(i, j, k))));
          continue;
        }
        ASSERT_EQ(bits16(ht(i, j, k)), round_to(binary16, x(k, j, i))) << i << "," << j << "," << k;
      }
}

// ---------------------------------------------------------------------------------------
// Traits

static_assert(qkv::detail::is_half_v<qkv::bfloat16> && qkv::detail::is_half_v<qkv::half>);
static_assert(!qkv::detail::is_half_v<float> && !qkv::detail::is_half_v<double> && !qkv::detail::is_half_v<std::uint16_t>);
static_assert(qkv::detail::is_floating_v<qkv::half> && qkv::detail::is_floating_v<qkv::bfloat16> &&
              qkv::detail::is_floating_v<float> && qkv::detail::is_floating_v<double>);
static_assert(!qkv::detail::is_floating_v<int> && !qkv::detail::is_floating_v<bool>);
static_assert(qkv::detail::is_element_v<qkv::half> && qkv::detail::is_element_v<bool> &&
              !qkv::detail::is_element_v<std::string>);
static_assert(std::is_same_v<qkv::detail::compute_t<qkv::half>, float> &&
              std::is_same_v<qkv::detail::compute_t<qkv::bfloat16>, float> &&
              std::is_same_v<qkv::detail::compute_t<float>, float> &&
              std::is_same_v<qkv::detail::compute_t<double>, double>);
static_assert(std::string_view(qkv::detail::torch_dtype_name<qkv::bfloat16>()) == "torch.bfloat16");
static_assert(std::string_view(qkv::detail::torch_dtype_name<qkv::half>()) == "torch.float16");
static_assert(std::string_view(qkv::detail::torch_dtype_name<float>()) == "torch.float32");
static_assert(std::string_view(qkv::detail::torch_dtype_name<double>()) == "torch.float64");
static_assert(std::is_same_v<qkv::bfloat16, Eigen::bfloat16> && std::is_same_v<qkv::half, Eigen::half>);
static_assert(sizeof(qkv::half) == 2 && sizeof(qkv::bfloat16) == 2);

TEST(Traits, NamesAndTensorsOfTheHalfTypes) {
  EXPECT_EQ(std::string(qkv::detail::type_name<qkv::half>()), "half");
  EXPECT_EQ(std::string(qkv::detail::type_name<qkv::bfloat16>()), "bfloat16");
  EXPECT_EQ(std::string(qkv::detail::torch_dtype_name<bool>()), "torch.bool");
  // A Tensor of each holds its elements in 2 bytes each, zero-initialised to +0.
  const Tensor<qkv::bfloat16> b = Tensor<qkv::bfloat16>::zeros({2, 3});
  const Tensor<qkv::half> h = Tensor<qkv::half>::ones({4});
  EXPECT_EQ(bits16(b(1, 2)), 0x0000u);
  EXPECT_EQ(bits16(h(3)), 0x3c00u);
  EXPECT_EQ(reinterpret_cast<const char*>(b.data() + 1) - reinterpret_cast<const char*>(b.data()), 2);
}

}  // namespace
