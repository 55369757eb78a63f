// SPDX-License-Identifier: MIT
// Tests for qkv::softmax (softmax.hpp). Each result is checked against a reference
// computed here in long double from the definition, exp(x_i - max) / sum_j exp(x_j - max),
// and against PyTorch's torch.softmax for a published example.
#include <qkv/softmax.hpp>
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
#include <vector>

namespace {

using qkv::test::FloatTypeNames;
using qkv::test::FloatTypes;
using qkv::test::ThrowsWith;
using qkv::Index;
using qkv::Shape;
using qkv::Tensor;
using qkv::TensorView;

// Same shape and bitwise-equal elements (softmax.hpp alone is under test, not ops.hpp).
template <class T>
::testing::AssertionResult Identical(const Tensor<T>& a, const Tensor<T>& b) {
  if (a.shape() != b.shape()) return ::testing::AssertionFailure() << a.shape().str() << " vs " << b.shape().str();
  for (Index i = 0; i < a.numel(); ++i)
    if (!(a.data()[i] == b.data()[i]))
      return ::testing::AssertionFailure() << "element " << i << ": " << a.data()[i] << " vs " << b.data()[i];
  return ::testing::AssertionSuccess();
}

template <class T>
constexpr T kEps = std::numeric_limits<T>::epsilon();

// Tolerance for one softmax output p over a line of n logits spread over at most `range`:
// the argument x - max is rounded (error up to range * eps/2, relative in exp), exp and the
// division add an ulp each, and the n-term sum up to n ulps.
template <class T>
double Tolerance(double p, Index n, double range) {
  return (static_cast<double>(n) + 2.0 + range) * static_cast<double>(kEps<T>) * p;
}

// softmax of the line x[offset + i * stride], i < n, in long double.
template <class T>
std::vector<long double> ReferenceLine(const T* x, Index stride, Index n) {
  long double m = -std::numeric_limits<long double>::infinity();
  for (Index i = 0; i < n; ++i) m = std::max(m, static_cast<long double>(x[i * stride]));
  std::vector<long double> e(static_cast<std::size_t>(n));
  long double sum = 0;
  for (Index i = 0; i < n; ++i) sum += e[static_cast<std::size_t>(i)] = std::exp(static_cast<long double>(x[i * stride]) - m);
  for (long double& v : e) v /= sum;
  return e;
}

// Deterministic logits in [-3, 3].
template <class T>
Tensor<T> Logits(const Shape& shape) {
  Tensor<T> t(shape);
  for (Index i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(3.0 * std::sin(1.3 * static_cast<double>(i) + 0.4));
  return t;
}

// Checks y == softmax(x, dim) for a contiguous rank-3 x: every line along `dim` against
// the reference, and every line summing to 1.
template <class T>
void ExpectSoftmaxOfRank3(const Tensor<T>& x, int dim, const Tensor<T>& y) {
  ASSERT_EQ(y.shape(), x.shape());
  const int d = dim < 0 ? dim + 3 : dim;
  const Index n = x.size(d), stride = x.strides()[d];
  int other[2], k = 0;
  for (int i = 0; i < 3; ++i)
    if (i != d) other[k++] = i;
  for (Index a = 0; a < x.size(other[0]); ++a)
    for (Index b = 0; b < x.size(other[1]); ++b) {
      const Index base = a * x.strides()[other[0]] + b * x.strides()[other[1]];
      const std::vector<long double> ref = ReferenceLine(x.data() + base, stride, n);
      long double sum = 0;
      for (Index i = 0; i < n; ++i) {
        const double got = static_cast<double>(y.data()[base + i * stride]);
        const double want = static_cast<double>(ref[static_cast<std::size_t>(i)]);
        EXPECT_NEAR(got, want, Tolerance<T>(want, n, 6.0)) << "dim " << dim << ", line (" << a << ", " << b << "), i " << i;
        sum += got;
      }
      EXPECT_NEAR(static_cast<double>(sum), 1.0, (2.0 * static_cast<double>(n) + 8.0) * static_cast<double>(kEps<T>));
    }
}

template <class T>
class Softmax : public ::testing::Test {};
TYPED_TEST_SUITE(Softmax, FloatTypes, FloatTypeNames);

TYPED_TEST(Softmax, MatchesHandComputationOnThreeValues) {
  using T = TypeParam;
  // softmax([1, 2, 3]) = [e^-2, e^-1, 1] / (1 + e^-1 + e^-2).
  const Tensor<T> y = qkv::softmax(Tensor<T>{1, 2, 3}, 0);
  const long double s = 1.0L + std::exp(-1.0L) + std::exp(-2.0L);
  EXPECT_EQ(y.shape(), (Shape{3}));
  EXPECT_NEAR(y(0), static_cast<double>(std::exp(-2.0L) / s), Tolerance<T>(0.09, 3, 2.0));
  EXPECT_NEAR(y(1), static_cast<double>(std::exp(-1.0L) / s), Tolerance<T>(0.25, 3, 2.0));
  EXPECT_NEAR(y(2), static_cast<double>(1.0L / s), Tolerance<T>(0.67, 3, 2.0));
}

TYPED_TEST(Softmax, LastDimOfRank3) {
  using T = TypeParam;
  const Tensor<T> x = Logits<T>({2, 3, 5});
  ExpectSoftmaxOfRank3(x, -1, qkv::softmax(x, -1));
  EXPECT_TRUE(Identical(qkv::softmax(x, -1), qkv::softmax(x, 2)));
}

TYPED_TEST(Softmax, FirstDimOfRank3) {
  using T = TypeParam;
  const Tensor<T> x = Logits<T>({4, 3, 2});
  ExpectSoftmaxOfRank3(x, 0, qkv::softmax(x, 0));
  EXPECT_TRUE(Identical(qkv::softmax(x, 0), qkv::softmax(x, -3)));
}

TYPED_TEST(Softmax, MiddleDimOfRank3) {
  using T = TypeParam;
  const Tensor<T> x = Logits<T>({2, 6, 3});
  ExpectSoftmaxOfRank3(x, 1, qkv::softmax(x, 1));
  EXPECT_TRUE(Identical(qkv::softmax(x, 1), qkv::softmax(x, -2)));
}

TYPED_TEST(Softmax, LargeLogitsDoNotOverflow) {
  using T = TypeParam;
  const Tensor<T> y = qkv::softmax(Tensor<T>{1000, 1001, 1002}, -1);
  // Shift-invariant: the same as softmax([0, 1, 2]).
  const long double s = 1.0L + std::exp(-1.0L) + std::exp(-2.0L);
  const double want[] = {static_cast<double>(std::exp(-2.0L) / s), static_cast<double>(std::exp(-1.0L) / s),
                         static_cast<double>(1.0L / s)};
  for (Index i = 0; i < 3; ++i) {
    ASSERT_TRUE(std::isfinite(y(i)));
    EXPECT_NEAR(y(i), want[i], Tolerance<T>(want[i], 3, 2.0));
  }
  // torch.softmax(torch.tensor([1000., 1001., 1002.]), 0) = [0.0900, 0.2447, 0.6652].
  EXPECT_NEAR(y(0), 0.0900, 0.5e-4);
  EXPECT_NEAR(y(1), 0.2447, 0.5e-4);
  EXPECT_NEAR(y(2), 0.6652, 0.5e-4);
}

TYPED_TEST(Softmax, VeryNegativeLogitsDoNotUnderflowToNaN) {
  using T = TypeParam;
  const Tensor<T> y = qkv::softmax(Tensor<T>{-1000, -1000}, 0);
  EXPECT_EQ(y(0), T(0.5));
  EXPECT_EQ(y(1), T(0.5));
}

TYPED_TEST(Softmax, AllMinusInfinityLineIsNaN) {
  using T = TypeParam;
  const T inf = std::numeric_limits<T>::infinity();
  const Tensor<T> x = {{-inf, -inf, -inf}, {0, 0, 0}};
  const Tensor<T> y = qkv::softmax(x, -1);
  for (Index j = 0; j < 3; ++j) {
    EXPECT_TRUE(std::isnan(y(0, j))) << y(0, j);  // as torch.softmax
    EXPECT_NEAR(y(1, j), 1.0 / 3.0, Tolerance<T>(1.0 / 3.0, 3, 0.0));
  }
}

TYPED_TEST(Softmax, MinusInfinityEntriesGetZeroWeight) {
  using T = TypeParam;
  const T inf = std::numeric_limits<T>::infinity();
  const Tensor<T> y = qkv::softmax(Tensor<T>{-inf, 2, 2, -inf}, 0);
  EXPECT_EQ(y(0), T(0));
  EXPECT_EQ(y(1), T(0.5));
  EXPECT_EQ(y(2), T(0.5));
  EXPECT_EQ(y(3), T(0));
}

TYPED_TEST(Softmax, OfATransposedView) {
  using T = TypeParam;
  const Tensor<T> x = Logits<T>({3, 4});
  const TensorView<const T> xt = x.view().transpose(0, 1);  // [4,3], strides [1,4]
  const Tensor<T> y = qkv::softmax(xt, -1);
  ASSERT_EQ(y.shape(), (Shape{4, 3}));
  for (Index i = 0; i < 4; ++i) {
    const std::vector<long double> ref = ReferenceLine(x.data() + i, 4, 3);  // column i of x
    for (Index j = 0; j < 3; ++j) {
      const double want = static_cast<double>(ref[static_cast<std::size_t>(j)]);
      EXPECT_NEAR(y(i, j), want, Tolerance<T>(want, 3, 6.0));
    }
  }
  EXPECT_TRUE(Identical(y, qkv::softmax(Tensor<T>(xt), 1)));
  EXPECT_TRUE(Identical(qkv::softmax(xt, 0), qkv::softmax(Tensor<T>(xt), 0)));
}

TYPED_TEST(Softmax, OfAStridedBLHEViewAsBHLE) {
  using T = TypeParam;
  constexpr Index B = 2, L = 3, H = 2, E = 4;
  const Tensor<T> buf = Logits<T>({B, L, H, E});
  const TensorView<const T> v(buf.data(), Shape{B, H, L, E}, qkv::Strides{L * H * E, E, H * E, 1});
  const Tensor<T> contiguous(v);
  for (int dim : {-1, 2}) EXPECT_TRUE(Identical(qkv::softmax(v, dim), qkv::softmax(contiguous, dim))) << dim;
  const Tensor<T> y = qkv::softmax(v, 2);  // along L
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < H; ++h)
      for (Index e = 0; e < E; ++e) {
        const std::vector<long double> ref = ReferenceLine(buf.data() + b * L * H * E + h * E + e, H * E, L);
        for (Index l = 0; l < L; ++l) {
          const double want = static_cast<double>(ref[static_cast<std::size_t>(l)]);
          EXPECT_NEAR(y(b, h, l, e), want, Tolerance<T>(want, L, 6.0));
        }
      }
}

TYPED_TEST(Softmax, MatchesTorchExample) {
  using T = TypeParam;
  // torch.softmax(torch.tensor([0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865]), dim=0)
  const Tensor<T> y = qkv::softmax(Tensor<T>{T(0.9544), T(1.4950), T(1.4754), T(0.8434), T(0.7070), T(1.0865)}, 0);
  const double torch[] = {0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581};
  ASSERT_EQ(y.shape(), (Shape{6}));
  for (Index i = 0; i < 6; ++i) EXPECT_NEAR(y(i), torch[i], 0.5e-4) << i;  // 4 decimals
}

TYPED_TEST(Softmax, DoesNotModifyItsInputAndReturnsAContiguousTensor) {
  using T = TypeParam;
  const Tensor<T> x = {{1, 2}, {3, 4}};
  const Tensor<T> y = qkv::softmax(x, 0);
  EXPECT_NE(y.data(), x.data());
  EXPECT_EQ(x(1, 1), T(4));
  EXPECT_TRUE(y.view().is_contiguous());
  static_assert(std::is_same_v<std::decay_t<decltype(y)>, Tensor<T>>);
}

TEST(SoftmaxErrors, DimOutOfRangeThrows) {
  const Tensor<float> x = Tensor<float>::zeros({2, 3});
  EXPECT_TRUE(ThrowsWith<std::out_of_range>([&] { (void)qkv::softmax(x, 2); }, {"qkv::softmax", "2"}));
  EXPECT_TRUE(ThrowsWith<std::out_of_range>([&] { (void)qkv::softmax(x, -3); }, {"qkv::softmax", "-3"}));
}

}  // namespace
