// SPDX-License-Identifier: MIT
// scaled_dot_product_attention against a long-double reference: random shapes and every
// option with their combinations, zero lengths, strided layouts, weights, and each error.
#include <qkv/attention.hpp>
#include <qkv/ops.hpp>
#include <qkv/softmax.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <sstream>
#include <string>

#include "reference.hpp"
#include "test_util.hpp"

namespace {

using qkv::AttentionOptions;
using qkv::Causal;
using qkv::Index;
using qkv::Shape;
using qkv::Tensor;
using qkv::TensorView;
using qkv::test::normwise_error;
using qkv::test::random_tensor;
using qkv::test::reference_attention;

template <class T>
constexpr double tolerance() {
  // The normwise bound the issue sets for the float kernel (1e-5 · max|ref|); double
  // gets the same margin over its own epsilon.
  return std::is_same_v<T, float> ? 1e-5 : 1e-13;
}

// An upper bound on |scale · q·k|, the factor by which softmax magnifies the relative
// rounding error of the scores into its output.
template <class T>
double logit_bound(const Tensor<T>& q, const Tensor<T>& k, double scale) {
  if (q.empty() || k.empty()) return 1.0;
  return std::max(1.0, std::abs(scale) * static_cast<double>(q.size(-1)) *
                           static_cast<double>(qkv::max(qkv::abs(q))) * static_cast<double>(qkv::max(qkv::abs(k))));
}

template <class F>
void expect_invalid_argument(F&& f, std::initializer_list<std::string> parts) {
  EXPECT_TRUE(qkv::test::ThrowsWith<std::invalid_argument>(f, parts));
}

// One randomly drawn attention call: shapes, options, and the tensors they refer to.
template <class T>
struct RandomCase {
  Tensor<T> q, k, v;
  Tensor<bool> bool_mask;
  Tensor<T> additive_mask;
  AttentionOptions<T> options;
  std::string description;

  RandomCase(std::mt19937& gen, int trial) {
    auto pick = [&](std::initializer_list<Index> values) {
      return values.begin()[std::uniform_int_distribution<std::size_t>(0, values.size() - 1)(gen)];
    };
    const int rank = static_cast<int>(pick({2, 3, 4}));
    const Index B = pick({1, 2, 3}), H = pick({1, 2, 4, 3});
    const Index L = pick({0, 1, 2, 5, 7, 16, 33}), S = pick({0, 1, 3, 8, 17, 40});
    const Index E = pick({1, 3, 8, 13}), Ev = pick({1, 4, 7});
    Shape batch;
    if (rank == 4) batch.push_back(B);
    if (rank >= 3) batch.push_back(H);

    options.enable_gqa = rank >= 3 && H % 2 == 0 && trial % 3 == 0;
    Shape kv_batch = batch;
    if (options.enable_gqa) kv_batch[kv_batch.rank() - 1] = H / pick({1, 2});
    if (rank == 4 && trial % 5 == 1) kv_batch[0] = 1;  // keys shared across the batch
    auto with = [](Shape s, Index a, Index b) { s.push_back(a), s.push_back(b); return s; };

    const double magnitude = trial % 7 == 3 ? 12.0 : 1.0;  // large logits
    q = random_tensor<T>(with(batch, L, E), gen, -magnitude, magnitude);
    k = random_tensor<T>(with(kv_batch, S, E), gen);
    v = random_tensor<T>(with(kv_batch, S, Ev), gen);

    options.causal = static_cast<Causal>(pick({0, 1, 2}));
    if (trial % 4 == 1) options.scale = std::uniform_real_distribution<double>(-2.0, 2.0)(gen);

    // Masks of every broadcastable shape, some hiding whole rows.
    const int mask_kind = static_cast<int>(pick({0, 1, 2}));
    Shape mask_shape = with(Shape{}, pick({1, L}), S);
    if (rank >= 3 && trial % 2 == 0) mask_shape = with(Shape{pick({1, H})}, pick({1, L}), S);
    if (rank == 4 && trial % 6 == 0) mask_shape = with(Shape{B, 1}, L, S);
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    if (mask_kind == 1) {
      bool_mask = Tensor<bool>(mask_shape);
      const bool hide_row = trial % 8 == 0;
      for (Index i = 0; i < bool_mask.numel(); ++i)
        bool_mask.data()[i] = !(hide_row && i < S) && unit(gen) > 0.3;
      options.attn_mask = bool_mask;
    } else if (mask_kind == 2) {
      additive_mask = random_tensor<T>(mask_shape, gen, -3.0, 3.0);
      for (T& x : additive_mask)
        if (unit(gen) < 0.2) x = -std::numeric_limits<T>::infinity();
      options.attn_mask = additive_mask;
    }

    std::ostringstream s;
    s << "trial " << trial << ": q " << q.shape().str() << " k " << k.shape().str() << " v " << v.shape().str()
      << " causal " << static_cast<int>(options.causal) << " mask kind " << mask_kind << " "
      << (mask_kind ? mask_shape.str() : "") << " gqa " << options.enable_gqa << " scale "
      << (options.scale ? std::to_string(*options.scale) : "default");
    description = s.str();
  }

