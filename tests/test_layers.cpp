// SPDX-License-Identifier: MIT
// qkv::ScaledDotProductAttention, the notebooks' single-head module: construction and its
// validation, the uniform and nn.Linear initialisations, the projections, the forward pass
// (self, batched, cross, causal, without weights) against scaled_dot_product_attention,
// and the results of the same module written in PyTorch.
#include <qkv/attention.hpp>
#include <qkv/layers.hpp>
#include <qkv/ops.hpp>
#include <qkv/random.hpp>
#include <qkv/tensor.hpp>

#include <gtest/gtest.h>

#include "test_util.hpp"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

using qkv::test::AllNear;

using qkv::AttentionOptions;
using qkv::Causal;
using qkv::Index;
using qkv::Shape;
using qkv::Tensor;

template <class T>
using Attention = qkv::ScaledDotProductAttention<T>;

template <class F>
void ExpectInvalidArgument(F&& f, const std::string& message) {
  try {
    f();
    ADD_FAILURE() << "no exception thrown; expected: " << message;
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), message);
  }
}

template <class T>
class LayersTest : public testing::Test {};
TYPED_TEST_SUITE(LayersTest, qkv::test::FloatTypes, qkv::test::FloatTypeNames);

// ---- construction and validation -------------------------------------------------------

TYPED_TEST(LayersTest, ConstructsFromProjectionMatrices) {
  using T = TypeParam;
  qkv::NumpyRandom rng(1);
  const Tensor<T> w_q = rng.rand<T>({4, 3}), w_k = rng.rand<T>({4, 3}), w_v = rng.rand<T>({4, 5});
  const Attention<T> m(w_q, w_k, w_v);
  EXPECT_EQ(m.d_model(), 4);
  EXPECT_EQ(m.d_k(), 3);
  EXPECT_EQ(m.d_v(), 5);
  EXPECT_FALSE(m.has_bias());
  EXPECT_TRUE(qkv::equal(m.w_q(), w_q));
  EXPECT_TRUE(qkv::equal(m.w_k(), w_k));
  EXPECT_TRUE(qkv::equal(m.w_v(), w_v));

  const Tensor<T> b_q = rng.rand<T>({3}), b_k = rng.rand<T>({3}), b_v = rng.rand<T>({5});
  const Attention<T> biased(w_q, w_k, w_v, b_q, b_k, b_v);
  EXPECT_TRUE(biased.has_bias());
  EXPECT_TRUE(qkv::equal(biased.b_q(), b_q));
  EXPECT_TRUE(qkv::equal(biased.b_k(), b_k));
  EXPECT_TRUE(qkv::equal(biased.b_v(), b_v));
}

TYPED_TEST(LayersTest, RejectsMisshapenWeightsNamingTheShapes) {
  using T = TypeParam;
  const auto zeros = [](Shape s) { return Tensor<T>::zeros(s); };
  ExpectInvalidArgument([&] { Attention<T>(zeros({8}), zeros({8, 4}), zeros({8, 3})); },
                        "qkv::ScaledDotProductAttention: projections must be matrices (W_q [8], W_k [8,4], W_v [8,3])");
  ExpectInvalidArgument(
      [&] { Attention<T>(zeros({8, 4}), zeros({2, 8, 4}), zeros({8, 3})); },
      "qkv::ScaledDotProductAttention: projections must be matrices (W_q [8,4], W_k [2,8,4], W_v [8,3])");
  ExpectInvalidArgument([&] { Attention<T>(zeros({8, 4}), zeros({8, 4}), zeros({})); },
                        "qkv::ScaledDotProductAttention: projections must be matrices (W_q [8,4], W_k [8,4], W_v [])");
  ExpectInvalidArgument([&] { Attention<T>(zeros({8, 4}), zeros({8, 5}), zeros({8, 3})); },
                        "qkv::ScaledDotProductAttention: W_k must have W_q's shape (d_model, d_k) "
                        "(W_q [8,4], W_k [8,5], W_v [8,3])");
  ExpectInvalidArgument([&] { Attention<T>(zeros({8, 4}), zeros({7, 4}), zeros({8, 3})); },
                        "qkv::ScaledDotProductAttention: W_k must have W_q's shape (d_model, d_k) "
                        "(W_q [8,4], W_k [7,4], W_v [8,3])");
  ExpectInvalidArgument([&] { Attention<T>(zeros({8, 4}), zeros({8, 4}), zeros({7, 3})); },
                        "qkv::ScaledDotProductAttention: W_v must have d_model = 8 rows "
                        "(W_q [8,4], W_k [8,4], W_v [7,3])");
}

TYPED_TEST(LayersTest, RejectsBiasesOfTheWrongLength) {
  using T = TypeParam;
  const auto zeros = [](Shape s) { return Tensor<T>::zeros(s); };
  const std::string shapes = " (W_q [8,4], W_k [8,4], W_v [8,3])";
  ExpectInvalidArgument(
      [&] { Attention<T>(zeros({8, 4}), zeros({8, 4}), zeros({8, 3}), zeros({3}), zeros({4}), zeros({3})); },
      "qkv::ScaledDotProductAttention: bias b_q of shape [3], expected [4]" + shapes);
  ExpectInvalidArgument(
      [&] { Attention<T>(zeros({8, 4}), zeros({8, 4}), zeros({8, 3}), zeros({4}), zeros({1, 4}), zeros({3})); },
      "qkv::ScaledDotProductAttention: bias b_k of shape [1,4], expected [4]" + shapes);
  ExpectInvalidArgument(
      [&] { Attention<T>(zeros({8, 4}), zeros({8, 4}), zeros({8, 3}), zeros({4}), zeros({4}), zeros({4})); },
      "qkv::ScaledDotProductAttention: bias b_v of shape [4], expected [3]" + shapes);
  ExpectInvalidArgument(
      [&] { Attention<T>(zeros({8, 4}), zeros({8, 4}), zeros({8, 3}), zeros({4}), zeros({4}), Tensor<T>()); },
      "qkv::ScaledDotProductAttention: bias b_v of shape [0], expected [3]" + shapes);
}

