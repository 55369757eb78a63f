// SPDX-License-Identifier: MIT
// qkv::RotaryEmbedding against the reference codes of both conventions written in PyTorch
// (tests/data/make_rope_cases.py) and a long-double formula written out per coordinate;
// position offsets, strided views, norms, relative positions, the permutation relating
// the two conventions, theta, and each error.
#include <qkv/ops.hpp>
#include <qkv/random.hpp>
#include <qkv/rope.hpp>
#include <qkv/tensor.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace {

using qkv::Index;
using qkv::RopeStyle;
using qkv::RotaryEmbedding;
using qkv::Shape;
using qkv::Tensor;
using qkv::TensorView;
using qkv::test::ThrowsWith;

struct RopeCase {
  RopeStyle style;
  unsigned seed;
  Shape shape;
  double theta;
  Index position_offset;
  std::vector<double> expected;
};

const std::vector<RopeCase> kRopeCases = {
#include "data/rope_cases.inc"
};

const char* style_name(RopeStyle style) { return style == RopeStyle::rotate_half ? "rotate_half" : "interleaved"; }

// Coordinate j of row `x` (head_dim d) rotated to `position`, written out for each
// convention as its reference code states it rather than as a loop over pairs:
// half (Hugging Face): x·cos(cat(f, f)) + rotate_half(x)·sin(cat(f, f)) with
//   rotate_half(x) = cat(-x[d/2:], x[:d/2]);
// interleaved (Meta): (x[2i] + i·x[2i+1]) · e^(i·angle_i), real and imaginary parts.
long double reference_coordinate(const std::vector<long double>& x, Index j, long double position,
                                  long double theta, RopeStyle style) {
  const Index d = static_cast<Index>(x.size()), half = d / 2;
  const auto at = [&](Index k) { return x[static_cast<std::size_t>(k)]; };
  const Index frequency_index = style == RopeStyle::rotate_half ? j % half : j / 2;
  const long double angle =
      position * std::pow(theta, -2.0L * static_cast<long double>(frequency_index) / static_cast<long double>(d));
  const long double c = std::cos(angle), s = std::sin(angle);
  if (style == RopeStyle::rotate_half) {
    const long double rotated_half = j < half ? -at(j + half) : at(j - half);
    return at(j) * c + rotated_half * s;
  }
  const long double re = j % 2 == 0 ? at(j) : at(j - 1), im = j % 2 == 0 ? at(j + 1) : at(j);
  return j % 2 == 0 ? re * c - im * s : re * s + im * c;
}

// The reference for a contiguous x (..., L, d) whose row l is at position offset + l.
template <class T>
std::vector<long double> reference_rope(const Tensor<T>& x, Index position_offset, double theta, RopeStyle style) {
  const Index d = x.size(-1), rows = x.size(-2);
  std::vector<long double> out(static_cast<std::size_t>(x.numel())), row(static_cast<std::size_t>(d));
  for (Index r = 0; r < x.numel() / d; ++r) {
    for (Index j = 0; j < d; ++j) row[static_cast<std::size_t>(j)] = x.data()[r * d + j];
    const auto position = static_cast<long double>(position_offset + r % rows);
    for (Index j = 0; j < d; ++j)
      out[static_cast<std::size_t>(r * d + j)] = reference_coordinate(row, j, position, theta, style);
  }
  return out;
}

// How far a correct RotaryEmbedding<T> may lie from the exact rotation of row values of
// magnitude up to `magnitude` at positions up to `max_position`: a few roundings of T in
// each rotated coordinate (cos and sin rounded to T, two products, one sum), plus the
// double angle position·theta^(-2i/d), whose relative error of a few double epsilons
// grows with the position into an absolute error of the angle.
template <class T>
double rope_tolerance(double magnitude, double max_position) {
  const double roundings = 8 * std::numeric_limits<T>::epsilon();
  const double angle_error = 8 * std::numeric_limits<double>::epsilon() * std::max(1.0, max_position);
  return 2 * magnitude * (roundings + angle_error);
}

