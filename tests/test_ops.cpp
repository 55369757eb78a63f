// SPDX-License-Identifier: MIT
// Tests for qkv's tensor operations (ops.hpp). Expected values are hand-derived (small
// values chosen so that float and double results are exact), checked against NumPy /
// PyTorch, or computed here by a plain reference loop in long double; tolerances are
// derived from the element type's epsilon and the number of terms.
#include <qkv/ops.hpp>
#include <qkv/tensor.hpp>
#include <qkv/tensor_view.hpp>

#include <gtest/gtest.h>

#include "test_util.hpp"

#include <cmath>
#include <initializer_list>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

namespace {

using qkv::test::FloatTypeNames;
using qkv::test::FloatTypes;
using qkv::test::ThrowsWith;
using qkv::Index;
using qkv::Shape;
using qkv::Tensor;
using qkv::TensorView;

template <class T>
std::vector<T> Values(const Tensor<T>& t) {
  return std::vector<T>(t.begin(), t.end());
}

template <class T>
constexpr T kEps = std::numeric_limits<T>::epsilon();

// Deterministic non-integer values in [-2, 2] (no special structure for Eigen to exploit).
template <class T>
Tensor<T> Wave(const Shape& shape, double phase) {
  Tensor<T> t(shape);
  for (Index i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(2.0 * std::sin(0.61 * static_cast<double>(i) + phase));
  return t;
}

// Checks c == a @ b for rank-2 views against a long double triple loop. Each element is a
// k-term dot product, so its rounding error is bounded by k * eps * sum_p |a_ip * b_pj|.
template <class T>
void ExpectMatmulMatchesTripleLoop(TensorView<const T> a, TensorView<const T> b, TensorView<const T> c) {
  const Index n = a.size(0), k = a.size(1), m = b.size(1);
  ASSERT_EQ(b.size(0), k);
  ASSERT_EQ(c.shape(), (Shape{n, m}));
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < m; ++j) {
      long double ref = 0, magnitude = 0;
      for (Index p = 0; p < k; ++p) {
        ref += static_cast<long double>(a(i, p)) * static_cast<long double>(b(p, j));
        magnitude += std::fabs(static_cast<long double>(a(i, p)) * static_cast<long double>(b(p, j)));
      }
      const double tol = static_cast<double>(k) * static_cast<double>(kEps<T>) * static_cast<double>(magnitude);
      EXPECT_NEAR(static_cast<double>(c(i, j)), static_cast<double>(ref), tol) << "at (" << i << ", " << j << ")";
    }
}

template <class T>
class Ops : public ::testing::Test {};
TYPED_TEST_SUITE(Ops, FloatTypes, FloatTypeNames);

// ---- element-wise functions ---------------------------------------------------------------

TEST(Map, AppliesFunctionAndKeepsShape) {
  const Tensor<float> t = {{1, 2, 3}, {4, 5, 6}};
  const Tensor<float> sq = qkv::map(t, [](float x) { return x * x; });
  EXPECT_EQ(sq.shape(), (Shape{2, 3}));
  EXPECT_EQ(Values(sq), (std::vector<float>{1, 4, 9, 16, 25, 36}));
}

TEST(Map, ResultTypeIsTheFunctionsResultType) {
  const Tensor<float> t = {0.5f, 2.0f, 1.5f};
  const auto big = qkv::map(t, [](float x) { return x > 1.0f; });
  static_assert(std::is_same_v<std::decay_t<decltype(big)>, Tensor<bool>>);
  EXPECT_EQ(Values(big), (std::vector<bool>{false, true, true}));
}

TEST(Map, ReadsAViewInRowMajorOrder) {
  const Tensor<float> t = {{1, 2, 3}, {4, 5, 6}};
  const auto doubled = qkv::map(t.view().transpose(0, 1), [](float x) { return 2 * x; });
  EXPECT_EQ(doubled.shape(), (Shape{3, 2}));
  EXPECT_EQ(Values(doubled), (std::vector<float>{2, 8, 4, 10, 6, 12}));
}

TYPED_TEST(Ops, ExpLogSqrt) {
  using T = TypeParam;
  const Tensor<T> e = qkv::exp(Tensor<T>{0, 1, -2});
  EXPECT_EQ(e(0), T(1));
  EXPECT_NEAR(e(1), T(2.718281828459045), 2 * kEps<T> * T(2.72));
  EXPECT_NEAR(e(2), T(0.1353352832366127), 2 * kEps<T> * T(0.14));
  const Tensor<T> l = qkv::log(Tensor<T>{1, 0.25, 8});
  EXPECT_EQ(l(0), T(0));
  EXPECT_NEAR(l(1), T(-1.3862943611198906), 2 * kEps<T> * T(1.4));  // -2 ln 2
  EXPECT_NEAR(l(2), T(2.0794415416798357), 2 * kEps<T> * T(2.1));   // 3 ln 2
  const Tensor<T> s = qkv::sqrt(Tensor<T>{{4, 2.25}, {2, 0}});
  EXPECT_EQ(s.shape(), (Shape{2, 2}));
  EXPECT_EQ(s(0, 0), T(2));
  EXPECT_EQ(s(0, 1), T(1.5));
  EXPECT_NEAR(s(1, 0), T(1.4142135623730951), kEps<T> * T(1.42));
  EXPECT_EQ(s(1, 1), T(0));
}

TYPED_TEST(Ops, AbsAndUnaryMinus) {
  using T = TypeParam;
  const Tensor<T> t = {{-1.5, 0, 2}, {3, -0.25, -7}};
  EXPECT_EQ(Values(qkv::abs(t)), (std::vector<T>{1.5, 0, 2, 3, 0.25, 7}));
  const Tensor<T> n = -t;
  EXPECT_EQ(n.shape(), (Shape{2, 3}));
  EXPECT_EQ(Values(n), (std::vector<T>{1.5, 0, -2, -3, 0.25, 7}));
  EXPECT_EQ(Values(-t[1]), (std::vector<T>{-3, 0.25, 7}));
}

TEST(Map, AbsOfIntTensor) {
  EXPECT_EQ(Values(qkv::abs(Tensor<int>{-3, 4, 0})), (std::vector<int>{3, 4, 0}));
}

// ---- binary arithmetic ---------------------------------------------------------------------

TYPED_TEST(Ops, ArithmeticOnSameShape) {
  using T = TypeParam;
  const Tensor<T> a = {{1, 2, 3}, {4, 5, 6}};
  const Tensor<T> b = {{0.5, -1, 2}, {4, 0.25, -8}};
  EXPECT_EQ(Values(a + b), (std::vector<T>{1.5, 1, 5, 8, 5.25, -2}));
  EXPECT_EQ(Values(a - b), (std::vector<T>{0.5, 3, 1, 0, 4.75, 14}));
  EXPECT_EQ(Values(a * b), (std::vector<T>{0.5, -2, 6, 16, 1.25, -48}));
  EXPECT_EQ(Values(a / b), (std::vector<T>{2, -2, 1.5, 1, 20, -0.75}));
  EXPECT_EQ((a + b).shape(), (Shape{2, 3}));
}

TYPED_TEST(Ops, BroadcastColumnWithRow) {
  using T = TypeParam;
  const Tensor<T> col(Shape{3, 1}, std::vector<T>{10, 20, 30});
  const Tensor<T> row = {1, 2, 3, 4};
  const Tensor<T> sum = col + row;
  ASSERT_EQ(sum.shape(), (Shape{3, 4}));
  const Tensor<T> diff = col - row;
  const Tensor<T> rdiff = row - col;
  ASSERT_EQ(rdiff.shape(), (Shape{3, 4}));
  for (Index i = 0; i < 3; ++i)
    for (Index j = 0; j < 4; ++j) {
      EXPECT_EQ(sum(i, j), T(10 * (i + 1) + (j + 1)));
      EXPECT_EQ(diff(i, j), T(10 * (i + 1) - (j + 1)));
      EXPECT_EQ(rdiff(i, j), T((j + 1) - 10 * (i + 1)));
    }
}

TYPED_TEST(Ops, BroadcastMatrixWithRow) {
  using T = TypeParam;
  const Tensor<T> m = {{1, 2, 3}, {4, 5, 6}};
  const Tensor<T> r = {2, 0.5, -1};
  EXPECT_EQ(Values(m * r), (std::vector<T>{2, 1, -3, 8, 2.5, -6}));
  EXPECT_EQ(Values(r / m), (std::vector<T>{2, 0.25, T(-1) / T(3), 0.5, T(1) / T(10), T(-1) / T(6)}));
  EXPECT_EQ((r - m).shape(), (Shape{2, 3}));
  EXPECT_EQ(Values(r - m), (std::vector<T>{1, -1.5, -4, -2, -4.5, -7}));
}

TYPED_TEST(Ops, BroadcastRankZeroWithMatrix) {
  using T = TypeParam;
  const Tensor<T> m = {{1, 2}, {3, 4}};
  const Tensor<T> s = Tensor<T>::scalar(10);
  EXPECT_EQ((m + s).shape(), (Shape{2, 2}));
  EXPECT_EQ(Values(s - m), (std::vector<T>{9, 8, 7, 6}));
}

TYPED_TEST(Ops, ScalarOnEitherSide) {
  using T = TypeParam;
  const Tensor<T> t = {1, 2, 4};
  EXPECT_EQ(Values(t + T(1)), (std::vector<T>{2, 3, 5}));
  EXPECT_EQ(Values(T(1) + t), (std::vector<T>{2, 3, 5}));
  EXPECT_EQ(Values(t - T(1)), (std::vector<T>{0, 1, 3}));
  EXPECT_EQ(Values(T(1) - t), (std::vector<T>{0, -1, -3}));
  EXPECT_EQ(Values(t * T(3)), (std::vector<T>{3, 6, 12}));
  EXPECT_EQ(Values(T(3) * t), (std::vector<T>{3, 6, 12}));
  EXPECT_EQ(Values(t / T(2)), (std::vector<T>{0.5, 1, 2}));
  EXPECT_EQ(Values(T(2) / t), (std::vector<T>{2, 1, 0.5}));
}

TYPED_TEST(Ops, RowViewTimesScalar) {
  using T = TypeParam;
  Tensor<T> inputs = qkv::to<T>(Tensor<double>{{0.43, 0.15, 0.89}, {0.55, 0.87, 0.66}, {0.57, 0.85, 0.64}});
  const T w = T(0.25);
  const Tensor<T> scaled = inputs[1] * w;
  EXPECT_EQ(scaled.shape(), (Shape{3}));
  EXPECT_EQ(Values(scaled), (std::vector<T>{T(0.55) * w, T(0.87) * w, T(0.66) * w}));
  const Tensor<T>& cinputs = inputs;
  EXPECT_EQ(Values(w * cinputs[2]), (std::vector<T>{w * T(0.57), w * T(0.85), w * T(0.64)}));
  EXPECT_EQ(inputs(1, 0), T(0.55));  // the source is untouched
}

TYPED_TEST(Ops, ViewsCombineWithTensors) {
  using T = TypeParam;
  const Tensor<T> a = {{1, 2, 3}, {4, 5, 6}};
  const Tensor<T> b = {{10, 20}, {30, 40}, {50, 60}};
  const Tensor<T> s = a.view().transpose(0, 1) + b;  // [[1,4],[2,5],[3,6]] + b
  EXPECT_EQ(s.shape(), (Shape{3, 2}));
  EXPECT_EQ(Values(s), (std::vector<T>{11, 24, 32, 45, 53, 66}));
  EXPECT_EQ(Values(a[0] - a[1]), (std::vector<T>{-3, -3, -3}));
}

TYPED_TEST(Ops, BroadcastErrorNamesBothShapes) {
  using T = TypeParam;
  const Tensor<T> a = Tensor<T>::zeros({3});
  const Tensor<T> b = Tensor<T>::zeros({4});
  const Tensor<T> m = Tensor<T>::zeros({2, 3});
  const Tensor<T> c = Tensor<T>::zeros({2});
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { (void)(a + b); }, {"qkv::operator+", "[3]", "[4]"}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { (void)(b - a); }, {"qkv::operator-", "[4]", "[3]"}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { (void)(m * c); }, {"qkv::operator*", "[2,3]", "[2]"}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { (void)(c / m); }, {"qkv::operator/", "[2]", "[2,3]"}));
}