TYPED_TEST(LayersTest, InitialisersRejectNonPositiveSizes) {
  using T = TypeParam;
  qkv::NumpyRandom rng(0);
  ExpectInvalidArgument([&] { Attention<T>::uniform(0, 4, 4, rng); },
                        "qkv::ScaledDotProductAttention::uniform: sizes must be positive, got d_model 0, d_k 4, d_v 4");
  ExpectInvalidArgument([&] { Attention<T>::linear_init(8, -1, 4, rng); },
                        "qkv::ScaledDotProductAttention::linear_init: sizes must be positive, got d_model 8, d_k -1, "
                        "d_v 4");
  ExpectInvalidArgument([&] { Attention<T>::linear_init(8, 4, 0, rng, true); },
                        "qkv::ScaledDotProductAttention::linear_init: sizes must be positive, got d_model 8, d_k 4, "
                        "d_v 0");
}

// ---- initialisation --------------------------------------------------------------------

TYPED_TEST(LayersTest, UniformDrawsWqWkWvInOrderInZeroOne) {
  using T = TypeParam;
  qkv::NumpyRandom rng(42), numpy(42);
  const auto m = Attention<T>::uniform(6, 4, 5, rng);
  // np.random.seed(42); W_q = np.random.rand(6, 4); W_k = ...; W_v = np.random.rand(6, 5)
  EXPECT_TRUE(qkv::equal(m.w_q(), numpy.rand<T>({6, 4})));
  EXPECT_TRUE(qkv::equal(m.w_k(), numpy.rand<T>({6, 4})));
  EXPECT_TRUE(qkv::equal(m.w_v(), numpy.rand<T>({6, 5})));
  EXPECT_EQ(rng.random_double(), numpy.random_double()) << "uniform draws nothing else";
  EXPECT_FALSE(m.has_bias());
  for (const Tensor<T>* w : {&m.w_q(), &m.w_k(), &m.w_v()})
    for (T v : *w) {
      EXPECT_GE(v, T(0));
      EXPECT_LT(v, T(1));
    }
}

TYPED_TEST(LayersTest, LinearInitDrawsWithinNnLinearBoundsWeightsThenBiases) {
  using T = TypeParam;
  const Index d_model = 16, d_k = 4, d_v = 6;
  const double bound = 1 / std::sqrt(double(d_model));  // nn.Linear: U(-1/sqrt(in), 1/sqrt(in))
  qkv::NumpyRandom rng(3), numpy(3);
  const auto m = Attention<T>::linear_init(d_model, d_k, d_v, rng, /*bias=*/true);
  ASSERT_TRUE(m.has_bias());
  EXPECT_TRUE(qkv::equal(m.w_q(), numpy.uniform<T>(-bound, bound, {d_model, d_k})));
  EXPECT_TRUE(qkv::equal(m.w_k(), numpy.uniform<T>(-bound, bound, {d_model, d_k})));
  EXPECT_TRUE(qkv::equal(m.w_v(), numpy.uniform<T>(-bound, bound, {d_model, d_v})));
  EXPECT_TRUE(qkv::equal(m.b_q(), numpy.uniform<T>(-bound, bound, {d_k})));
  EXPECT_TRUE(qkv::equal(m.b_k(), numpy.uniform<T>(-bound, bound, {d_k})));
  EXPECT_TRUE(qkv::equal(m.b_v(), numpy.uniform<T>(-bound, bound, {d_v})));
  EXPECT_EQ(rng.random_double(), numpy.random_double());
  // Rounding to T is monotonic, so values drawn in [-bound, bound) stay in [-T(bound), T(bound)].
  for (const Tensor<T>* w : {&m.w_q(), &m.w_k(), &m.w_v(), &m.b_q(), &m.b_k(), &m.b_v()})
    for (T v : *w) EXPECT_LE(std::abs(v), static_cast<T>(bound));

  // Without biases only the three weights are drawn.
  qkv::NumpyRandom rng2(3), numpy2(3);
  const auto unbiased = Attention<T>::linear_init(d_model, d_k, d_v, rng2);
  EXPECT_FALSE(unbiased.has_bias());
  EXPECT_TRUE(qkv::equal(unbiased.w_v(), m.w_v()));
  numpy2.rand({2 * d_model * d_k + d_model * d_v});  // one draw per weight
  EXPECT_EQ(rng2.random_double(), numpy2.random_double());
}

template <class To, class From>
Tensor<To> Cast(const Tensor<From>& x) {
  return qkv::map(x, [](From v) { return static_cast<To>(v); });
}