template <class T, class Expected>
testing::AssertionResult AllNear(const Tensor<T>& computed, const Expected& expected, double tolerance) {
  if (static_cast<std::size_t>(computed.numel()) != expected.size())
    return testing::AssertionFailure() << computed.numel() << " elements, expected " << expected.size();
  std::ostringstream failures;
  failures << std::setprecision(17);
  int reported = 0;
  for (Index i = 0; i < computed.numel(); ++i) {
    const long double c = computed.data()[i], e = expected[static_cast<std::size_t>(i)];
    if (!(std::abs(c - e) <= tolerance) && reported++ < 10)
      failures << "\n  element " << i << " of " << computed.shape().str() << ": " << static_cast<double>(c)
               << " != " << static_cast<double>(e) << " (tolerance " << tolerance << ")";
  }
  if (reported == 0) return testing::AssertionSuccess();
  return testing::AssertionFailure() << reported << " elements differ:" << failures.str();
}

template <class T>
double max_abs(const Tensor<T>& x) {
  return x.empty() ? 0.0 : static_cast<double>(qkv::max(qkv::abs(x)));
}

template <class T>
long double dot(TensorView<const T> a, TensorView<const T> b) {
  long double sum = 0;
  for (Index i = 0; i < a.size(-1); ++i) sum += static_cast<long double>(a(0, i)) * static_cast<long double>(b(0, i));
  return sum;
}

template <class T>
class RopeTest : public testing::Test {};
TYPED_TEST_SUITE(RopeTest, qkv::test::FloatTypes, qkv::test::FloatTypeNames);

// ---- construction -----------------------------------------------------------------------

TYPED_TEST(RopeTest, DefaultsToTheta10000AndRotateHalf) {
  const RotaryEmbedding<TypeParam> rope(64);
  EXPECT_EQ(rope.head_dim(), 64);
  EXPECT_EQ(rope.theta(), 10000.0);
  EXPECT_EQ(rope.style(), RopeStyle::rotate_half);
  const RotaryEmbedding<TypeParam> llama3(128, 500000.0, RopeStyle::interleaved);
  EXPECT_EQ(llama3.head_dim(), 128);
  EXPECT_EQ(llama3.theta(), 500000.0);
  EXPECT_EQ(llama3.style(), RopeStyle::interleaved);
}

TYPED_TEST(RopeTest, RejectsOddOrNonPositiveHeadDimAndBadTheta) {
  using Rope = RotaryEmbedding<TypeParam>;
  using E = std::invalid_argument;
  EXPECT_TRUE(ThrowsWith<E>([] { Rope(7); }, {"qkv::RotaryEmbedding: head_dim 7 must be even"}));
  EXPECT_TRUE(ThrowsWith<E>([] { Rope(0); }, {"qkv::RotaryEmbedding: head_dim 0 must be positive"}));
  EXPECT_TRUE(ThrowsWith<E>([] { Rope(-4); }, {"qkv::RotaryEmbedding: head_dim -4 must be positive"}));
  EXPECT_TRUE(ThrowsWith<E>([] { Rope(8, 0.0); }, {"qkv::RotaryEmbedding: theta 0 must be positive and finite"}));
  EXPECT_TRUE(ThrowsWith<E>([] { Rope(8, -1e-7); }, {"qkv::RotaryEmbedding: theta -1e-07 must be positive"}));
  EXPECT_TRUE(ThrowsWith<E>([] { Rope(8, std::numeric_limits<double>::infinity()); },
                            {"qkv::RotaryEmbedding: theta inf must be positive and finite"}));
  EXPECT_TRUE(ThrowsWith<E>([] { Rope(8, std::numeric_limits<double>::quiet_NaN()); },
                            {"qkv::RotaryEmbedding: theta nan must be positive and finite"}));
}

// ---- values ------------------------------------------------------------------------------

TYPED_TEST(RopeTest, MatchesHuggingFaceAndMetaLlamaCodeInPyTorch) {
  using T = TypeParam;
  ASSERT_EQ(kRopeCases.size(), 6u);
  for (const RopeCase& c : kRopeCases) {
    SCOPED_TRACE(std::string(style_name(c.style)) + " seed " + std::to_string(c.seed) + " shape " + c.shape.str() +
                 " offset " + std::to_string(c.position_offset));
    qkv::NumpyRandom rng(c.seed);
    const Tensor<T> x = rng.randn<T>(c.shape);  // np.random.seed(seed); np.random.randn(*shape)
    const RotaryEmbedding<T> rope(c.shape.back(), c.theta, c.style);
    const double max_position = static_cast<double>(c.position_offset + c.shape[2] - 1);
    // The script rotates the double inputs; rounding them to T adds at most one rounding.
    const double tolerance = rope_tolerance<T>(max_abs(x), max_position);
    EXPECT_TRUE(AllNear(rope(x, c.position_offset), c.expected, tolerance));
    Tensor<T> in_place = x;
    rope.apply(in_place, c.position_offset);
    EXPECT_TRUE(qkv::equal(in_place, rope(x, c.position_offset)));
  }
}