// ---- compound assignment -------------------------------------------------------------------

TYPED_TEST(Ops, CompoundAssignTensor) {
  using T = TypeParam;
  Tensor<T> a = {{1, 2}, {3, 4}};
  const T* p = a.data();
  Tensor<T>& r = (a += Tensor<T>{{10, 20}, {30, 40}});
  EXPECT_EQ(&r, &a);
  EXPECT_EQ(a.data(), p);  // in place
  EXPECT_EQ(Values(a), (std::vector<T>{11, 22, 33, 44}));
  a -= Tensor<T>{{1, 2}, {3, 4}};
  EXPECT_EQ(Values(a), (std::vector<T>{10, 20, 30, 40}));
  a *= Tensor<T>{{2, 0.5}, {1, -1}};
  EXPECT_EQ(Values(a), (std::vector<T>{20, 10, 30, -40}));
  a /= Tensor<T>{{4, 5}, {10, 8}};
  EXPECT_EQ(Values(a), (std::vector<T>{5, 2, 3, -5}));
}

TYPED_TEST(Ops, CompoundAssignBroadcastsTheRightSide) {
  using T = TypeParam;
  Tensor<T> a = {{1, 2, 3}, {4, 5, 6}};
  a += Tensor<T>{10, 20, 30};
  EXPECT_EQ(Values(a), (std::vector<T>{11, 22, 33, 14, 25, 36}));
  a -= a.view().transpose(0, 1).transpose(0, 1);  // a view aliasing a itself
  EXPECT_EQ(Values(a), (std::vector<T>(6, T(0))));
  Tensor<T> b = Tensor<T>::ones({2, 2});
  b *= Tensor<T>(Shape{2, 1}, std::vector<T>{3, 5});
  EXPECT_EQ(Values(b), (std::vector<T>{3, 3, 5, 5}));
}