  double scale() const {
    return options.scale ? *options.scale : 1.0 / std::sqrt(static_cast<double>(std::max<Index>(1, q.size(-1))));
  }
};

// Every typed test runs once per implementation (naive loop, fused kernel, split-key
// decode kernel) and element type.
template <class K>
class AttentionTyped : public ::testing::Test {
 private:
  qkv::test::ForcePath path_{K::path};
};
TYPED_TEST_SUITE(AttentionTyped, qkv::test::KernelTypes, qkv::test::KernelNames);

TYPED_TEST(AttentionTyped, RandomCasesMatchReference) {
  using T = typename TypeParam::Scalar;
  std::mt19937 gen(2024);
  for (int trial = 0; trial < 400; ++trial) {
    RandomCase<T> c(gen, trial);
    SCOPED_TRACE(c.description);
    const Tensor<T> out = qkv::scaled_dot_product_attention(c.q, c.k, c.v, c.options);
    const Tensor<double> ref = reference_attention<T>(c.q, c.k, c.v, c.options);
    ASSERT_EQ(out.shape(), ref.shape());
    for (T x : out) ASSERT_TRUE(std::isfinite(x));
    EXPECT_LE(normwise_error(out, ref), tolerance<T>() * logit_bound(c.q, c.k, c.scale()));
  }
}

TYPED_TEST(AttentionTyped, WeightsMatchReferenceAndRowsSumToOne) {
  using T = typename TypeParam::Scalar;
  std::mt19937 gen(7);
  for (int trial = 0; trial < 120; ++trial) {
    RandomCase<T> c(gen, trial);
    SCOPED_TRACE(c.description);
    const auto result = qkv::scaled_dot_product_attention_with_weights(c.q, c.k, c.v, c.options);
    Tensor<double> ref_weights;
    const Tensor<double> ref = reference_attention<T>(c.q, c.k, c.v, c.options, &ref_weights);
    const double bound = tolerance<T>() * logit_bound(c.q, c.k, c.scale());
    EXPECT_LE(normwise_error(result.output, ref), bound);
    ASSERT_EQ(result.weights.shape(), ref_weights.shape());
    EXPECT_LE(normwise_error(result.weights, ref_weights), bound);
    // Each row sums to 1, or to 0 when the row may see no key.
    const Index S = c.k.size(-2);
    for (Index row = 0; S > 0 && row < result.weights.numel() / S; ++row) {
      double sum = 0, ref_sum = 0;
      for (Index j = 0; j < S; ++j) {
        sum += static_cast<double>(result.weights.data()[row * S + j]);
        ref_sum += ref_weights.data()[row * S + j];
      }
      EXPECT_NEAR(sum, ref_sum > 0.5 ? 1.0 : 0.0, 10.0 * double(S) * double(std::numeric_limits<T>::epsilon()));
    }
  }
}

TYPED_TEST(AttentionTyped, EqualsTheTextbookFormula) {
  using T = typename TypeParam::Scalar;
  std::mt19937 gen(1);
  const auto q = random_tensor<T>({2, 3, 9, 16}, gen), k = random_tensor<T>({2, 3, 11, 16}, gen);
  const auto v = random_tensor<T>({2, 3, 11, 5}, gen);
  const Tensor<T> weights = qkv::softmax(qkv::matmul(q, qkv::transpose(k)) / static_cast<T>(4), -1);
  const Tensor<T> textbook = qkv::matmul(weights, v);
  EXPECT_TRUE(qkv::allclose(qkv::scaled_dot_product_attention(q, k, v), textbook, 0.0,
                            50 * std::numeric_limits<T>::epsilon()));
}

TYPED_TEST(AttentionTyped, CausalIgnoresHiddenKeys) {
  using T = typename TypeParam::Scalar;
  std::mt19937 gen(3);
  for (Causal causal : {Causal::upper_left, Causal::lower_right}) {
    const Index L = 6, S = 9;
    const auto q = random_tensor<T>({2, L, 8}, gen);
    auto k = random_tensor<T>({2, S, 8}, gen), v = random_tensor<T>({2, S, 4}, gen);
    AttentionOptions<T> options;
    options.causal = causal;
    const Tensor<T> before = qkv::scaled_dot_product_attention(q, k, v, options);
    // Key S-1 is visible only to the last row under lower_right and to none under
    // upper_left; changing it must leave every other row bit for bit unchanged.
    for (Index h = 0; h < 2; ++h) {
      for (Index e = 0; e < 8; ++e) k(h, S - 1, e) = 100;
      for (Index e = 0; e < 4; ++e) v(h, S - 1, e) = -100;
    }
    const Tensor<T> after = qkv::scaled_dot_product_attention(q, k, v, options);
    const Index rows_unchanged = causal == Causal::upper_left ? L : L - 1;
    for (Index h = 0; h < 2; ++h)
      for (Index i = 0; i < rows_unchanged; ++i)
        for (Index e = 0; e < 4; ++e) EXPECT_EQ(before(h, i, e), after(h, i, e));
    if (causal == Causal::lower_right) {
      EXPECT_NE(before(0, L - 1, 0), after(0, L - 1, 0));
    }
  }
}

TYPED_TEST(AttentionTyped, LowerRightWithMoreQueriesThanKeysGivesZeroRows) {
  using T = typename TypeParam::Scalar;
  std::mt19937 gen(4);
  const auto q = random_tensor<T>({5, 4}, gen), k = random_tensor<T>({3, 4}, gen), v = random_tensor<T>({3, 2}, gen);
  AttentionOptions<T> options;
  options.causal = Causal::lower_right;  // row i sees keys 0..i-2: rows 0 and 1 see none
  const auto result = qkv::scaled_dot_product_attention_with_weights(q, k, v, options);
  for (Index i = 0; i < 2; ++i) {
    for (Index e = 0; e < 2; ++e) EXPECT_EQ(result.output(i, e), T(0));
    for (Index j = 0; j < 3; ++j) EXPECT_EQ(result.weights(i, j), T(0));
  }
  EXPECT_EQ(result.weights(2, 0), T(1));
}

TYPED_TEST(AttentionTyped, LargeLogitsDoNotOverflow) {
  using T = typename TypeParam::Scalar;
  const Tensor<T> q = {{1000, -1000}, {3000, 0}};
  const Tensor<T> k = {{1, 0}, {T(0.999), 0}, {-1, 0}};
  const Tensor<T> v = {{1, 0}, {0, 1}, {5, 5}};
  AttentionOptions<T> options;
  options.scale = 1.0;
  const Tensor<T> out = qkv::scaled_dot_product_attention(q, k, v, options);
  // Row 0: scores 1000, 999, -1000 -> weights 1/(1+e^-1), e^-1/(1+e^-1), ~0.
  const double w0 = 1.0 / (1.0 + std::exp(-1.0));
  EXPECT_NEAR(out(0, 0), w0, 1e-6);
  EXPECT_NEAR(out(0, 1), 1.0 - w0, 1e-6);
  // Row 1: scores 3000, 2997, -3000 -> key 0 takes all but e^-3 of the weight.
  EXPECT_NEAR(out(1, 1), std::exp(-3.0) / (1.0 + std::exp(-3.0)), 1e-6);
}

TYPED_TEST(AttentionTyped, NaNInAVisibleKeyPropagates) {
  using T = typename TypeParam::Scalar;
  std::mt19937 gen(11);
  const auto q = random_tensor<T>({2, 9, 8}, gen), v = random_tensor<T>({2, 12, 4}, gen);
  auto k = random_tensor<T>({2, 12, 8}, gen);
  k(1, 5, 3) = std::numeric_limits<T>::quiet_NaN();
  AttentionOptions<T> options;
  options.causal = Causal::upper_left;  // rows 0..4 of head 1 cannot see key 5
  const Tensor<T> out = qkv::scaled_dot_product_attention(q, k, v, options);
  for (Index i = 0; i < 9; ++i) {
    EXPECT_TRUE(std::isfinite(out(0, i, 0))) << i;
    EXPECT_EQ(std::isnan(out(1, i, 0)), i >= 5) << i;  // as PyTorch: NaN in, NaN out
  }
}

TYPED_TEST(AttentionTyped, ZeroLengthSequences) {
  using T = typename TypeParam::Scalar;
  std::mt19937 gen(5);
  const auto q = random_tensor<T>({2, 3, 0, 4}, gen), k = random_tensor<T>({2, 3, 5, 4}, gen);
  const auto v = random_tensor<T>({2, 3, 5, 6}, gen);
  EXPECT_EQ(qkv::scaled_dot_product_attention(q, k, v).shape(), (Shape{2, 3, 0, 6}));

  const auto q2 = random_tensor<T>({2, 3, 4, 4}, gen), k0 = random_tensor<T>({2, 3, 0, 4}, gen);
  const auto v0 = random_tensor<T>({2, 3, 0, 6}, gen);
  const auto result = qkv::scaled_dot_product_attention_with_weights(q2, k0, v0);
  EXPECT_EQ(result.output.shape(), (Shape{2, 3, 4, 6}));
  EXPECT_EQ(result.weights.shape(), (Shape{2, 3, 4, 0}));
  for (T x : result.output) EXPECT_EQ(x, T(0));
}

TYPED_TEST(AttentionTyped, AdditiveMinusInfinityEqualsBooleanFalse) {
  using T = typename TypeParam::Scalar;
  std::mt19937 gen(6);
  const auto q = random_tensor<T>({2, 7, 8}, gen), k = random_tensor<T>({2, 10, 8}, gen);
  const auto v = random_tensor<T>({2, 10, 3}, gen);
  Tensor<bool> allowed(Shape{7, 10});
  Tensor<T> additive(Shape{7, 10});
  for (Index i = 0; i < allowed.numel(); ++i) {
    allowed.data()[i] = (i * 7) % 3 != 0;
    additive.data()[i] = allowed.data()[i] ? T(0) : -std::numeric_limits<T>::infinity();
  }
  AttentionOptions<T> with_bool, with_additive;
  with_bool.attn_mask = allowed;
  with_additive.attn_mask = additive;
  EXPECT_TRUE(qkv::equal(qkv::scaled_dot_product_attention(q, k, v, with_bool),
                         qkv::scaled_dot_product_attention(q, k, v, with_additive)));
}

TYPED_TEST(AttentionTyped, GroupedQueryEqualsRepeatedHeads) {
  using T = typename TypeParam::Scalar;
  std::mt19937 gen(8);
  const auto q = random_tensor<T>({2, 6, 5, 8}, gen), k = random_tensor<T>({2, 2, 9, 8}, gen);
  const auto v = random_tensor<T>({2, 2, 9, 4}, gen);
  // torch.repeat_interleave(k, 3, dim=1): query head h reads key head h / 3.
  Tensor<T> k_rep(Shape{2, 6, 9, 8}), v_rep(Shape{2, 6, 9, 4});
  for (Index b = 0; b < 2; ++b)
    for (Index h = 0; h < 6; ++h) {
      for (Index j = 0; j < 9; ++j) {
        for (Index e = 0; e < 8; ++e) k_rep(b, h, j, e) = k(b, h / 3, j, e);
        for (Index e = 0; e < 4; ++e) v_rep(b, h, j, e) = v(b, h / 3, j, e);
      }
    }
  AttentionOptions<T> gqa;
  gqa.enable_gqa = true;
  EXPECT_TRUE(qkv::equal(qkv::scaled_dot_product_attention(q, k, v, gqa), qkv::scaled_dot_product_attention(q, k_rep, v_rep)));
}

TYPED_TEST(AttentionTyped, StridedLayoutsReadAndWriteInPlace) {
  using T = typename TypeParam::Scalar;
  std::mt19937 gen(9);
  const Index B = 2, L = 7, S = 11, H = 3, E = 8, Ev = 5;
  // Memory laid out (B, L, H, E), as inference engines store it, seen as (B, H, L, E).
  const auto q_mem = random_tensor<T>({B, L, H, E}, gen), k_mem = random_tensor<T>({B, S, H, E}, gen);
  const auto v_mem = random_tensor<T>({B, S, H, Ev}, gen);
  const auto q = q_mem.view().permute({0, 2, 1, 3}), k = k_mem.view().permute({0, 2, 1, 3});
  const auto v = v_mem.view().permute({0, 2, 1, 3});
  Tensor<T> out_mem(Shape{B, L, H, Ev});
  AttentionOptions<T> options;
  options.causal = Causal::upper_left;
  qkv::scaled_dot_product_attention_out(out_mem.view().permute({0, 2, 1, 3}), q, k, v, options);
  const Tensor<T> contiguous = qkv::scaled_dot_product_attention(Tensor<T>(q), Tensor<T>(k), Tensor<T>(v), options);
  EXPECT_TRUE(qkv::equal(Tensor<T>(out_mem.view().permute({0, 2, 1, 3})), contiguous));
}

TYPED_TEST(AttentionTyped, KeysAndValuesBroadcastOverBatch) {
  using T = typename TypeParam::Scalar;
  std::mt19937 gen(10);
  const auto q = random_tensor<T>({3, 2, 4, 8}, gen), k = random_tensor<T>({2, 6, 8}, gen);
  const auto v = random_tensor<T>({1, 2, 6, 3}, gen);
  const Tensor<T> out = qkv::scaled_dot_product_attention(q, k, v);
  for (Index b = 0; b < 3; ++b) {
    const Tensor<T> one = qkv::scaled_dot_product_attention(q[b], k, v[0]);
    EXPECT_TRUE(qkv::equal(Tensor<T>(out[b]), one));
  }
}

// ---- bad input: every error names the function and the shapes -------------------------

TEST(AttentionErrors, HeadDimMismatch) {
  const auto q = Tensor<float>::zeros({2, 8, 128, 64}), k = Tensor<float>::zeros({2, 8, 256, 32});
  const auto v = Tensor<float>::zeros({2, 8, 256, 64});
  expect_invalid_argument([&] { qkv::scaled_dot_product_attention(q, k, v); },
                          {"qkv::scaled_dot_product_attention: key head_dim 32 != query head_dim 64 "
                           "(query [2,8,128,64], key [2,8,256,32], value [2,8,256,64])"});
}

TEST(AttentionErrors, ValueLengthMismatch) {
  const auto q = Tensor<float>::zeros({4, 8}), k = Tensor<float>::zeros({5, 8}), v = Tensor<float>::zeros({6, 8});
  expect_invalid_argument([&] { qkv::scaled_dot_product_attention(q, k, v); },
                          {"qkv::scaled_dot_product_attention", "value length 6 != key length 5", "[4,8]", "[5,8]", "[6,8]"});
}

TEST(AttentionErrors, RankTooLow) {
  const auto m = Tensor<float>::zeros({4, 8}), r1 = Tensor<float>::zeros({8});
  expect_invalid_argument([&] { qkv::scaled_dot_product_attention(r1, m, m); }, {"query must have rank >= 2", "query [8]"});
  expect_invalid_argument([&] { qkv::scaled_dot_product_attention(m, r1, m); }, {"key must have rank >= 2", "key [8]"});
  expect_invalid_argument([&] { qkv::scaled_dot_product_attention(m, m, r1); }, {"value must have rank >= 2", "value [8]"});
}

TEST(AttentionErrors, KeyWithMoreDimensionsThanQuery) {
  const auto q = Tensor<float>::zeros({4, 8}), k = Tensor<float>::zeros({2, 4, 8});
  expect_invalid_argument([&] { qkv::scaled_dot_product_attention(q, k, k); },
                          {"more dimensions than the query", "query [4,8]", "key [2,4,8]"});
}

TEST(AttentionErrors, BatchDoesNotBroadcast) {
  const auto q = Tensor<float>::zeros({2, 4, 8}), k = Tensor<float>::zeros({3, 4, 8});
  expect_invalid_argument([&] { qkv::scaled_dot_product_attention(q, k, k); },
                          {"key batch dimension 0 of size 3 does not broadcast to the query's 2", "query [2,4,8]"});
}

TEST(AttentionErrors, FewerKeyHeadsNeedEnableGqa) {
  const auto q = Tensor<float>::zeros({1, 8, 4, 16}), k = Tensor<float>::zeros({1, 2, 4, 16});
  expect_invalid_argument([&] { qkv::scaled_dot_product_attention(q, k, k); },
                          {"key batch dimension 1 of size 2 does not broadcast to the query's 8", "enable_gqa"});
}

TEST(AttentionErrors, GqaHeadsNotAMultiple) {
  const auto q = Tensor<float>::zeros({1, 8, 4, 16}), k = Tensor<float>::zeros({1, 3, 4, 16});
  AttentionOptions<float> options;
  options.enable_gqa = true;
  expect_invalid_argument([&] { qkv::scaled_dot_product_attention(q, k, k, options); },
                          {"query heads 8 not a multiple of key/value heads 3", "key [1,3,4,16]"});
  const auto v = Tensor<float>::zeros({1, 4, 4, 16}), k2 = Tensor<float>::zeros({1, 2, 4, 16});
  expect_invalid_argument([&] { qkv::scaled_dot_product_attention(q, k2, v, options); }, {"value heads 4 != key heads 2"});
  const auto q2 = Tensor<float>::zeros({4, 16});
  expect_invalid_argument([&] { qkv::scaled_dot_product_attention(q2, q2, q2, options); }, {"enable_gqa needs a head dimension"});
}

TEST(AttentionErrors, MaskDoesNotBroadcast) {
  const auto q = Tensor<float>::zeros({2, 4, 8}), k = Tensor<float>::zeros({2, 5, 8});
  const auto mask = Tensor<bool>::full({4, 4}, true);
  AttentionOptions<float> options;
  options.attn_mask = mask;
  expect_invalid_argument([&] { qkv::scaled_dot_product_attention(q, k, k, options); },
                          {"attn_mask of shape [4,4] does not broadcast to [2,4,5]", "query [2,4,8]"});
}

TEST(AttentionErrors, NonFiniteScale) {
  const auto m = Tensor<double>::zeros({4, 8});
  for (double scale : {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
    AttentionOptions<double> options;
    options.scale = scale;
    expect_invalid_argument([&] { qkv::scaled_dot_product_attention(m, m, m, options); }, {"scale", "is not finite", "query [4,8]"});
  }
}

TEST(AttentionErrors, OutWithWrongShape) {
  const auto q = Tensor<float>::zeros({3, 4, 8}), v = Tensor<float>::zeros({3, 5, 2});
  const auto k = Tensor<float>::zeros({3, 5, 8});
  Tensor<float> out(Shape{3, 4, 8});
  expect_invalid_argument([&] { qkv::scaled_dot_product_attention_out(out.view(), q, k, v); },
                          {"qkv::scaled_dot_product_attention_out: out shape [3,4,8] != expected [3,4,2]"});
}

// ---- log-sum-exp ----------------------------------------------------------------------

// logsumexp_i = log Σ_j e^(s_ij) over the visible scores, computed directly in long double
// for a causal, masked case; −inf on the rows that see no key. Through each path.
TYPED_TEST(AttentionTyped, LogSumExpOfEachRowIsThatOfItsVisibleScores) {
  using T = typename TypeParam::Scalar;
  std::mt19937 gen(31);
  const Index H = 3, L = 13, S = 29, E = 8;
  const auto q = random_tensor<T>({H, L, E}, gen, -3.0, 3.0), k = random_tensor<T>({H, S, E}, gen);
  const auto v = random_tensor<T>({H, S, 5}, gen);
  Tensor<bool> allowed(Shape{L, S});
  for (Index i = 0; i < allowed.numel(); ++i) allowed.data()[i] = (i * 5) % 7 != 0 && i / S != 4;  // row 4 sees none
  AttentionOptions<T> options;
  options.causal = Causal::lower_right;
  options.attn_mask = allowed;
  const auto result = qkv::scaled_dot_product_attention_with_logsumexp(q, k, v, options);
  ASSERT_EQ(result.logsumexp.shape(), (Shape{H, L}));
  EXPECT_TRUE(qkv::equal(result.output, qkv::scaled_dot_product_attention(q, k, v, options)));
  for (Index h = 0; h < H; ++h)
    for (Index i = 0; i < L; ++i) {
      long double sum = 0;
      for (Index j = 0; j <= i + S - L; ++j) {
        if (!allowed(i, j)) continue;
        long double dot = 0;
        for (Index e = 0; e < E; ++e) dot += static_cast<long double>(q(h, i, e)) * static_cast<long double>(k(h, j, e));
        sum += std::exp(dot / std::sqrt(static_cast<long double>(E)));
      }
      const T lse = result.logsumexp(h, i);
      if (i == 4) {
        EXPECT_EQ(lse, -std::numeric_limits<T>::infinity());
      } else {
        EXPECT_NEAR(static_cast<double>(lse), static_cast<double>(std::log(sum)), 20 * std::numeric_limits<T>::epsilon())
            << h << " " << i;
      }
    }
}

}  // namespace