TYPED_TEST(RopeTest, MatchesTheFormulaForBothStylesThetasAndPositions) {
  using T = TypeParam;
  qkv::NumpyRandom rng(1);
  for (RopeStyle style : {RopeStyle::rotate_half, RopeStyle::interleaved})
    for (double theta : {10000.0, 500000.0, 10.0, 1.5})
      for (Index head_dim : {2, 4, 10, 64})
        for (Index offset : {0, 1, 37, 100000, 1234567}) {
          SCOPED_TRACE(std::string(style_name(style)) + " theta " + std::to_string(theta) + " head_dim " +
                       std::to_string(head_dim) + " offset " + std::to_string(offset));
          const Tensor<T> x = rng.randn<T>({2, 3, head_dim});
          const RotaryEmbedding<T> rope(head_dim, theta, style);
          const double tolerance = rope_tolerance<T>(max_abs(x), static_cast<double>(offset + 2));
          EXPECT_TRUE(AllNear(rope(x, offset), reference_rope(x, offset, theta, style), tolerance));
        }
}

TYPED_TEST(RopeTest, PositionZeroLeavesTheRowUnchanged) {
  using T = TypeParam;
  qkv::NumpyRandom rng(2);
  const Tensor<T> x = rng.randn<T>({3, 1, 16});
  for (RopeStyle style : {RopeStyle::rotate_half, RopeStyle::interleaved})
    EXPECT_TRUE(qkv::equal(RotaryEmbedding<T>(16, 10000.0, style)(x), x));
}

TYPED_TEST(RopeTest, RowsWithAnOffsetEqualThoseRowsOfTheWholeSequence) {
  using T = TypeParam;
  qkv::NumpyRandom rng(3);
  const Tensor<T> x = rng.randn<T>({2, 3, 11, 8});
  for (RopeStyle style : {RopeStyle::rotate_half, RopeStyle::interleaved}) {
    const RotaryEmbedding<T> rope(8, 10000.0, style);
    for (Index start : {0, 2, 5})
      for (Index begin : {Index{0}, Index{1}, Index{4}, Index{10}})
        for (Index end : {begin, begin + 1, Index{11}}) {
          SCOPED_TRACE(std::string(style_name(style)) + " start " + std::to_string(start) + " rows [" +
                       std::to_string(begin) + ", " + std::to_string(end) + ")");
          const Tensor<T> whole = rope(x, start);
          Tensor<T> part(x.narrow(2, begin, end - begin));
          rope.apply(part, start + begin);
          EXPECT_TRUE(qkv::equal(part, Tensor<T>(whole.narrow(2, begin, end - begin))));
        }
  }
}

TYPED_TEST(RopeTest, RotatesStridedViewsInPlace) {
  using T = TypeParam;
  qkv::NumpyRandom rng(4);
  const Index B = 2, L = 5, H = 3, E = 6;
  for (RopeStyle style : {RopeStyle::rotate_half, RopeStyle::interleaved}) {
    const RotaryEmbedding<T> rope(E, 10000.0, style);
    // (B, L, H, E) memory, as a projection writes it, seen as (B, H, L, E).
    Tensor<T> blhe = rng.randn<T>({B, L, H, E});
    const Tensor<T> bhle(blhe.view().permute({0, 2, 1, 3}));
    rope.apply(blhe.view().permute({0, 2, 1, 3}), 3);
    EXPECT_TRUE(qkv::equal(Tensor<T>(blhe.view().permute({0, 2, 1, 3})), rope(bhle, 3)));

    // Head vectors along a strided dimension: (B, H, E, L) memory seen as (B, H, L, E).
    Tensor<T> bhel = rng.randn<T>({B, H, E, L});
    const TensorView<T> transposed = bhel.view().transpose(2, 3);
    const Tensor<T> contiguous(transposed);
    rope.apply(transposed, 7);
    EXPECT_TRUE(qkv::equal(Tensor<T>(transposed), rope(contiguous, 7)));

    // Every other row of a longer buffer: rows keep the positions of the view.
    Tensor<T> long_buffer = rng.randn<T>({1, 2 * L, E});
    const TensorView<T> every_other(long_buffer.data(), Shape{1, L, E}, qkv::Strides{2 * L * E, 2 * E, 1});
    const Tensor<T> before(long_buffer), gathered(every_other);
    rope.apply(every_other, 0);
    EXPECT_TRUE(qkv::equal(Tensor<T>(every_other), rope(gathered, 0)));
    for (Index l = 1; l < 2 * L; l += 2)
      for (Index e = 0; e < E; ++e) EXPECT_EQ(long_buffer(0, l, e), before(0, l, e)) << "row outside the view";
  }
}