// A first-order bound on how far the module's forward pass computed in a floating-point
// type of unit roundoff u, from weights and inputs rounded to that type, lies from the
// exact result, from the double module `m` and inputs (any rounding of theirs is second
// order). With n = d_model, E = d_k, S keys:
// - a projection sum_e x_e w_e + b: rounding x and w (2u), n products and sums (gamma_n),
//   adding b (u): <= (n + 3) u P, where P = max(|x| @ |W| + |b|) bounds |projection|;
// - a score scale * sum_e q_e k_e: from the projections' errors dq, dk and its own E
//   products and sums and the scaling (E + 2) u:
//   ds <= scale E ((q + dq) dk + dq (k + dk) + (E + 2) u (q + dq) (k + dk));
// - a weight exp(s_j - m) / sum_l exp(s_l - m): each exponent is off by ds plus the
//   rounding of s - m (<= 2u s_max), each exp by 2u (one ulp); the sum of S terms adds
//   (S - 1) u and the division (or reciprocal and product) 2u, so the weight is off by
//   <= exp(2 ds + 4u s_max + (S + 5) u) - 1 relatively, hence absolutely (w <= 1);
// - an output sum_j w_j v_j: <= sum_j (dw |v_j| + w_j dv) + S u sum_j w_j |v_j|
//   <= (dw + S u) v + dv, since the weights sum to 1.
struct Bounds {
  double weights, output;
};
Bounds ForwardErrorBound(const Attention<double>& m, const Tensor<double>& x_q, const Tensor<double>& x_kv,
                         double u) {
  const double n = static_cast<double>(m.d_model()), E = static_cast<double>(m.d_k());
  const double S = static_cast<double>(x_kv.size(-2));
  const auto magnitude = [&](const Tensor<double>& x, const Tensor<double>& w, const Tensor<double>& b) {
    Tensor<double> p = qkv::matmul(qkv::abs(x), qkv::abs(w));
    if (m.has_bias()) p += qkv::abs(b);
    return qkv::max(p);
  };
  const double q = magnitude(x_q, m.w_q(), m.b_q()), k = magnitude(x_kv, m.w_k(), m.b_k());
  const double v = magnitude(x_kv, m.w_v(), m.b_v());
  const double dq = (n + 3) * u * q, dk = (n + 3) * u * k, dv = (n + 3) * u * v;
  const double scale = 1 / std::sqrt(E);
  const double s_max = scale * E * (q + dq) * (k + dk);
  const double ds = scale * E * ((q + dq) * dk + dq * (k + dk) + (E + 2) * u * (q + dq) * (k + dk));
  const double dw = std::expm1(2 * ds + 4 * u * s_max + (S + 5) * u);
  return {dw, (dw + S * u) * (v + dv) + dv};
}

template <class T>
Attention<double> ToDouble(const Attention<T>& m) {
  if (!m.has_bias()) return {Cast<double>(m.w_q()), Cast<double>(m.w_k()), Cast<double>(m.w_v())};
  return {Cast<double>(m.w_q()), Cast<double>(m.w_k()), Cast<double>(m.w_v()),
          Cast<double>(m.b_q()), Cast<double>(m.b_k()), Cast<double>(m.b_v())};
}

// Two computations of the forward pass in T that may round differently: Eigen picks its
// vectorised and scalar paths by memory alignment, and with FMA (-march=native) the two
// round differently, so the same rows at another offset in a batch need not agree bit
// for bit. Each is within ForwardErrorBound of the exact result: twice that apart.
template <class T>
Bounds RoundingTolerance(const Attention<T>& m, const Tensor<T>& x_q, const Tensor<T>& x_kv) {
  const double u = std::numeric_limits<T>::epsilon() / 2;
  const Bounds b = ForwardErrorBound(ToDouble(m), Cast<double>(x_q), Cast<double>(x_kv), u);
  return {2 * b.weights, 2 * b.output};
}

// ---- projections and the forward pass --------------------------------------------------

template <class T>
struct Fixture {
  qkv::NumpyRandom rng{5};
  Attention<T> m = Attention<T>::linear_init(4, 3, 5, rng, /*bias=*/true);
  Tensor<T> x = rng.rand<T>({3, 4});          // (L, d_model)
  Tensor<T> x_kv = rng.rand<T>({6, 4});       // (S, d_model), S != L
  Tensor<T> batch = rng.rand<T>({2, 3, 4});   // (B, L, d_model)
};

TYPED_TEST(LayersTest, QueriesKeysValuesAreXTimesWPlusB) {
  using T = TypeParam;
  Fixture<T> f;
  EXPECT_TRUE(qkv::equal(f.m.queries(f.x), qkv::matmul(f.x, f.m.w_q()) + f.m.b_q()));
  EXPECT_TRUE(qkv::equal(f.m.keys(f.x), qkv::matmul(f.x, f.m.w_k()) + f.m.b_k()));
  EXPECT_TRUE(qkv::equal(f.m.values(f.x), qkv::matmul(f.x, f.m.w_v()) + f.m.b_v()));
  EXPECT_EQ(f.m.values(f.batch).shape().str(), "[2,3,5]");
  // Without biases: x @ W.
  const Attention<T> plain(f.m.w_q(), f.m.w_k(), f.m.w_v());
  EXPECT_TRUE(qkv::equal(plain.queries(f.x), qkv::matmul(f.x, f.m.w_q())));
  EXPECT_TRUE(qkv::equal(plain.keys(f.x), qkv::matmul(f.x, f.m.w_k())));
  EXPECT_TRUE(qkv::equal(plain.values(f.x), qkv::matmul(f.x, f.m.w_v())));
}