TYPED_TEST(Ops, CompoundAssignScalar) {
  using T = TypeParam;
  Tensor<T> a = {1, 2, 3};
  Tensor<T>& r = (a *= T(2));
  EXPECT_EQ(&r, &a);
  EXPECT_EQ(Values(a), (std::vector<T>{2, 4, 6}));
  a += T(1);
  EXPECT_EQ(Values(a), (std::vector<T>{3, 5, 7}));
  a -= T(3);
  EXPECT_EQ(Values(a), (std::vector<T>{0, 2, 4}));
  a /= T(4);
  EXPECT_EQ(Values(a), (std::vector<T>{0, 0.5, 1}));
}

// Whether t *= s compiles for a Tensor<T> t and a scalar of type S.
template <class T, class S, class = void>
struct CanScaleInPlace : std::false_type {};
template <class T, class S>
struct CanScaleInPlace<T, S, std::void_t<decltype(std::declval<Tensor<T>&>() *= std::declval<S>())>>
    : std::true_type {};

// t * 2 and t * 0.25 accept a scalar that converts to the element type; t *= 2 should too.
TEST(CompoundAssign, ScalarOfAnotherArithmeticTypeConverts) {
  Tensor<float> t = {1, 2};
  EXPECT_EQ(Values(t * 2), (std::vector<float>{2, 4}));
  EXPECT_EQ(Values(t * 0.25), (std::vector<float>{0.25, 0.5}));
  ASSERT_TRUE((CanScaleInPlace<float, int>::value)) << "Tensor<float> *= int does not compile";
  ASSERT_TRUE((CanScaleInPlace<float, double>::value)) << "Tensor<float> *= double does not compile";
  if constexpr (CanScaleInPlace<float, int>::value && CanScaleInPlace<float, double>::value) {
    t *= 2;  // constants that float represents exactly: no -Wconversion warning either
    t *= 0.25;
  }
  EXPECT_EQ(Values(t), (std::vector<float>{0.5, 1}));
}

TYPED_TEST(Ops, CompoundAssignCannotGrowTheLeftSide) {
  using T = TypeParam;
  Tensor<T> a = {1, 2, 3};
  const Tensor<T> b = Tensor<T>::ones({2, 3});
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { a += b; }, {"qkv::operator+=", "[2,3]", "[3]"}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { a *= b; }, {"qkv::operator*=", "[2,3]", "[3]"}));
  EXPECT_EQ(Values(a), (std::vector<T>{1, 2, 3}));  // untouched
  Tensor<T> m = Tensor<T>::zeros({2, 3});
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { m -= Tensor<T>::zeros({4}); },
                                                {"qkv::operator-=", "[2,3]", "[4]"}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { m /= Tensor<T>::zeros({2, 3, 1}); },
                                                {"qkv::operator/=", "[2,3]", "[2,3,1]"}));
}

// ---- maximum, minimum, masked_fill ----------------------------------------------------------

TYPED_TEST(Ops, MaximumAndMinimumBroadcast) {
  using T = TypeParam;
  const Tensor<T> m = {{1, 5, -2}, {4, 0, 3}};
  const Tensor<T> r = {2, 2, 2};
  EXPECT_EQ(Values(qkv::maximum(m, r)), (std::vector<T>{2, 5, 2, 4, 2, 3}));
  EXPECT_EQ(Values(qkv::minimum(r, m)), (std::vector<T>{1, 2, -2, 2, 0, 2}));
  EXPECT_EQ(qkv::maximum(m, r).shape(), (Shape{2, 3}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { (void)qkv::maximum(m, Tensor<T>{1, 2}); },
                                                {"qkv::maximum", "[2,3]", "[2]"}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { (void)qkv::minimum(m, Tensor<T>{1, 2}); },
                                                {"qkv::minimum", "[2,3]", "[2]"}));
}

TYPED_TEST(Ops, MaskedFillSameShape) {
  using T = TypeParam;
  const Tensor<T> x = {{1, 2}, {3, 4}};
  const Tensor<bool> mask = {{false, true}, {true, false}};
  const Tensor<T> y = qkv::masked_fill(x, mask, T(-9));
  EXPECT_EQ(Values(y), (std::vector<T>{1, -9, -9, 4}));
  EXPECT_EQ(x(0, 1), T(2));  // the input is not modified
}

TYPED_TEST(Ops, MaskedFillBroadcastsACausalMask) {
  using T = TypeParam;
  const T inf = std::numeric_limits<T>::infinity();
  const Tensor<T> scores = Tensor<T>::ones({2, 3, 3});
  const Tensor<bool> above = {{false, true, true}, {false, false, true}, {false, false, false}};
  const Tensor<T> y = qkv::masked_fill(scores, above, -inf);
  ASSERT_EQ(y.shape(), (Shape{2, 3, 3}));
  for (Index b = 0; b < 2; ++b)
    for (Index i = 0; i < 3; ++i)
      for (Index j = 0; j < 3; ++j) EXPECT_EQ(y(b, i, j), j > i ? -inf : T(1));
  const Tensor<bool> cols = {true, false, false};  // [3] broadcast over rows
  EXPECT_EQ(Values(qkv::masked_fill(Tensor<T>{{1, 2, 3}, {4, 5, 6}}, cols, T(0))),
            (std::vector<T>{0, 2, 3, 0, 5, 6}));
}

TYPED_TEST(Ops, MaskedFillOfAView) {
  using T = TypeParam;
  const Tensor<T> x = {{1, 2, 3}, {4, 5, 6}};
  const Tensor<bool> mask = {{true, false}, {false, false}, {false, true}};
  EXPECT_EQ(Values(qkv::masked_fill(x.view().transpose(0, 1), mask, T(0))), (std::vector<T>{0, 4, 2, 5, 3, 0}));
}