TYPED_TEST(RopeTest, CopyLeavesItsInputAlone) {
  using T = TypeParam;
  qkv::NumpyRandom rng(5);
  Tensor<T> x = rng.randn<T>({4, 8});
  const Tensor<T> original = x;
  const RotaryEmbedding<T> rope(8);
  const Tensor<T> from_view = rope(x.view(), 2);  // TensorView<T> converts to a read-only view
  const Tensor<T> from_tensor = rope(x, 2);
  EXPECT_TRUE(qkv::equal(x, original));
  EXPECT_TRUE(qkv::equal(from_view, from_tensor));
  EXPECT_FALSE(qkv::equal(from_tensor, original));
}

TYPED_TEST(RopeTest, PreservesTheNormOfEveryPair) {
  using T = TypeParam;
  qkv::NumpyRandom rng(6);
  const Index d = 32;
  const Tensor<T> x = rng.randn<T>({7, d});
  for (RopeStyle style : {RopeStyle::rotate_half, RopeStyle::interleaved}) {
    const Tensor<T> y = RotaryEmbedding<T>(d, 10000.0, style)(x, 90000);
    for (Index l = 0; l < 7; ++l) {
      long double row_before = 0, row_after = 0;
      for (Index i = 0; i < d / 2; ++i) {
        const Index a = style == RopeStyle::rotate_half ? i : 2 * i, b = style == RopeStyle::rotate_half ? i + d / 2 : 2 * i + 1;
        const long double before = std::hypot(static_cast<long double>(x(l, a)), static_cast<long double>(x(l, b)));
        const long double after = std::hypot(static_cast<long double>(y(l, a)), static_cast<long double>(y(l, b)));
        EXPECT_NEAR(static_cast<double>(after), static_cast<double>(before),
                    4 * std::numeric_limits<T>::epsilon() * static_cast<double>(before));
        row_before += before * before;
        row_after += after * after;
      }
      EXPECT_NEAR(static_cast<double>(std::sqrt(row_after)), static_cast<double>(std::sqrt(row_before)),
                  4 * std::numeric_limits<T>::epsilon() * static_cast<double>(std::sqrt(row_before)));
    }
  }
}

// apply_inverse is the backward pass of apply: R⁻¹ = Rᵀ, so ⟨R x, y⟩ = ⟨x, R⁻¹ y⟩ for any
// x, y, and R⁻¹(R x) = x.
TYPED_TEST(RopeTest, ApplyInverseUndoesApplyAndIsItsTranspose) {
  using T = TypeParam;
  qkv::NumpyRandom rng(16);
  const Index d = 8, rows = 5, offset = 1000;
  const double tolerance = 64 * std::numeric_limits<T>::epsilon();
  for (RopeStyle style : {RopeStyle::rotate_half, RopeStyle::interleaved}) {
    const RotaryEmbedding<T> rope(d, 10000.0, style);
    const Tensor<T> x = rng.randn<T>({2, rows, d}), y = rng.randn<T>({2, rows, d});
    // (2, L, d) stored as (L, 2, d): the inverse walks strided views as apply does.
    Tensor<T> turned_back = Tensor<T>(x.view().transpose(0, 1));
    rope.apply(turned_back.view().transpose(0, 1), offset);
    EXPECT_GT(max_abs(Tensor<T>(turned_back.view().transpose(0, 1)) - x), 0.1);  // it did turn
    rope.apply_inverse(turned_back.view().transpose(0, 1), offset);
    EXPECT_LE(max_abs(Tensor<T>(turned_back.view().transpose(0, 1)) - x), tolerance * max_abs(x));

    const Tensor<T> rx = rope(x, offset);
    Tensor<T> inverse_y = y;
    rope.apply_inverse(inverse_y, offset);
    long double lhs = 0, rhs = 0;
    for (Index i = 0; i < x.numel(); ++i) {
      lhs += static_cast<long double>(rx.data()[i]) * static_cast<long double>(y.data()[i]);
      rhs += static_cast<long double>(x.data()[i]) * static_cast<long double>(inverse_y.data()[i]);
    }
    EXPECT_NEAR(static_cast<double>(lhs), static_cast<double>(rhs), 64 * std::numeric_limits<T>::epsilon() * double(x.numel()));
  }
  const RotaryEmbedding<T> rope(4);
  Tensor<T> x = Tensor<T>::ones({3, 4});
  EXPECT_TRUE(ThrowsWith<std::out_of_range>([&] { rope.apply_inverse(x, -2); },
                                            {"qkv::RotaryEmbedding::apply_inverse: position_offset -2 is negative"}));
}