TYPED_TEST(LayersTest, ForwardIsAttentionOfTheProjections) {
  using T = TypeParam;
  Fixture<T> f;
  const auto result = f.m.forward(f.x);
  const auto expected = qkv::scaled_dot_product_attention_with_weights(f.m.queries(f.x), f.m.keys(f.x),
                                                                      f.m.values(f.x));
  EXPECT_EQ(result.output.shape().str(), "[3,5]");
  EXPECT_EQ(result.weights.shape().str(), "[3,3]");
  EXPECT_TRUE(qkv::equal(result.output, expected.output));
  EXPECT_TRUE(qkv::equal(result.weights, expected.weights));
}

TYPED_TEST(LayersTest, BatchedInputIsEachUnbatchedInput) {
  using T = TypeParam;
  Fixture<T> f;
  const auto result = f.m.forward(f.batch);
  EXPECT_EQ(result.output.shape().str(), "[2,3,5]");
  EXPECT_EQ(result.weights.shape().str(), "[2,3,3]");
  for (Index b = 0; b < 2; ++b) {
    const Tensor<T> x(f.batch[b]);
    const auto one = f.m.forward(x);
    const Bounds tolerance = RoundingTolerance(f.m, x, x);
    EXPECT_TRUE(AllNear(Tensor<T>(result.output[b]), Cast<double>(one.output), tolerance.output)) << "batch " << b;
    EXPECT_TRUE(AllNear(Tensor<T>(result.weights[b]), Cast<double>(one.weights), tolerance.weights)) << "batch " << b;
  }
  const auto expected = qkv::scaled_dot_product_attention_with_weights(f.m.queries(f.batch), f.m.keys(f.batch),
                                                                      f.m.values(f.batch));
  EXPECT_TRUE(qkv::equal(result.output, expected.output));
  EXPECT_TRUE(qkv::equal(result.weights, expected.weights));
}

TYPED_TEST(LayersTest, CrossAttentionTakesKeysAndValuesFromTheSecondInput) {
  using T = TypeParam;
  Fixture<T> f;
  const auto result = f.m.forward(f.x, f.x_kv);  // L = 3 queries, S = 6 keys
  EXPECT_EQ(result.output.shape().str(), "[3,5]");
  EXPECT_EQ(result.weights.shape().str(), "[3,6]");
  const auto expected = qkv::scaled_dot_product_attention_with_weights(f.m.queries(f.x), f.m.keys(f.x_kv),
                                                                      f.m.values(f.x_kv));
  EXPECT_TRUE(qkv::equal(result.output, expected.output));
  EXPECT_TRUE(qkv::equal(result.weights, expected.weights));
  // Cross-attention of x with itself is self-attention.
  EXPECT_TRUE(qkv::equal(f.m.forward(f.x, f.x).output, f.m.forward(f.x).output));
  // Batched queries attend to one unbatched key/value sequence (broadcast).
  const auto batched = f.m.forward(f.batch, f.x_kv);
  EXPECT_EQ(batched.output.shape().str(), "[2,3,5]");
  const Tensor<T> x1(f.batch[1]);
  EXPECT_TRUE(AllNear(Tensor<T>(batched.output[1]), Cast<double>(f.m.forward(x1, f.x_kv).output),
                      RoundingTolerance(f.m, x1, f.x_kv).output));
}

TYPED_TEST(LayersTest, CausalForwardHidesLaterKeys) {
  using T = TypeParam;
  Fixture<T> f;
  const auto result = f.m.forward(f.batch, Causal::upper_left);
  AttentionOptions<T> options;
  options.causal = Causal::upper_left;
  const auto expected = qkv::scaled_dot_product_attention_with_weights(f.m.queries(f.batch), f.m.keys(f.batch),
                                                                      f.m.values(f.batch), options);
  EXPECT_TRUE(qkv::equal(result.output, expected.output));
  EXPECT_TRUE(qkv::equal(result.weights, expected.weights));
  for (Index b = 0; b < 2; ++b) {
    EXPECT_EQ(result.weights(b, 0, 0), T(1)) << "the first query sees only the first key";
    for (Index i = 0; i < 3; ++i)
      for (Index j = i + 1; j < 3; ++j) EXPECT_EQ(result.weights(b, i, j), T(0));
  }
  // The last query sees every key, as without the mask.
  const auto full = f.m.forward(f.batch);
  EXPECT_TRUE(qkv::equal(result.output.view().select(1, 2), full.output.view().select(1, 2)));
  // Cross-attention with L < S: upper_left lets query i see keys 0..i.
  const auto cross = f.m.forward(f.x, f.x_kv, Causal::upper_left);
  EXPECT_EQ(cross.weights(0, 1), T(0));
  EXPECT_EQ(cross.weights(2, 3), T(0));
  EXPECT_GT(cross.weights(2, 2), T(0));
}

TYPED_TEST(LayersTest, LowerRightCausalCrossAttentionAlignsTheLastQueryWithTheLastKey) {
  using T = TypeParam;
  Fixture<T> f;
  // L = 3 queries after S - L = 3 cached keys: query i sees keys 0..i + 3.
  const auto result = f.m.forward(f.x, f.x_kv, Causal::lower_right);
  AttentionOptions<T> options;
  options.causal = Causal::lower_right;
  const auto expected = qkv::scaled_dot_product_attention_with_weights(f.m.queries(f.x), f.m.keys(f.x_kv),
                                                                      f.m.values(f.x_kv), options);
  EXPECT_TRUE(qkv::equal(result.output, expected.output));
  EXPECT_TRUE(qkv::equal(result.weights, expected.weights));
  EXPECT_EQ(result.weights(0, 4), T(0));
  EXPECT_GT(result.weights(0, 3), T(0));
  EXPECT_TRUE(qkv::equal(result.weights[2], f.m.forward(f.x, f.x_kv).weights[2])) << "the last query sees all";
}