TYPED_TEST(Ops, MaskedFillErrors) {
  using T = TypeParam;
  const Tensor<T> x = Tensor<T>::zeros({3});
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { (void)qkv::masked_fill(x, Tensor<bool>::ones({2, 3}), T(0)); },
                                                {"qkv::masked_fill", "[2,3]", "[3]"}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { (void)qkv::masked_fill(x, Tensor<bool>::ones({4}), T(0)); },
                                                {"qkv::masked_fill", "[4]", "[3]"}));
}

// ---- allclose and equal ----------------------------------------------------------------------

TEST(Allclose, ToleranceIsAtolPlusRtolTimesSecondArgument) {
  const Tensor<double> a = {100.0};
  const Tensor<double> b = {102.0};
  // |a - b| = 2: within 0.0199 * |b| = 2.0298, but not within 0.0199 * |a| = 1.99.
  EXPECT_TRUE(qkv::allclose(a, b, 0.0199, 0.0));
  EXPECT_FALSE(qkv::allclose(b, a, 0.0199, 0.0));
  // atol adds to rtol * |b|: 1.99 + 0.02 >= 2.
  EXPECT_TRUE(qkv::allclose(b, a, 0.0199, 0.02));
  EXPECT_FALSE(qkv::allclose(b, a, 0.0199, 0.005));
  EXPECT_TRUE(qkv::allclose(a, b, 0.0, 2.5));
  EXPECT_FALSE(qkv::allclose(a, b, 0.0, 1.5));
}

TEST(Allclose, DefaultTolerancesAreNumpys) {
  // rtol = 1e-5, atol = 1e-8.
  EXPECT_TRUE(qkv::allclose(Tensor<double>{1e5}, Tensor<double>{1e5 + 0.5}));
  EXPECT_FALSE(qkv::allclose(Tensor<double>{1e5}, Tensor<double>{1e5 + 2}));
  EXPECT_TRUE(qkv::allclose(Tensor<double>{0.0}, Tensor<double>{5e-9}));
  EXPECT_FALSE(qkv::allclose(Tensor<double>{0.0}, Tensor<double>{1e-7}));
}

TEST(Allclose, ShapeMismatchIsFalse) {
  const auto a = Tensor<float>::zeros({2, 3});
  EXPECT_FALSE(qkv::allclose(a, Tensor<float>::zeros({3, 2})));
  EXPECT_FALSE(qkv::allclose(a, Tensor<float>::zeros({6})));
  EXPECT_FALSE(qkv::allclose(a, Tensor<float>::zeros({1, 2, 3})));
  EXPECT_TRUE(qkv::allclose(a, Tensor<float>::zeros({2, 3})));
}

TEST(Allclose, EqualInfinitiesAreClose) {
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_TRUE(qkv::allclose(Tensor<double>{inf, -inf, 1}, Tensor<double>{inf, -inf, 1}));
  EXPECT_TRUE(qkv::allclose(Tensor<double>{inf}, Tensor<double>{inf}, 0.0, 0.0));
}

TEST(Allclose, NaNIsNeverClose) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(qkv::allclose(Tensor<double>{nan}, Tensor<double>{nan}));
  EXPECT_FALSE(qkv::allclose(Tensor<double>{1, nan}, Tensor<double>{1, 0}));
  EXPECT_FALSE(qkv::allclose(Tensor<double>{1, 0}, Tensor<double>{1, nan}));
}

// numpy.allclose(1.0, inf) and numpy.allclose(-inf, inf) are False: an infinity is close
// only to the same infinity, whatever rtol is.
TEST(Allclose, FiniteIsNotCloseToInfinity) {
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(qkv::allclose(Tensor<double>{1.0}, Tensor<double>{inf}));
  EXPECT_FALSE(qkv::allclose(Tensor<double>{inf}, Tensor<double>{1.0}));
  EXPECT_FALSE(qkv::allclose(Tensor<float>{0.0f}, Tensor<float>{-std::numeric_limits<float>::infinity()}));
}

TEST(Allclose, OppositeInfinitiesAreNotClose) {
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(qkv::allclose(Tensor<double>{-inf}, Tensor<double>{inf}));
  EXPECT_FALSE(qkv::allclose(Tensor<double>{inf}, Tensor<double>{-inf}));
}

TEST(Allclose, ComparesViewsElementwise) {
  const Tensor<float> a = {{1, 2, 3}, {4, 5, 6}};
  const Tensor<float> at = {{1, 4}, {2, 5}, {3, 6}};
  EXPECT_TRUE(qkv::allclose(a.view().transpose(0, 1), at));
  EXPECT_FALSE(qkv::allclose(a.view().transpose(0, 1), a.reshape({3, 2})));  // same shape, other order
}

TEST(Equal, RequiresSameShapeAndExactlyEqualElements) {
  const Tensor<float> a = {{1, 2}, {3, 4}};
  EXPECT_TRUE(qkv::equal(a, Tensor<float>{{1, 2}, {3, 4}}));
  Tensor<float> b = a;
  b(1, 1) = std::nextafter(4.0f, 5.0f);
  EXPECT_FALSE(qkv::equal(a, b));
  EXPECT_FALSE(qkv::equal(a, a.reshape({4})));
  EXPECT_TRUE(qkv::equal(a.view().transpose(0, 1), Tensor<float>{{1, 3}, {2, 4}}));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(qkv::equal(Tensor<float>{nan}, Tensor<float>{nan}));
  EXPECT_FALSE(qkv::equal(Tensor<float>{1.0f}, Tensor<float>{std::numeric_limits<float>::infinity()}));
}

// ---- reductions over all elements ------------------------------------------------------------

TYPED_TEST(Ops, ReductionsOfAllElements) {
  using T = TypeParam;
  const Tensor<T> x = {{2, 4, 4, 4}, {5, 5, 7, 9}};  // mean 5, squared deviations sum to 32
  EXPECT_EQ(qkv::sum(x), T(40));
  EXPECT_EQ(qkv::mean(x), T(5));
  EXPECT_EQ(qkv::var(x), T(4));  // numpy.var: 32 / 8
  EXPECT_EQ(qkv::max(x), T(9));
  EXPECT_EQ(qkv::min(x), T(2));
  static_assert(std::is_same_v<decltype(qkv::sum(x)), T>);
}

TYPED_TEST(Ops, VarIsThePopulationVariance) {
  using T = TypeParam;
  // numpy.var([1, 2, 3, 4]) == 1.25; the sample variance would be 5/3.
  EXPECT_EQ(qkv::var(Tensor<T>{1, 2, 3, 4}), T(1.25));
  EXPECT_EQ(qkv::var(Tensor<T>{3, 3, 3}), T(0));
  EXPECT_EQ(qkv::var(Tensor<T>::scalar(7)), T(0));
}