TYPED_TEST(RopeTest, ScoresDependOnlyOnTheRelativePosition) {
  using T = TypeParam;
  qkv::NumpyRandom rng(7);
  const Index d = 16;
  const Tensor<T> q = rng.randn<T>({1, d}), k = rng.randn<T>({1, d});
  const double norms = std::sqrt(static_cast<double>(dot<T>(q, q) * dot<T>(k, k)));
  for (RopeStyle style : {RopeStyle::rotate_half, RopeStyle::interleaved}) {
    const RotaryEmbedding<T> rope(d, 10000.0, style);
    const auto score = [&](Index m, Index n) { return dot<T>(rope(q, m), rope(k, n)); };
    for (Index distance : {0, 1, 5, 40}) {
      SCOPED_TRACE(std::string(style_name(style)) + " distance " + std::to_string(distance));
      const long double at_start = score(distance, 0);
      for (Index n : {1, 17, 1000, 100000}) {
        // Each score is off by at most about |δq|·|k| + |q|·|δk|, with |δq| <= rope_tolerance(1)·|q|.
        const double tolerance = 2 * rope_tolerance<T>(1.0, static_cast<double>(n + distance)) * norms;
        EXPECT_NEAR(static_cast<double>(score(n + distance, n)), static_cast<double>(at_start), tolerance);
      }
    }
    // ... and does depend on it: otherwise the test above would hold trivially.
    EXPECT_GT(std::abs(static_cast<double>(score(5, 0) - score(0, 0))), 1e-3 * norms);
  }
}

TYPED_TEST(RopeTest, HalfStyleIsInterleavedStyleOnPermutedCoordinates) {
  using T = TypeParam;
  qkv::NumpyRandom rng(8);
  const Index d = 12, half = d / 2;
  const Tensor<T> x = rng.randn<T>({2, 5, d});
  // Coordinates [0, d/2, 1, d/2 + 1, ...]: pair i of half style becomes pair i of interleaved.
  std::vector<Index> order;
  for (Index i = 0; i < half; ++i) order.insert(order.end(), {i, i + half});
  const auto permuted = [&](const Tensor<T>& t, bool inverse) {
    Tensor<T> out(t.shape());
    for (Index r = 0; r < t.numel() / d; ++r)
      for (Index j = 0; j < d; ++j) {
        const Index k = order[static_cast<std::size_t>(j)];
        if (inverse) out.data()[r * d + k] = t.data()[r * d + j];
        else out.data()[r * d + j] = t.data()[r * d + k];
      }
    return out;
  };
  for (Index offset : {0, 3, 50000}) {
    const Tensor<T> half_style = RotaryEmbedding<T>(d, 10000.0, RopeStyle::rotate_half)(x, offset);
    const Tensor<T> interleaved = RotaryEmbedding<T>(d, 10000.0, RopeStyle::interleaved)(permuted(x, false), offset);
    EXPECT_TRUE(qkv::equal(half_style, permuted(interleaved, true))) << "offset " << offset;
    if (offset > 0) {  // on the same coordinates the conventions differ
      EXPECT_FALSE(qkv::equal(half_style, RotaryEmbedding<T>(d, 10000.0, RopeStyle::interleaved)(x, offset)));
    }
  }
}