TYPED_TEST(LayersTest, StridedInputViewsGiveTheResultOfTheirCopies) {
  using T = TypeParam;
  Fixture<T> f;
  // x stored transposed, (d_model, L) memory seen as (L, d_model).
  const Tensor<T> stored = qkv::transpose(f.x);
  const qkv::TensorView<const T> view = stored.view().transpose(0, 1);
  ASSERT_FALSE(view.is_contiguous());
  const auto result = f.m.forward(view);
  const auto expected = f.m.forward(f.x);
  EXPECT_TRUE(qkv::equal(result.output, expected.output));
  EXPECT_TRUE(qkv::equal(result.weights, expected.weights));
}

TYPED_TEST(LayersTest, WithoutNeedWeightsTheWeightsStayEmpty) {
  using T = TypeParam;
  Fixture<T> f;
  for (const Causal causal : {Causal::none, Causal::upper_left}) {
    const auto with = f.m.forward(f.batch, causal);
    const auto without = f.m.forward(f.batch, causal, /*need_weights=*/false);
    EXPECT_TRUE(without.weights.empty());
    // The weights come from the plain loop and the output alone from the fused kernel:
    // the same function, rounded differently (the kernel's exp is within 2 eps).
    const double tolerance = 16 * std::numeric_limits<T>::epsilon();
    EXPECT_TRUE(qkv::allclose(without.output, with.output, tolerance, tolerance));
    const auto cross = f.m.forward(f.x, f.x_kv, causal, /*need_weights=*/false);
    EXPECT_TRUE(cross.weights.empty());
    EXPECT_TRUE(qkv::allclose(cross.output, f.m.forward(f.x, f.x_kv, causal).output, tolerance, tolerance));
  }
}

TYPED_TEST(LayersTest, RejectsInputsWithoutDModelFeatures) {
  using T = TypeParam;
  qkv::NumpyRandom rng(0);
  const auto m = Attention<T>::linear_init(8, 8, 8, rng);
  const auto zeros = [](Shape s) { return Tensor<T>::zeros(s); };
  ExpectInvalidArgument([&] { m.forward(zeros({5, 7})); },
                        "qkv::ScaledDotProductAttention::forward: input of shape [5,7], expected (..., L, d_model = 8)");
  ExpectInvalidArgument([&] { m.forward(zeros({8})); },
                        "qkv::ScaledDotProductAttention::forward: input of shape [8], expected (..., L, d_model = 8)");
  ExpectInvalidArgument(
      [&] { m.forward(zeros({1, 5, 9}), Causal::upper_left, false); },
      "qkv::ScaledDotProductAttention::forward: input of shape [1,5,9], expected (..., L, d_model = 8)");
  ExpectInvalidArgument([&] { m.forward(zeros({5, 8}), zeros({6, 4})); },
                        "qkv::ScaledDotProductAttention::forward: input of shape [6,4], expected (..., L, d_model = 8)");
  ExpectInvalidArgument([&] { m.queries(zeros({5, 7})); },
                        "qkv::ScaledDotProductAttention::queries: input of shape [5,7], expected (..., L, d_model = 8)");
  ExpectInvalidArgument([&] { m.keys(zeros({7})); },
                        "qkv::ScaledDotProductAttention::keys: input of shape [7], expected (..., L, d_model = 8)");
  ExpectInvalidArgument([&] { m.values(zeros({2, 5, 4})); },
                        "qkv::ScaledDotProductAttention::values: input of shape [2,5,4], expected (..., L, d_model = 8)");
  // Batch sizes that do not broadcast are reported by the attention itself.
  ExpectInvalidArgument([&] { m.forward(zeros({2, 5, 8}), zeros({3, 6, 8})); },
                        "qkv::scaled_dot_product_attention_with_weights: key batch dimension 0 of size 3 does not "
                        "broadcast to the query's 2 (query [2,5,8], key [3,6,8], value [3,6,8])");
}

// ---- equality with PyTorch ---------------------------------------------------------------
//
// The expected values are the output of tests/data/make_layers_cases.py (PyTorch 1.13,
// float64), pasted verbatim. It writes the module in PyTorch as the notebooks do
// (x @ W_q (+ b_q), softmax(Q Kᵀ / sqrt(d_k)) V, causal by masked_fill of triu(1) with
// -inf), with weights drawn from NumPy in the order qkv's initialisers draw them, and a
// third module with real nn.Linear layers whose weight.T and bias are pasted below.

// PyTorch 1.13.0a0, NumPy 1.24.2
const std::vector<double> kUniformOutput = {
    1.027627501610882, 0.8360989693119943, 1.102244663114528, 1.1192466348142893,
    1.0823088989799425, 1.0111939750573036, 0.8129394752737524, 1.0819047943633402,
    1.0849815529085545, 1.0612169003348835, 0.9982591201567599, 0.7929607040518981,
    1.0648832898829923, 1.0563849529511606, 1.043814113754533};
const std::vector<double> kUniformWeights = {
    0.5807055274001223, 0.2696330335596452, 0.14966143904023263, 0.5157564288326425,
    0.2939621850557251, 0.19028138611163248, 0.4617163582733667, 0.3103294019904715,
    0.22795423973616172};
const std::vector<double> kUniformCausalOutput = {
    1.155167388815807, 0.965010705996854, 1.230707726920047, 1.3379325930557262,
    1.2227298707107281, 1.0200471753576013, 0.877106801022572, 1.1227550463943117,
    1.1514867084460103, 1.0962478161348836, 0.9982591201567599, 0.7929607040518981,
    1.0648832898829923, 1.0563849529511606, 1.043814113754533};