TYPED_TEST(Ops, ReductionsOfAStridedView) {
  using T = TypeParam;
  const Tensor<T> x = {{2, 4, 4, 4}, {5, 5, 7, 9}};
  const auto cols = x.view().narrow(1, 1, 2);  // [[4, 4], [5, 7]]
  EXPECT_EQ(qkv::sum(cols), T(20));
  EXPECT_EQ(qkv::mean(cols), T(5));
  EXPECT_EQ(qkv::var(cols), T(1.5));  // (1 + 1 + 0 + 4) / 4
  EXPECT_EQ(qkv::max(cols), T(7));
  EXPECT_EQ(qkv::min(cols), T(4));
  const Tensor<T> pair = {1, 2};
  const auto rep = pair.view().expand({3, 2});  // stride 0
  EXPECT_EQ(qkv::sum(rep), T(9));
  EXPECT_EQ(qkv::var(rep), T(0.25));
  EXPECT_EQ(qkv::sum(x.view().transpose(0, 1)), T(40));
}

TYPED_TEST(Ops, MinAndMaxWithNegativeValues) {
  using T = TypeParam;
  const Tensor<T> x = {{-3, 8}, {-0.5, -9}};
  EXPECT_EQ(qkv::max(x), T(8));
  EXPECT_EQ(qkv::min(x), T(-9));
  EXPECT_EQ(qkv::max(Tensor<T>{-4, -2, -7}), T(-2));
}

TEST(Reductions, MaxAndMinOfEmptyTensorThrow) {
  const Tensor<float> e;
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { (void)qkv::max(e); }, {"qkv::max", "[0]"}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { (void)qkv::min(e); }, {"[0]"}));
}

TEST(Reductions, OfIntTensor) {
  const Tensor<int> x = {{3, -7}, {10, 0}};
  EXPECT_EQ(qkv::sum(x), 6);
  EXPECT_EQ(qkv::max(x), 10);
  EXPECT_EQ(qkv::min(x), -7);
}

TEST(Reductions, MinOfUnsignedTensor) {
  const Tensor<unsigned> x = {3u, 0u, 5u};
  EXPECT_EQ(qkv::max(x), 5u);
  EXPECT_EQ(qkv::min(x), 0u);
}

// ---- reductions along a dimension ------------------------------------------------------------

TYPED_TEST(Ops, SumAlongDims) {
  using T = TypeParam;
  const Tensor<T> x = {{1, 2, 3}, {4, 5, 6}};
  const Tensor<T> s0 = qkv::sum(x, 0);
  EXPECT_EQ(s0.shape(), (Shape{3}));
  EXPECT_EQ(Values(s0), (std::vector<T>{5, 7, 9}));
  EXPECT_EQ(qkv::sum(x, 0, true).shape(), (Shape{1, 3}));
  EXPECT_EQ(Values(qkv::sum(x, 0, true)), (std::vector<T>{5, 7, 9}));
  EXPECT_EQ(Values(qkv::sum(x, 1)), (std::vector<T>{6, 15}));
  EXPECT_EQ(qkv::sum(x, -1).shape(), (Shape{2}));
  EXPECT_EQ(qkv::sum(x, -1, true).shape(), (Shape{2, 1}));
  EXPECT_EQ(Values(qkv::sum(x, -1, true)), (std::vector<T>{6, 15}));
  EXPECT_EQ(Values(qkv::sum(x, -2)), (std::vector<T>{5, 7, 9}));
}

TYPED_TEST(Ops, MeanAlongDims) {
  using T = TypeParam;
  const Tensor<T> x = {{1, 2, 3}, {4, 5, 6}};
  EXPECT_EQ(Values(qkv::mean(x, 0)), (std::vector<T>{2.5, 3.5, 4.5}));
  EXPECT_EQ(Values(qkv::mean(x, -1)), (std::vector<T>{2, 5}));
  EXPECT_EQ(qkv::mean(x, -1, true).shape(), (Shape{2, 1}));
  EXPECT_EQ(qkv::mean(x, 0, false).shape(), (Shape{3}));
}

TYPED_TEST(Ops, VarAlongDims) {
  using T = TypeParam;
  const Tensor<T> x = {{1, 2, 3}, {4, 5, 6}};
  // numpy.var(x, axis=0) == [2.25, 2.25, 2.25]; numpy.var(x, axis=1) == [2/3, 2/3].
  EXPECT_EQ(Values(qkv::var(x, 0)), (std::vector<T>{2.25, 2.25, 2.25}));
  const Tensor<T> v1 = qkv::var(x, -1, true);
  EXPECT_EQ(v1.shape(), (Shape{2, 1}));
  for (T v : v1) EXPECT_NEAR(v, T(2) / T(3), 4 * kEps<T>);
}

TYPED_TEST(Ops, AmaxAlongDims) {
  using T = TypeParam;
  const Tensor<T> x = {{1, 9, 3}, {7, 5, 6}};
  EXPECT_EQ(Values(qkv::amax(x, 0)), (std::vector<T>{7, 9, 6}));
  EXPECT_EQ(Values(qkv::amax(x, 1)), (std::vector<T>{9, 7}));
  EXPECT_EQ(qkv::amax(x, -1, true).shape(), (Shape{2, 1}));
  EXPECT_EQ(Values(qkv::amax(x, -2, true)), (std::vector<T>{7, 9, 6}));
  EXPECT_EQ(qkv::amax(x, -2, true).shape(), (Shape{1, 3}));
}

TYPED_TEST(Ops, ReductionsAlongMiddleDimOfRank3) {
  using T = TypeParam;
  Tensor<T> x = Tensor<T>::zeros({2, 3, 2});
  std::iota(x.begin(), x.end(), T(0));  // x[b][l][e] = 6b + 2l + e
  EXPECT_EQ(qkv::sum(x, 1).shape(), (Shape{2, 2}));
  EXPECT_EQ(Values(qkv::sum(x, 1)), (std::vector<T>{6, 9, 24, 27}));
  EXPECT_EQ(qkv::sum(x, -2, true).shape(), (Shape{2, 1, 2}));
  EXPECT_EQ(Values(qkv::mean(x, 1)), (std::vector<T>{2, 3, 8, 9}));
  EXPECT_EQ(Values(qkv::amax(x, -2)), (std::vector<T>{4, 5, 10, 11}));
  for (T v : qkv::var(x, 1)) EXPECT_NEAR(v, T(8) / T(3), 8 * kEps<T>);  // var({0, 2, 4}) = 8/3
  EXPECT_EQ(Values(qkv::sum(x, 0)), (std::vector<T>{6, 8, 10, 12, 14, 16}));
  EXPECT_EQ(Values(qkv::sum(x, 2)), (std::vector<T>{1, 5, 9, 13, 17, 21}));
}