TYPED_TEST(RopeTest, ThetaSetsTheWavelengths) {
  using T = TypeParam;
  qkv::NumpyRandom rng(9);
  const Tensor<T> x = rng.randn<T>({4, 8});
  const RotaryEmbedding<T> base(8, 10000.0), llama3(8, 500000.0);
  const Tensor<T> a = base(x, 1), b = llama3(x, 1);
  // Pair 0 turns by the position whatever theta is; pair 1 by position · theta^(-1/4).
  for (Index l = 0; l < 4; ++l) {
    EXPECT_EQ(a(l, 0), b(l, 0));
    EXPECT_EQ(a(l, 4), b(l, 4));
    EXPECT_NE(a(l, 1), b(l, 1));
  }
  EXPECT_TRUE(AllNear(b, reference_rope(x, 1, 500000.0, RopeStyle::rotate_half), rope_tolerance<T>(max_abs(x), 4)));
}

TYPED_TEST(RopeTest, EmptyInputsAreLeftAsTheyAre) {
  using T = TypeParam;
  const RotaryEmbedding<T> rope(4);
  EXPECT_EQ(rope(Tensor<T>::zeros({2, 0, 4}), 5).shape(), (Shape{2, 0, 4}));
  EXPECT_EQ(rope(Tensor<T>::zeros({0, 3, 4})).shape(), (Shape{0, 3, 4}));
  Tensor<T> empty = Tensor<T>::zeros({3, 0, 4});
  rope.apply(empty, 9);
  EXPECT_EQ(empty.shape(), (Shape{3, 0, 4}));
}

// ---- errors ------------------------------------------------------------------------------

TYPED_TEST(RopeTest, RejectsInputsOfTheWrongShape) {
  using T = TypeParam;
  using E = std::invalid_argument;
  const RotaryEmbedding<T> rope(64);
  Tensor<T> x = Tensor<T>::zeros({2, 5, 32});
  EXPECT_TRUE(ThrowsWith<E>([&] { rope.apply(x); },
                            {"qkv::RotaryEmbedding::apply: last dimension 32 != head_dim 64 (x [2,5,32])"}));
  EXPECT_TRUE(ThrowsWith<E>([&] { rope(x); },
                            {"qkv::RotaryEmbedding::operator(): last dimension 32 != head_dim 64 (x [2,5,32])"}));
  Tensor<T> vector = Tensor<T>::zeros({64});
  EXPECT_TRUE(ThrowsWith<E>([&] { rope.apply(vector); },
                            {"qkv::RotaryEmbedding::apply: x [64] must have rank >= 2 (..., L, head_dim 64)"}));
  EXPECT_TRUE(ThrowsWith<E>([&] { rope(vector.view()); },
                            {"qkv::RotaryEmbedding::operator(): x [64] must have rank >= 2"}));
}

TYPED_TEST(RopeTest, RejectsNegativePositionOffsets) {
  using T = TypeParam;
  const RotaryEmbedding<T> rope(4);
  Tensor<T> x = Tensor<T>::ones({3, 4});
  const Tensor<T> original = x;
  EXPECT_TRUE(ThrowsWith<std::out_of_range>([&] { rope.apply(x, -1); },
                                            {"qkv::RotaryEmbedding::apply: position_offset -1 is negative"}));
  EXPECT_TRUE(ThrowsWith<std::out_of_range>([&] { rope(x, -3); },
                                            {"qkv::RotaryEmbedding::operator(): position_offset -3 is negative"}));
  EXPECT_TRUE(qkv::equal(x, original));
}

TYPED_TEST(RopeTest, RejectsBroadcastViewsInPlaceButCopiesThem) {
  using T = TypeParam;
  const RotaryEmbedding<T> rope(4);
  Tensor<T> row = {{1, 2, 3, 4}};
  const Tensor<T> original = row;
  const TensorView<T> repeated = row.view().expand({3, 4});
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(
      [&] { rope.apply(repeated); },
      {"qkv::RotaryEmbedding::apply: dimension 0 of x [3,4] is broadcast (stride 0); its elements alias"}));
  EXPECT_TRUE(qkv::equal(row, original));
  // Reading a broadcast view is fine: three copies of the row at positions 0, 1, 2.
  const Tensor<T> copies = rope(TensorView<const T>(repeated));
  EXPECT_TRUE(qkv::equal(Tensor<T>(copies.narrow(0, 0, 1)), row));
  EXPECT_TRUE(qkv::equal(Tensor<T>(copies.narrow(0, 2, 1)), rope(row, 2)));
}

}  // namespace