const std::vector<double> kUniformCausalWeights = {
    1.0, 0.0, 0.0, 0.6369576047608899,
    0.36304239523911, 0.0, 0.4617163582733667, 0.3103294019904715,
    0.22795423973616172};
const std::vector<double> kUniformCrossOutput = {
    1.122970027543711, 1.0434701717195654, 1.267561342430401, 1.1941914949056343,
    1.207938412110807, 1.1193696801386486, 1.0145293553322967, 1.2501106080555635,
    1.1783159141569732, 1.1953485920621094, 1.1175862602054303, 0.9894032561391473,
    1.2353690433064817, 1.1663026438903024, 1.1852966764510646};
const std::vector<double> kUniformCrossWeights = {
    0.2047944854589136, 0.11077229995031242, 0.35773176008609603, 0.1599528249192004,
    0.16674862958547731, 0.20717432039987685, 0.13129940102341706, 0.3112461505909703,
    0.17233759920537894, 0.17794252878035666, 0.20774938240194818, 0.15172204164112987,
    0.27415994411184785, 0.18077557594860216, 0.18559305589647207};
const std::vector<double> kBiasOutput = {
    0.09073048212474524, -0.5355936650506359, -0.3560806501529885, -0.21638330521040947,
    -0.024216042666899126, 0.0775235855314644, -0.5271437518909703, -0.3550118493413745,
    -0.21245995036940024, -0.028081984615437233, 0.05707294908387128, -0.5140755273485985,
    -0.3534806787021576, -0.20647598742006373, -0.03378595559031426, -0.051026941439446756,
    -0.6344640711897046, -0.3607957745659557, -0.05450510952078966, -0.15486405272117074,
    -0.05151040341688695, -0.6347302349308817, -0.3607801993083012, -0.05397630736200062,
    -0.15534135517762163, -0.05178214326226289, -0.6334806474309098, -0.3605983229504459,
    -0.05452249663403194, -0.1550302243469796};
const std::vector<double> kBiasWeights = {
    0.3217942306089116, 0.33649385605931953, 0.3417119133317688, 0.3085990738222497,
    0.33563239407868883, 0.3557685320990615, 0.2869512605833065, 0.3362569961710936,
    0.37679174324559983, 0.3236205389321704, 0.33743477644112374, 0.3389446846267059,
    0.32153552975925587, 0.3405104434729078, 0.33795402676783626, 0.3256912343442423,
    0.3385123017633668, 0.335796463892391};
const std::vector<double> kBiasCausalOutput = {
    0.5422552142754347, -0.8214364631876375, -0.3694811467636565, -0.33346201416824056,
    0.05519586105722868, 0.3520894672130537, -0.704208334136316, -0.3878196399046695,
    -0.3018284687612779, 0.07642934446626176, 0.05707294908387128, -0.5140755273485985,
    -0.3534806787021576, -0.20647598742006373, -0.03378595559031426, -0.09160216828286324,
    -0.43320848038258886, -0.3318233215384228, -0.14490401430651767, -0.10233154104609427,
    -0.1378029999601534, -0.5413934336748363, -0.3405735374825892, -0.04448994370675895,
    -0.18221062555286338, -0.05178214326226289, -0.6334806474309098, -0.3605983229504459,
    -0.05452249663403194, -0.1550302243469796};
const std::vector<double> kBiasCausalWeights = {
    1.0, 0.0, 0.0, 0.4790189383758914,
    0.5209810616241086, 0.0, 0.2869512605833065, 0.3362569961710936,
    0.37679174324559983, 1.0, 0.0, 0.0,
    0.48566948937019067, 0.5143305106298093, 0.0, 0.3256912343442423,
    0.3385123017633668, 0.335796463892391};
const std::vector<double> kLinearWqT = {
    -0.003743410110473633, -0.19257718324661255, -0.04437202215194702, 0.26822179555892944,
    0.13407868146896362, 0.1323062777519226, -0.4115225672721863, -0.009906589984893799,
    -0.15110653638839722, -0.3679695129394531, 0.39644473791122437, -0.09828269481658936};
const std::vector<double> kLinearWkT = {
    0.018521785736083984, -0.21773141622543335, 0.3741558790206909, 0.19766759872436523,
    0.18160855770111084, -0.08059167861938477, 0.30001139640808105, 0.41519397497177124,
    0.05290704965591431, -0.3389705419540405, -0.10290008783340454, 0.45273810625076294};
const std::vector<double> kLinearWvT = {
    -0.19489997625350952, -0.3493202328681946, 0.2231091856956482, 0.08459234237670898,
    0.315468966960907, 0.43200039863586426, -0.46828049421310425, 0.24233627319335938,
    -0.46684736013412476, 0.293160617351532, -0.32408982515335083, -0.29187023639678955,
    0.026295781135559082, -0.3612831234931946, -0.2217475175857544, -0.23016643524169922,
    0.42979902029037476, -0.25634175539016724, -0.257764995098114, -0.01804119348526001};
const std::vector<double> kLinearBq = {
    -0.4776742458343506, -0.33114105463027954, -0.20611155033111572};
const std::vector<double> kLinearBk = {
    -0.4638351798057556, -0.3147689700126648, -0.12658262252807617};
const std::vector<double> kLinearBv = {
    0.3197803497314453, 0.49706655740737915, 0.19844108819961548, 0.06754642724990845,
    0.3352431654930115};