TYPED_TEST(Ops, ReductionAlongDimOfATransposedView) {
  using T = TypeParam;
  const Tensor<T> x = {{1, 2, 3}, {4, 5, 6}};
  const auto xt = x.view().transpose(0, 1);  // [[1, 4], [2, 5], [3, 6]]
  EXPECT_EQ(Values(qkv::sum(xt, 1)), (std::vector<T>{5, 7, 9}));
  EXPECT_EQ(Values(qkv::amax(xt, 0)), (std::vector<T>{3, 6}));
}

TEST(Reductions, DimOutOfRangeThrows) {
  const auto x = Tensor<float>::zeros({2, 3});
  EXPECT_TRUE(ThrowsWith<std::out_of_range>([&] { (void)qkv::sum(x, 2); }, {"qkv::sum", "2"}));
  EXPECT_TRUE(ThrowsWith<std::out_of_range>([&] { (void)qkv::mean(x, -3); }, {"qkv::mean", "-3"}));
  EXPECT_TRUE(ThrowsWith<std::out_of_range>([&] { (void)qkv::var(x, 5); }, {"qkv::var"}));
  EXPECT_TRUE(ThrowsWith<std::out_of_range>([&] { (void)qkv::amax(x, 2); }, {"qkv::amax"}));
}

TEST(Reductions, AmaxOfEmptyDimensionThrows) {
  const auto x = Tensor<float>::zeros({2, 0});
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { (void)qkv::amax(x, 1); }, {"qkv::amax"}));
}

// ---- dot --------------------------------------------------------------------------------------

TYPED_TEST(Ops, Dot) {
  using T = TypeParam;
  EXPECT_EQ(qkv::dot(Tensor<T>{1, 2, 3}, Tensor<T>{4, 5, 6}), T(32));
  const Tensor<T> m = {{1, 2}, {3, 4}, {5, 6}};
  EXPECT_EQ(qkv::dot(m.view().select(1, 0), m.view().select(1, 1)), T(44));  // 1*2 + 3*4 + 5*6
  EXPECT_EQ(qkv::dot(Tensor<T>(Shape{0}), Tensor<T>(Shape{0})), T(0));
}

TEST(Dot, ErrorNamesBothShapes) {
  const Tensor<float> a = {1, 2, 3};
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { (void)qkv::dot(a, Tensor<float>{1, 2, 3, 4}); },
                                                {"qkv::dot", "[3]", "[4]"}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { (void)qkv::dot(Tensor<float>::zeros({3, 1}), a); },
                                                {"qkv::dot", "[3,1]", "[3]"}));
}

// ---- matmul -------------------------------------------------------------------------------------

TEST(Matmul, SmallIntegerMatricesExactly) {
  const Tensor<float> a = {{1, 2}, {3, 4}};
  const Tensor<float> b = {{5, 6}, {7, 8}};
  const Tensor<float> c = qkv::matmul(a, b);
  EXPECT_EQ(c.shape(), (Shape{2, 2}));
  EXPECT_EQ(Values(c), (std::vector<float>{19, 22, 43, 50}));
  const Tensor<float> r = qkv::matmul(Tensor<float>{{1, 0, 2}}, Tensor<float>{{1, 2}, {3, 4}, {5, 6}});
  EXPECT_EQ(r.shape(), (Shape{1, 2}));
  EXPECT_EQ(Values(r), (std::vector<float>{11, 14}));
}

TYPED_TEST(Ops, MatmulRank2MatchesTripleLoop) {
  using T = TypeParam;
  const Tensor<T> a = Wave<T>({5, 7}, 0.1);
  const Tensor<T> b = Wave<T>({7, 3}, 1.3);
  const Tensor<T> c = qkv::matmul(a, b);
  ExpectMatmulMatchesTripleLoop<T>(a, b, c);
  const Tensor<T> big_a = Wave<T>({33, 70}, 0.7);  // large enough for Eigen's blocked GEMM
  const Tensor<T> big_b = Wave<T>({70, 41}, 2.9);
  ExpectMatmulMatchesTripleLoop<T>(big_a, big_b, qkv::matmul(big_a, big_b));
}

TYPED_TEST(Ops, MatmulBatchedRank3) {
  using T = TypeParam;
  const Tensor<T> a = Wave<T>({2, 3, 4}, 0.2);
  const Tensor<T> b = Wave<T>({2, 4, 5}, 0.9);
  const Tensor<T> c = qkv::matmul(a, b);
  ASSERT_EQ(c.shape(), (Shape{2, 3, 5}));
  for (Index i = 0; i < 2; ++i) ExpectMatmulMatchesTripleLoop<T>(a[i], b[i], c[i]);
}

TYPED_TEST(Ops, MatmulRank4BroadcastsRank2RightOperand) {
  using T = TypeParam;
  const Tensor<T> x = Wave<T>({2, 3, 4, 5}, 0.4);
  const Tensor<T> w = Wave<T>({5, 2}, 1.7);
  const Tensor<T> y = qkv::matmul(x, w);
  ASSERT_EQ(y.shape(), (Shape{2, 3, 4, 2}));
  for (Index b = 0; b < 2; ++b)
    for (Index h = 0; h < 3; ++h) ExpectMatmulMatchesTripleLoop<T>(x[b][h], w, y[b][h]);
}

TYPED_TEST(Ops, MatmulBroadcastsRank2LeftOperand) {
  using T = TypeParam;
  const Tensor<T> w = Wave<T>({3, 4}, 0.5);
  const Tensor<T> x = Wave<T>({2, 4, 5}, 2.2);
  const Tensor<T> y = qkv::matmul(w, x);
  ASSERT_EQ(y.shape(), (Shape{2, 3, 5}));
  for (Index b = 0; b < 2; ++b) ExpectMatmulMatchesTripleLoop<T>(w, x[b], y[b]);
}

TYPED_TEST(Ops, MatmulBroadcastsBatchDimensionsOfSizeOne) {
  using T = TypeParam;
  const Tensor<T> a = Wave<T>({2, 1, 3, 4}, 0.3);
  const Tensor<T> b = Wave<T>({3, 4, 2}, 1.1);
  const Tensor<T> c = qkv::matmul(a, b);
  ASSERT_EQ(c.shape(), (Shape{2, 3, 3, 2}));
  for (Index i = 0; i < 2; ++i)
    for (Index j = 0; j < 3; ++j) ExpectMatmulMatchesTripleLoop<T>(a[i][0], b[j], c[i][j]);
}