const std::vector<double> kLinearOutput = {
    0.2418990672854281, 0.3878908403916296, 0.19943193963582515, -0.3306519544550187,
    0.37771107840504226, 0.2416294351662045, 0.3889294191851737, 0.19893390807718642,
    -0.3307213525046218, 0.37781700819395836, 0.24220903219251574, 0.38726894253227956,
    0.19972284794724746, -0.33081958919661925, 0.37770606856984545};
const std::vector<double> kLinearWeights = {
    0.3161168722138287, 0.3288732011370214, 0.3550099266491499, 0.3142682800572081,
    0.3282784058065032, 0.35745331413628867, 0.31820933343897434, 0.3277327344524249,
    0.35405793210860076};

Tensor<double> Expected(Shape shape, const std::vector<double>& values) { return Tensor<double>(shape, values); }


// The three PyTorch cases, for element type T. Weights drawn by qkv in T are NumPy's
// doubles rounded to T, exactly as Cast<T> of the double draws.
template <class T>
struct UniformCase {  // np.random.seed(7); W_q, W_k, W_v = rand; x = rand(3, 4); x_kv = rand(5, 4)
  qkv::NumpyRandom rng{7};
  Attention<T> m = Attention<T>::uniform(4, 3, 5, rng);
  Tensor<T> x = rng.rand<T>({3, 4});
  Tensor<T> x_kv = rng.rand<T>({5, 4});
};
template <class T>
struct BiasCase {  // np.random.seed(8); W = uniform(-1/2, 1/2), then b; x = rand(2, 3, 4)
  qkv::NumpyRandom rng{8};
  Attention<T> m = Attention<T>::linear_init(4, 3, 5, rng, /*bias=*/true);
  Tensor<T> x = rng.rand<T>({2, 3, 4});
};
template <class T>
struct LinearCase {  // torch.manual_seed(0); nn.Linear(4, 3), (4, 3), (4, 5); np.random.seed(9); x = rand(3, 4)
  Attention<T> m{Cast<T>(Expected({4, 3}, kLinearWqT)), Cast<T>(Expected({4, 3}, kLinearWkT)),
                 Cast<T>(Expected({4, 5}, kLinearWvT)), Cast<T>(Expected({3}, kLinearBq)),
                 Cast<T>(Expected({3}, kLinearBk)),     Cast<T>(Expected({5}, kLinearBv))};
  qkv::NumpyRandom rng{9};
  Tensor<T> x = rng.rand<T>({3, 4});
};

// PyTorch's float64 result and ours are each within ForwardErrorBound(u = 2^-53) of the
// exact one (same weights and inputs, no rounding of them): twice that apart.
Bounds DoubleTolerance(const Attention<double>& m, const Tensor<double>& x_q, const Tensor<double>& x_kv) {
  const Bounds b = ForwardErrorBound(m, x_q, x_kv, 0x1p-53);
  return {2 * b.weights, 2 * b.output};
}
// Ours in float against PyTorch's float64: the float bound plus PyTorch's own error.
Bounds FloatTolerance(const Attention<double>& m, const Tensor<double>& x_q, const Tensor<double>& x_kv) {
  const Bounds f = ForwardErrorBound(m, x_q, x_kv, 0x1p-24), d = ForwardErrorBound(m, x_q, x_kv, 0x1p-53);
  return {f.weights + d.weights, f.output + d.output};
}

template <class T>
Bounds Tolerance(const Attention<double>& m, const Tensor<double>& x_q, const Tensor<double>& x_kv) {
  return std::is_same_v<T, double> ? DoubleTolerance(m, x_q, x_kv) : FloatTolerance(m, x_q, x_kv);
}

TYPED_TEST(LayersTest, UniformWeightsMatchPyTorch) {
  using T = TypeParam;
  const UniformCase<T> c;
  const UniformCase<double> d;  // the double module and inputs the bound is computed from
  const Bounds self = Tolerance<T>(d.m, d.x, d.x), cross = Tolerance<T>(d.m, d.x, d.x_kv);
  SCOPED_TRACE("weight bound " + std::to_string(self.weights) + ", output bound " + std::to_string(self.output));

  const auto result = c.m.forward(c.x);
  EXPECT_TRUE(AllNear(result.output, Expected({3, 5}, kUniformOutput), self.output));
  EXPECT_TRUE(AllNear(result.weights, Expected({3, 3}, kUniformWeights), self.weights));

  const auto causal = c.m.forward(c.x, Causal::upper_left);
  EXPECT_TRUE(AllNear(causal.output, Expected({3, 5}, kUniformCausalOutput), self.output));
  EXPECT_TRUE(AllNear(causal.weights, Expected({3, 3}, kUniformCausalWeights), self.weights));

  const auto crossed = c.m.forward(c.x, c.x_kv);
  EXPECT_TRUE(AllNear(crossed.output, Expected({3, 5}, kUniformCrossOutput), cross.output));
  EXPECT_TRUE(AllNear(crossed.weights, Expected({3, 5}, kUniformCrossWeights), cross.weights));
}