TYPED_TEST(Ops, MatmulMatrixVector) {
  using T = TypeParam;
  const Tensor<T> m = {{1, 2, 3}, {4, 5, 6}};
  const Tensor<T> mv = qkv::matmul(m, Tensor<T>{1, 0, -1});
  EXPECT_EQ(mv.shape(), (Shape{2}));
  EXPECT_EQ(Values(mv), (std::vector<T>{-2, -2}));
  const Tensor<T> vm = qkv::matmul(Tensor<T>{1, 2}, m);
  EXPECT_EQ(vm.shape(), (Shape{3}));
  EXPECT_EQ(Values(vm), (std::vector<T>{9, 12, 15}));
}

TYPED_TEST(Ops, MatmulVectorVectorIsRankZero) {
  using T = TypeParam;
  const Tensor<T> s = qkv::matmul(Tensor<T>{1, 2, 3}, Tensor<T>{4, 5, 6});
  EXPECT_EQ(s.rank(), 0);
  EXPECT_EQ(s.item(), T(32));
}

TYPED_TEST(Ops, MatmulBatchedWithVector) {
  using T = TypeParam;
  const Tensor<T> a = {{{1, 2, 3}, {4, 5, 6}}, {{7, 8, 9}, {10, 11, 12}}};  // [2,2,3]
  const Tensor<T> av = qkv::matmul(a, Tensor<T>{1, 0, -1});
  EXPECT_EQ(av.shape(), (Shape{2, 2}));
  EXPECT_EQ(Values(av), (std::vector<T>{-2, -2, -2, -2}));
  const Tensor<T> b = {{{1, 2}, {3, 4}, {5, 6}}, {{0, 1}, {1, 0}, {2, 2}}};  // [2,3,2]
  const Tensor<T> vb = qkv::matmul(Tensor<T>{1, 1, 1}, b);
  EXPECT_EQ(vb.shape(), (Shape{2, 2}));
  EXPECT_EQ(Values(vb), (std::vector<T>{9, 12, 3, 3}));
}

TYPED_TEST(Ops, MatmulOfTransposedViews) {
  using T = TypeParam;
  const Tensor<T> at = {{1, 4}, {2, 5}, {3, 6}};  // a = at^T = [[1,2,3],[4,5,6]]
  const Tensor<T> b = {{1, 0}, {0, 1}, {1, 1}};
  const Tensor<T> c = qkv::matmul(at.view().transpose(0, 1), b);
  EXPECT_EQ(c.shape(), (Shape{2, 2}));
  EXPECT_EQ(Values(c), (std::vector<T>{4, 5, 10, 11}));
  // a @ a^T with the right operand a transposed view: [[14, 32], [32, 77]].
  const Tensor<T> a = {{1, 2, 3}, {4, 5, 6}};
  EXPECT_EQ(Values(qkv::matmul(a, a.view().transpose(0, 1))), (std::vector<T>{14, 32, 32, 77}));
  // Batched: q @ k.transpose(-2, -1).
  const Tensor<T> q = Wave<T>({2, 3, 4}, 0.8);
  const Tensor<T> k = Wave<T>({2, 5, 4}, 1.9);
  const Tensor<T> s = qkv::matmul(q, k.view().transpose(-2, -1));
  ASSERT_EQ(s.shape(), (Shape{2, 3, 5}));
  for (Index i = 0; i < 2; ++i) ExpectMatmulMatchesTripleLoop<T>(q[i], k[i].transpose(0, 1), s[i]);
}

TYPED_TEST(Ops, MatmulOfStridedAndExpandedViews) {
  using T = TypeParam;
  const Tensor<T> m = {{1, 2, 3}, {4, 5, 6}, {7, 8, 9}};
  const Tensor<T> col = qkv::matmul(m, m.view().select(1, 0));  // m @ [1, 4, 7]
  EXPECT_EQ(Values(col), (std::vector<T>{30, 66, 102}));
  const Tensor<T> row = {1, 0, 1};
  const Tensor<T> rep = qkv::matmul(row.view().expand({2, 3}), m);  // two copies of row @ m
  EXPECT_EQ(rep.shape(), (Shape{2, 3}));
  EXPECT_EQ(Values(rep), (std::vector<T>{8, 10, 12, 8, 10, 12}));
  const Tensor<T> outer = qkv::matmul(m, row.view().expand({3, 3}));  // row sums of m times row
  EXPECT_EQ(Values(outer), (std::vector<T>{6, 0, 6, 15, 0, 15, 24, 0, 24}));
  const Tensor<T> cols = qkv::matmul(m.view().narrow(1, 1, 2), Tensor<T>{{1, 1}, {0, 1}});  // [[2,3],[5,6],[8,9]] @ ..
  EXPECT_EQ(Values(cols), (std::vector<T>{2, 5, 5, 11, 8, 17}));
}

TEST(Matmul, EmptyInnerDimensionGivesZeros) {
  const Tensor<float> c = qkv::matmul(Tensor<float>::zeros({2, 0}), Tensor<float>::zeros({0, 3}));
  EXPECT_EQ(c.shape(), (Shape{2, 3}));
  for (float v : c) EXPECT_EQ(v, 0.0f);
}

TEST(Matmul, InnerDimensionMismatchNamesBothShapes) {
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(
      [] { (void)qkv::matmul(Tensor<float>::zeros({2, 3}), Tensor<float>::zeros({4, 5})); },
      {"qkv::matmul", "[2,3]", "[4,5]"}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(
      [] { (void)qkv::matmul(Tensor<float>::zeros({3}), Tensor<float>::zeros({4})); }, {"qkv::matmul", "[3]", "[4]"}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(
      [] { (void)qkv::matmul(Tensor<float>::zeros({2, 3, 4}), Tensor<float>::zeros({2, 5, 6})); },
      {"qkv::matmul", "[2,3,4]", "[2,5,6]"}));
}

TEST(Matmul, BatchMismatchNamesBothShapes) {
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(
      [] { (void)qkv::matmul(Tensor<float>::zeros({2, 3, 4}), Tensor<float>::zeros({3, 4, 5})); },
      {"qkv::matmul: batch dimensions do not broadcast", "[2,3,4]", "[3,4,5]"}));
}

TEST(Matmul, ScalarOperandThrows) {
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(
      [] { (void)qkv::matmul(Tensor<float>::scalar(2), Tensor<float>::zeros({2, 2})); }, {"qkv::matmul", "[]", "[2,2]"}));
}

// ---- transpose and stack ----------------------------------------------------------------------

TEST(Transpose, SwapsTheLastTwoDimensionsIntoACopy) {
  const Tensor<float> a = {{1, 2, 3}, {4, 5, 6}};
  const Tensor<float> t = qkv::transpose(a);
  EXPECT_EQ(t.shape(), (Shape{3, 2}));
  EXPECT_EQ(Values(t), (std::vector<float>{1, 4, 2, 5, 3, 6}));
  EXPECT_NE(t.data(), a.data());
}

TEST(Transpose, OfRank3AndOfAView) {
  Tensor<float> x = Tensor<float>::zeros({2, 3, 4});
  std::iota(x.begin(), x.end(), 0.0f);
  const Tensor<float> t = qkv::transpose(x);
  ASSERT_EQ(t.shape(), (Shape{2, 4, 3}));
  for (Index b = 0; b < 2; ++b)
    for (Index i = 0; i < 3; ++i)
      for (Index j = 0; j < 4; ++j) EXPECT_EQ(t(b, j, i), x(b, i, j));
  EXPECT_EQ(Values(qkv::transpose(x[1].transpose(0, 1))), Values(Tensor<float>(x[1])));
}

TEST(Transpose, OfRank1IsACopyOfItself) {
  const Tensor<float> v = {1, 2, 3};
  const Tensor<float> t = qkv::transpose(v);
  EXPECT_EQ(t.shape(), (Shape{3}));
  EXPECT_EQ(Values(t), (std::vector<float>{1, 2, 3}));
}

TEST(Stack, AddsALeadingDimension) {
  const std::vector<Tensor<float>> parts = {{1, 2}, {3, 4}, {5, 6}};
  const Tensor<float> s = qkv::stack(parts);
  EXPECT_EQ(s.shape(), (Shape{3, 2}));
  EXPECT_EQ(Values(s), (std::vector<float>{1, 2, 3, 4, 5, 6}));
}

TEST(Stack, OfViews) {
  const Tensor<float> m = {{1, 2, 3}, {4, 5, 6}};
  const std::vector<TensorView<const float>> cols = {m.view().select(1, 2), m.view().select(1, 0)};
  const Tensor<float> s = qkv::stack(cols);
  EXPECT_EQ(s.shape(), (Shape{2, 2}));
  EXPECT_EQ(Values(s), (std::vector<float>{3, 6, 1, 4}));
  const std::vector<Tensor<float>> scalars = {Tensor<float>::scalar(7), Tensor<float>::scalar(8)};
  EXPECT_EQ(qkv::stack(scalars).shape(), (Shape{2}));
}

TEST(Stack, Errors) {
  const std::vector<Tensor<float>> ragged = {{1, 2}, {3, 4, 5}};
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { (void)qkv::stack(ragged); }, {"qkv::stack", "[3]", "[2]"}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([] { (void)qkv::stack(std::vector<Tensor<float>>{}); }, {"qkv::stack"}));
}

// ---- triu and tril -----------------------------------------------------------------------------

// numpy.arange(1, 21).reshape(4, 5) and numpy.triu / numpy.tril of it.
Tensor<float> Arange4x5() {
  Tensor<float> t = Tensor<float>::zeros({4, 5});
  std::iota(t.begin(), t.end(), 1.0f);
  return t;
}

TEST(Triangle, TriuOf4x5) {
  const Tensor<float> a = Arange4x5();
  EXPECT_EQ(Values(qkv::triu(a, -1)),
            (std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 12, 13, 14, 15, 0, 0, 18, 19, 20}));
  EXPECT_EQ(Values(qkv::triu(a)), (std::vector<float>{1, 2, 3, 4, 5, 0, 7, 8, 9, 10, 0, 0, 13, 14, 15, 0, 0, 0, 19, 20}));
  EXPECT_EQ(Values(qkv::triu(a, 1)), (std::vector<float>{0, 2, 3, 4, 5, 0, 0, 8, 9, 10, 0, 0, 0, 14, 15, 0, 0, 0, 0, 20}));
  EXPECT_EQ(qkv::triu(a, 1).shape(), (Shape{4, 5}));
}

TEST(Triangle, TrilOf4x5) {
  const Tensor<float> a = Arange4x5();
  EXPECT_EQ(Values(qkv::tril(a, -1)), (std::vector<float>{0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 11, 12, 0, 0, 0, 16, 17, 18, 0, 0}));
  EXPECT_EQ(Values(qkv::tril(a)), (std::vector<float>{1, 0, 0, 0, 0, 6, 7, 0, 0, 0, 11, 12, 13, 0, 0, 16, 17, 18, 19, 0}));
  EXPECT_EQ(Values(qkv::tril(a, 1)),
            (std::vector<float>{1, 2, 0, 0, 0, 6, 7, 8, 0, 0, 11, 12, 13, 14, 0, 16, 17, 18, 19, 20}));
}

TEST(Triangle, BatchedTriuAndTril) {
  Tensor<float> b = Tensor<float>::zeros({2, 3, 3});
  std::iota(b.begin(), b.end(), 1.0f);  // numpy.arange(1, 19).reshape(2, 3, 3)
  EXPECT_EQ(Values(qkv::triu(b, -1)), (std::vector<float>{1, 2, 3, 4, 5, 6, 0, 8, 9, 10, 11, 12, 13, 14, 15, 0, 17, 18}));
  EXPECT_EQ(Values(qkv::triu(b, 0)), (std::vector<float>{1, 2, 3, 0, 5, 6, 0, 0, 9, 10, 11, 12, 0, 14, 15, 0, 0, 18}));
  EXPECT_EQ(Values(qkv::triu(b, 1)), (std::vector<float>{0, 2, 3, 0, 0, 6, 0, 0, 0, 0, 11, 12, 0, 0, 15, 0, 0, 0}));
  EXPECT_EQ(Values(qkv::tril(b, -1)), (std::vector<float>{0, 0, 0, 4, 0, 0, 7, 8, 0, 0, 0, 0, 13, 0, 0, 16, 17, 0}));
  EXPECT_EQ(Values(qkv::tril(b, 0)), (std::vector<float>{1, 0, 0, 4, 5, 0, 7, 8, 9, 10, 0, 0, 13, 14, 0, 16, 17, 18}));
  EXPECT_EQ(Values(qkv::tril(b, 1)), (std::vector<float>{1, 2, 0, 4, 5, 6, 7, 8, 9, 10, 11, 0, 13, 14, 15, 16, 17, 18}));
  EXPECT_EQ(qkv::tril(b, 1).shape(), (Shape{2, 3, 3}));
}

TEST(Triangle, OfATransposedView) {
  const Tensor<float> a = {{1, 2}, {3, 4}};
  EXPECT_EQ(Values(qkv::triu(a.view().transpose(0, 1))), (std::vector<float>{1, 3, 0, 4}));
  EXPECT_EQ(Values(qkv::tril(a.view().transpose(0, 1))), (std::vector<float>{1, 0, 2, 4}));
}

TEST(Triangle, RankBelowTwoThrows) {
  const Tensor<float> v = {1, 2, 3};
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { (void)qkv::triu(v); }, {"qkv::triu", "[3]"}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { (void)qkv::tril(v); }, {"qkv::tril", "[3]"}));
}

}  // namespace