TYPED_TEST(LayersTest, BiasedBatchedWeightsMatchPyTorch) {
  using T = TypeParam;
  const BiasCase<T> c;
  const BiasCase<double> d;
  const Bounds tolerance = Tolerance<T>(d.m, d.x, d.x);
  SCOPED_TRACE("weight bound " + std::to_string(tolerance.weights) + ", output bound " +
               std::to_string(tolerance.output));

  const auto result = c.m.forward(c.x);
  EXPECT_TRUE(AllNear(result.output, Expected({2, 3, 5}, kBiasOutput), tolerance.output));
  EXPECT_TRUE(AllNear(result.weights, Expected({2, 3, 3}, kBiasWeights), tolerance.weights));

  const auto causal = c.m.forward(c.x, Causal::upper_left);
  EXPECT_TRUE(AllNear(causal.output, Expected({2, 3, 5}, kBiasCausalOutput), tolerance.output));
  EXPECT_TRUE(AllNear(causal.weights, Expected({2, 3, 3}, kBiasCausalWeights), tolerance.weights));
}

TYPED_TEST(LayersTest, NnLinearWeightsPassedTransposedMatchPyTorch) {
  using T = TypeParam;
  const LinearCase<T> c;
  const LinearCase<double> d;
  const Bounds tolerance = Tolerance<T>(d.m, d.x, d.x);
  SCOPED_TRACE("weight bound " + std::to_string(tolerance.weights) + ", output bound " +
               std::to_string(tolerance.output));
  const auto result = c.m.forward(c.x);
  EXPECT_TRUE(AllNear(result.output, Expected({3, 5}, kLinearOutput), tolerance.output));
  EXPECT_TRUE(AllNear(result.weights, Expected({3, 3}, kLinearWeights), tolerance.weights));
}

// ---- backward: every gradient against finite differences in double --------------------

// Central differences of loss() in each element of x against `grad`.
template <class Loss>
void ExpectGradientMatches(const char* what, Tensor<double>& x, const Tensor<double>& grad, Loss&& loss) {
  ASSERT_EQ(x.shape(), grad.shape()) << what;
  double scale = 1;
  for (const double g : grad) scale = std::max(scale, std::abs(g));
  for (Index i = 0; i < x.numel(); ++i) {
    const double saved = x.data()[i], h = 1e-5;
    x.data()[i] = saved + h;
    const double up = loss();
    x.data()[i] = saved - h;
    const double down = loss();
    x.data()[i] = saved;
    // Truncation ~h², rounding ~1e-16/h: both far below 1e-8 of gradients of order 1.
    EXPECT_NEAR(grad.data()[i], (up - down) / (2 * h), 1e-8 * scale) << what << "[" << i << "]";
  }
}

TEST(ScaledDotProductAttentionBackward, FiniteDifferencesSelfAndCross) {
  for (const bool cross : {false, true}) {
    SCOPED_TRACE(cross ? "cross-attention, no bias, lower right" : "self-attention, biases, causal");
    qkv::NumpyRandom rng(4);
    Tensor<double> w_q = rng.randn<double>({5, 4}), w_k = rng.randn<double>({5, 4}), w_v = rng.randn<double>({5, 3});
    Tensor<double> b_q = rng.randn<double>({4}), b_k = rng.randn<double>({4}), b_v = rng.randn<double>({3});
    Tensor<double> x = rng.randn<double>({2, 4, 5}), x_kv = rng.randn<double>({2, 6, 5});
    const Tensor<double> grad_output = rng.randn<double>({2, 4, 3});
    const Causal causal = cross ? Causal::lower_right : Causal::upper_left;
    const auto layer = [&] {
      return cross ? Attention<double>(w_q, w_k, w_v) : Attention<double>(w_q, w_k, w_v, b_q, b_k, b_v);
    };
    const auto loss = [&] {
      const auto out = cross ? layer().forward(x, x_kv, causal, false) : layer().forward(x, causal, false);
      double sum = 0;
      for (Index i = 0; i < out.output.numel(); ++i) sum += out.output.data()[i] * grad_output.data()[i];
      return sum;
    };
    const auto m = layer();
    const auto trained = cross ? m.forward_for_backward(x, x_kv, causal) : m.forward_for_backward(x, causal);
    EXPECT_TRUE(AllNear(trained.output, (cross ? m.forward(x, x_kv, causal) : m.forward(x, causal)).output, 1e-14));
    const auto g = m.backward(trained.saved, grad_output);
    ExpectGradientMatches("x", x, g.grad_x, loss);
    if (cross) ExpectGradientMatches("x_kv", x_kv, g.grad_x_kv, loss);
    else EXPECT_TRUE(g.grad_x_kv.empty());
    ExpectGradientMatches("W_q", w_q, g.grad_w_q, loss);
    ExpectGradientMatches("W_k", w_k, g.grad_w_k, loss);
    ExpectGradientMatches("W_v", w_v, g.grad_w_v, loss);
    if (!cross) {
      ExpectGradientMatches("b_q", b_q, g.grad_b_q, loss);
      ExpectGradientMatches("b_k", b_k, g.grad_b_k, loss);
      ExpectGradientMatches("b_v", b_v, g.grad_b_v, loss);
    } else {
      EXPECT_TRUE(g.grad_b_q.empty());
    }
  }
}

TEST(ScaledDotProductAttentionBackward, WrongGradientShapeIsNamed) {
  qkv::NumpyRandom rng(0);
  const auto m = Attention<float>::linear_init(8, 8, 8, rng);
  const auto trained = m.forward_for_backward(rng.randn<float>({1, 5, 8}));
  EXPECT_TRUE(qkv::test::ThrowsWith<std::invalid_argument>(
      [&] { m.backward(trained.saved, Tensor<float>::ones({1, 5, 7})); },
      {"qkv::ScaledDotProductAttention::backward: grad_output of shape [1,5,7], expected the output's [1,5,8]"}));
}

}  // namespace
