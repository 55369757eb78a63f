// SPDX-License-Identifier: MIT
// The attention variants (sliding window, soft-capping, sinks, ALiBi, a user's score
// modifier and mask predicate) through each implementation, with forced small tiles,
// against a long-double reference written here from each variant's formula.
#include <qkv/attention.hpp>
#include <qkv/attention_backward.hpp>
#include <qkv/multi_head_attention.hpp>
#include <qkv/random.hpp>
#include <qkv/parallel.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "reference.hpp"
#include "test_util.hpp"

namespace {

using qkv::AttentionOptions;
using qkv::AttentionWindow;
using qkv::bfloat16;
using qkv::Causal;
using qkv::half;
using qkv::Index;
using qkv::Shape;
using qkv::Tensor;
using qkv::TensorView;
using qkv::test::Path;
using qkv::test::random_tensor;

constexpr long double neg_inf = -std::numeric_limits<long double>::infinity();

struct NoScore {
  long double operator()(long double s, Index, Index, Index, Index) const { return s; }
};
struct AllVisible {
  bool operator()(Index, Index, Index, Index) const { return true; }
};

// softmax over the visible keys of
//   s = q·k·scale → softcap·tanh(s / softcap) → s − slope_h·|i + offset − j| → score(s, …) → + mask,
// hidden outside the causal diagonal, the window and `visible`; a sink σ_h adds e^σ_h to
// the denominator. q is (..., H, L, E) or (L, E); k, v (..., H_kv, S, ·). Outputs in double.
template <class T, class KV, class Score = NoScore, class Mask = AllVisible>
Tensor<double> variant_reference(const Tensor<T>& q, const Tensor<KV>& k, const Tensor<KV>& v,
                                 const AttentionOptions<T>& o, Tensor<double>* weights = nullptr,
                                 Score score = {}, Mask visible = {}) {
  const TensorView<const T> qv = q.view();
  const TensorView<const KV> kv = k.view(), vv = v.view();
  const Index L = q.size(-2), S = k.size(-2), E = q.size(-1), Ev = v.size(-1);
  const Index H = q.rank() >= 3 ? q.size(-3) : 1;
  const Index group = q.rank() >= 3 && k.rank() >= 3 ? H / k.size(-3) : 1;
  const long double scale = o.scale ? static_cast<long double>(*o.scale) : 1.0L / std::sqrt(static_cast<long double>(E));
  const Index offset = o.causal == Causal::upper_left ? 0 : S - L;
  const Shape batch = q.shape().front(q.rank() - 2);
  Shape out_shape = batch, w_shape = batch;
  out_shape.push_back(L), out_shape.push_back(Ev);
  w_shape.push_back(L), w_shape.push_back(S);
  Tensor<double> out(out_shape);
  if (weights) *weights = Tensor<double>(w_shape);
  std::vector<Index> index(static_cast<std::size_t>(batch.rank()));
  std::vector<long double> s(static_cast<std::size_t>(S));
  for (Index b = 0; b < batch.numel(); ++b) {
    Index rest = b;
    for (int d = batch.rank() - 1; d >= 0; --d) index[std::size_t(d)] = rest % batch[d], rest /= batch[d];
    const Index h = b % H;
    for (Index i = 0; i < L; ++i) {
      long double m = neg_inf;
      for (Index j = 0; j < S; ++j) {
        long double x = 0;
        for (Index e = 0; e < E; ++e)
          x += qkv::test::at_broadcast(qv, index, i, e) * qkv::test::at_broadcast(kv, index, j, e, group);
        x *= scale;
        if (o.softcap > 0) x = o.softcap * std::tanh(x / o.softcap);
        if (!o.alibi_slopes.empty()) x -= o.alibi_slopes[std::size_t(h)] * std::abs(static_cast<long double>(i + offset - j));
        x = score(x, b / H, h, i, j);
        if (o.attn_mask.has_value()) x += qkv::test::mask_at(o.attn_mask, index, i, j);
        const Index causal_offset = o.causal == Causal::lower_right ? S - L : 0;
        bool hidden = o.causal != Causal::none && j > i + causal_offset;
        hidden = hidden || (o.window.left >= 0 && j < i + offset - o.window.left);
        hidden = hidden || (o.window.right >= 0 && j > i + offset + o.window.right);
        hidden = hidden || !visible(b / H, h, i, j);
        s[std::size_t(j)] = hidden ? neg_inf : x;
        m = std::max(m, s[std::size_t(j)]);
      }
      if (std::isinf(m)) continue;  // no visible key: zeros
      long double top = m;
      if (!o.sinks.empty()) top = std::max(top, static_cast<long double>(o.sinks[std::size_t(h)]));
      long double sum = o.sinks.empty() ? 0.0L : std::exp(static_cast<long double>(o.sinks[std::size_t(h)]) - top);
      for (auto& x : s) sum += x = std::exp(x - top);
      for (Index j = 0; j < S; ++j) {
        const long double w = s[std::size_t(j)] / sum;
        if (weights) weights->data()[(b * L + i) * S + j] = static_cast<double>(w);
        for (Index e = 0; e < Ev; ++e)
          out.data()[(b * L + i) * Ev + e] += static_cast<double>(w * qkv::test::at_broadcast(vv, index, j, e, group));
      }
    }
  }
  return out;
}

template <class T>
std::string type_name() {
  return qkv::detail::type_name<T>();
}

// Unit roundoff of the output and of P for the 16-bit types; 0 for float and double.
template <class T>
constexpr double unit_roundoff() {
  if constexpr (std::is_same_v<T, bfloat16>) return 1.0 / 256;
  else if constexpr (std::is_same_v<T, half>) return 1.0 / 2048;
  else return 0;
}

template <class T>
constexpr double relative_tolerance() {
  return std::is_same_v<T, double> ? 1e-13 : 1e-5;
}

template <class T, Path P>
struct Case {
  using Scalar = T;
  static constexpr Path path = P;
};

struct CaseNames {
  template <class C>
  static std::string GetName(int) {
    const char* path = C::path == Path::naive ? "naive" : C::path == Path::fused ? "fused" : "decode";
    return type_name<typename C::Scalar>() + "_" + path;
  }
};

using Cases = ::testing::Types<Case<float, Path::naive>, Case<float, Path::fused>, Case<float, Path::decode>,
                               Case<double, Path::naive>, Case<double, Path::fused>, Case<double, Path::decode>,
                               Case<bfloat16, Path::naive>, Case<bfloat16, Path::fused>, Case<bfloat16, Path::decode>,
                               Case<half, Path::naive>, Case<half, Path::fused>, Case<half, Path::decode>>;

template <class C>
class VariantTest : public ::testing::Test {};
TYPED_TEST_SUITE(VariantTest, Cases, CaseNames);

// One random call with random variants; inputs drawn in double and rounded to T, the
// reference reading the rounded values.
template <class T>
struct RandomCase {
  Tensor<T> q, k, v;
  Tensor<bool> bool_mask;
  Tensor<T> additive_mask;
  AttentionOptions<T> options;
  std::string description;
  double max_bias = 0;  // largest |ALiBi bias|

  RandomCase(std::mt19937& gen, int trial) {
    auto pick = [&](std::initializer_list<Index> values) {
      return values.begin()[std::uniform_int_distribution<std::size_t>(0, values.size() - 1)(gen)];
    };
    const Index H = pick({1, 3, 4}), L = pick({1, 2, 5, 9, 17, 33}), S = pick({1, 4, 9, 17, 40});
    const Index E = pick({3, 8, 16}), Ev = pick({1, 5, 16});
    options.enable_gqa = H == 4 && trial % 2 == 0;
    const Index kv_heads = options.enable_gqa ? 2 : H;
    const double magnitude = trial % 5 == 4 ? 6.0 : 1.0;
    q = qkv::to<T>(random_tensor<double>({2, H, L, E}, gen, -magnitude, magnitude));
    k = qkv::to<T>(random_tensor<double>({2, kv_heads, S, E}, gen));
    v = qkv::to<T>(random_tensor<double>({2, kv_heads, S, Ev}, gen));
    options.causal = static_cast<Causal>(pick({0, 1, 2}));
    // Windows with sides at and across tile edges, and wider than the sequence.
    if (trial % 3 != 0) {
      options.window.left = pick({-1, 0, 1, 4, 5, 7, 60});
      options.window.right = pick({-1, 0, 2, 5, 60});
    }
    if (trial % 4 == 1 || trial % 4 == 2) options.softcap = static_cast<double>(pick({1, 2, 30})) / 2;
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    if (trial % 5 == 1 || trial % 5 == 3) {
      for (Index h = 0; h < H; ++h) options.sinks.push_back(unit(gen) * 6 - 3);
    }
    if (trial % 3 == 2) {
      options.alibi_slopes = qkv::alibi_slopes(H);
      max_bias = options.alibi_slopes.front() * double(L + S);
    }
    const int mask_kind = trial % 7 == 5 ? 1 : trial % 7 == 6 ? 2 : 0;
    if (mask_kind == 1) {
      bool_mask = Tensor<bool>(Shape{L, S});
      for (bool& x : bool_mask) x = unit(gen) > 0.3;
      options.attn_mask = bool_mask;
    } else if (mask_kind == 2) {
      additive_mask = qkv::to<T>(random_tensor<double>({H, 1, S}, gen, -2.0, 2.0));
      options.attn_mask = additive_mask;
    }
    std::ostringstream d;
    d << "trial " << trial << ": q " << q.shape().str() << " k " << k.shape().str() << " v " << v.shape().str()
      << " causal " << int(options.causal) << " window {" << options.window.left << ", " << options.window.right
      << "} softcap " << options.softcap << " sinks " << options.sinks.size() << " alibi "
      << options.alibi_slopes.size() << " mask " << mask_kind;
    description = d.str();
  }

  // Bound on the scores' magnitude: what multiplies the relative rounding of the scores.
  double logit_bound() const {
    const double scale = 1.0 / std::sqrt(double(q.size(-1)));
    double qmax = 0, kmax = 0;
    for (const T& x : q) qmax = std::max(qmax, std::abs(static_cast<double>(x)));
    for (const T& x : k) kmax = std::max(kmax, std::abs(static_cast<double>(x)));
    return std::max(1.0, scale * double(q.size(-1)) * qmax * kmax + max_bias + 4.0);
  }
};

// max |a − b| over max |b| (or the absolute difference when b is all zeros).
template <class T>
double normwise_error(const Tensor<T>& a, const Tensor<double>& b) {
  return qkv::test::normwise_error(qkv::to<double>(a), b);
}

template <class T>
double tolerance(double logit_bound) {
  return relative_tolerance<T>() * logit_bound + 4 * unit_roundoff<T>();
}

TYPED_TEST(VariantTest, RandomVariantsMatchTheFormulas) {
  using T = typename TypeParam::Scalar;
  qkv::test::ForcePath force(TypeParam::path);
  std::mt19937 gen(16);
  for (int trial = 0; trial < 60; ++trial) {
    const RandomCase<T> c(gen, trial);
    SCOPED_TRACE(c.description);
    const Tensor<T> out = qkv::scaled_dot_product_attention(c.q, c.k, c.v, c.options);
    const Tensor<double> ref = variant_reference(c.q, c.k, c.v, c.options);
    EXPECT_LE(normwise_error(out, ref), tolerance<T>(c.logit_bound()));
  }
}

// The weights are what a user checks: each variant's own formula, rows summing to less
// than 1 with a sink.
TYPED_TEST(VariantTest, WeightsMatchTheFormulas) {
  using T = typename TypeParam::Scalar;
  if (TypeParam::path != Path::naive) GTEST_SKIP() << "the weights come from the reference path";
  std::mt19937 gen(61);
  for (int trial = 0; trial < 30; ++trial) {
    const RandomCase<T> c(gen, trial);
    SCOPED_TRACE(c.description);
    const auto result = qkv::scaled_dot_product_attention_with_weights(c.q, c.k, c.v, c.options);
    Tensor<double> ref_weights;
    const Tensor<double> ref = variant_reference(c.q, c.k, c.v, c.options, &ref_weights);
    EXPECT_LE(normwise_error(result.output, ref), tolerance<T>(c.logit_bound()));
    EXPECT_LE(normwise_error(result.weights, ref_weights), tolerance<T>(c.logit_bound()));
  }
}

// Rows that may see no key give zeros with a sink too; the other rows keep their weights
// short of 1 by the sink's share.
TYPED_TEST(VariantTest, SinksOnFullyMaskedRowsGiveZeros) {
  using T = typename TypeParam::Scalar;
  qkv::test::ForcePath force(TypeParam::path);
  std::mt19937 gen(7);
  const Index L = 6, S = 11;
  const auto q = qkv::to<T>(random_tensor<double>({2, L, 4}, gen));
  const auto k = qkv::to<T>(random_tensor<double>({2, S, 4}, gen));
  const auto v = qkv::to<T>(random_tensor<double>({2, S, 3}, gen, 1.0, 2.0));  // positive: zeros stand out
  Tensor<bool> mask(Shape{L, S});
  for (Index i = 0; i < L; ++i)
    for (Index j = 0; j < S; ++j) mask(i, j) = i % 2 == 1;  // even rows see nothing
  AttentionOptions<T> options;
  options.attn_mask = mask;
  options.sinks = {0.5, 2.0};
  const Tensor<T> out = qkv::scaled_dot_product_attention(q, k, v, options);
  for (Index h = 0; h < 2; ++h)
    for (Index i = 0; i < L; ++i)
      for (Index e = 0; e < 3; ++e) {
        if (i % 2 == 0) EXPECT_EQ(static_cast<double>(out(h, i, e)), 0.0) << h << " " << i << " " << e;
        else EXPECT_GT(static_cast<double>(out(h, i, e)), 0.0);
      }
  EXPECT_LE(normwise_error(out, variant_reference(q, k, v, options)), tolerance<T>(4.0));
}

// A window holding no key (the first rows of a lower-right window when L > S, a window
// entirely right of the keys) gives zeros; one wider than the sequence is plain attention.
TYPED_TEST(VariantTest, WindowsWithoutKeysAndWiderThanTheSequence) {
  using T = typename TypeParam::Scalar;
  qkv::test::ForcePath force(TypeParam::path);
  std::mt19937 gen(8);
  const Index L = 12, S = 7;
  const auto q = qkv::to<T>(random_tensor<double>({L, 8}, gen));
  const auto k = qkv::to<T>(random_tensor<double>({S, 8}, gen));
  const auto v = qkv::to<T>(random_tensor<double>({S, 5}, gen));
  for (const Causal causal : {Causal::none, Causal::upper_left, Causal::lower_right}) {
    for (const AttentionWindow window : {AttentionWindow{0, 0}, AttentionWindow{2, 0}, AttentionWindow{1, 3},
                                         AttentionWindow{-1, 0}, AttentionWindow{100, 100}}) {
      SCOPED_TRACE("causal " + std::to_string(int(causal)) + " window {" + std::to_string(window.left) + ", " +
                   std::to_string(window.right) + "}");
      AttentionOptions<T> options;
      options.causal = causal;
      options.window = window;
      const Tensor<T> out = qkv::scaled_dot_product_attention(q, k, v, options);
      EXPECT_LE(normwise_error(out, variant_reference(q, k, v, options)), tolerance<T>(4.0));
      // Aligned lower-right, row 0 sits at key S − L < 0: it sees no key unless the window
      // reaches right of it past key 0.
      if (causal == Causal::lower_right || (causal == Causal::none && window.right < L - S && window.right >= 0)) {
        for (Index e = 0; e < 5; ++e) EXPECT_EQ(static_cast<double>(out(0, e)), 0.0);
      }
      if (window.left == 100) {
        AttentionOptions<T> plain;
        plain.causal = causal;
        EXPECT_LE(normwise_error(out, variant_reference(q, k, v, plain)), tolerance<T>(4.0));
      }
    }
  }
}

// Soft-capping bounds huge logits: with q·k·scale in the thousands the capped scores stay
// within ±cap, and the result is that of the capped formula (plain attention would put
// all weight on one key).
TYPED_TEST(VariantTest, SoftcapWithHugeLogits) {
  using T = typename TypeParam::Scalar;
  qkv::test::ForcePath force(TypeParam::path);
  std::mt19937 gen(9);
  const auto q = qkv::to<T>(random_tensor<double>({2, 9, 8}, gen));
  const auto k = qkv::to<T>(random_tensor<double>({2, 13, 8}, gen));
  const auto v = qkv::to<T>(random_tensor<double>({2, 13, 4}, gen));
  AttentionOptions<T> options;
  options.scale = 3000.0;
  options.softcap = 2.0;
  options.causal = Causal::lower_right;
  const Tensor<T> out = qkv::scaled_dot_product_attention(q, k, v, options);
  EXPECT_LE(normwise_error(out, variant_reference(q, k, v, options)), tolerance<T>(4.0));
}

// A window reads only the keys in it: keys and values left of every row's window are NaN,
// and the result is still that of the clean inputs.
TYPED_TEST(VariantTest, WindowReadsOnlyItsKeys) {
  using T = typename TypeParam::Scalar;
  qkv::test::ForcePath force(TypeParam::path);
  std::mt19937 gen(10);
  const Index L = 3, S = 60, left = 6;
  const auto q = qkv::to<T>(random_tensor<double>({L, 8}, gen));
  auto k = qkv::to<T>(random_tensor<double>({S, 8}, gen));
  auto v = qkv::to<T>(random_tensor<double>({S, 4}, gen));
  AttentionOptions<T> options;
  options.causal = Causal::lower_right;
  options.window.left = left;
  const Tensor<double> ref = variant_reference(q, k, v, options);
  // The fused kernel's bfloat16 products take the values in pairs of keys from an even key
  // of the tile on: it may read one key left of the window.
  const Index slack = std::is_same_v<T, bfloat16> && TypeParam::path == Path::fused ? 1 : 0;
  for (Index j = 0; j < S - L - left - slack; ++j) {  // row 0 sees keys S − L − left … S − L
    for (Index e = 0; e < 8; ++e) k(j, e) = T(std::numeric_limits<float>::quiet_NaN());
    for (Index e = 0; e < 4; ++e) v(j, e) = T(std::numeric_limits<float>::quiet_NaN());
  }
  const Tensor<T> out = qkv::scaled_dot_product_attention(q, k, v, options);
  for (const T& x : out) ASSERT_TRUE(std::isfinite(static_cast<double>(x)));  // (normwise_error skips NaN)
  EXPECT_LE(normwise_error(out, ref), tolerance<T>(4.0));
}

// A relative-position bias per (head, distance) from a small table, as T5 and the issue's
// benchmark; generic, so that the reference calls it in long double.
struct RelativeBias {
  const std::vector<double>* table;  // (heads, 2·max_distance + 1)
  Index max_distance;
  template <class S>
  S operator()(S s, Index batch, Index head, Index i, Index j) const {
    const Index d = std::clamp<Index>(i - j, -max_distance, max_distance) + max_distance;
    return s + static_cast<S>((*table)[std::size_t(head * (2 * max_distance + 1) + d)]) + S(0.25) * S(batch);
  }
};

// Documents packed in one sequence: a key is visible from a query of the same document.
// With the tile form, tiles between different documents are skipped and tiles within one
// document take the unmasked path.
struct SameDocument {
  const std::vector<Index>* doc;  // document of each position, non-decreasing
  bool operator()(Index, Index, Index i, Index j) const { return (*doc)[std::size_t(i)] == (*doc)[std::size_t(j)]; }
  qkv::TileVisibility tile(Index, Index, Index q_begin, Index q_end, Index kv_begin, Index kv_end) const {
    const Index q_first = (*doc)[std::size_t(q_begin)], q_last = (*doc)[std::size_t(q_end - 1)];
    const Index k_first = (*doc)[std::size_t(kv_begin)], k_last = (*doc)[std::size_t(kv_end - 1)];
    if (q_last < k_first || k_last < q_first) return qkv::TileVisibility::hidden;
    if (q_first == q_last && k_first == k_last) return qkv::TileVisibility::visible;
    return qkv::TileVisibility::partial;
  }
};

// The same predicate without a tile form: every pair is asked.
struct SameDocumentPairs {
  const std::vector<Index>* doc;
  bool operator()(Index b, Index h, Index i, Index j) const { return SameDocument{doc}(b, h, i, j); }
};

TYPED_TEST(VariantTest, UserScoreAndMaskMatchTheFormulas) {
  using T = typename TypeParam::Scalar;
  qkv::test::ForcePath force(TypeParam::path);
  std::mt19937 gen(17);
  const Index H = 3, L = 29, E = 8, max_distance = 6;
  std::vector<double> table(std::size_t(H * (2 * max_distance + 1)));
  for (double& x : table) x = std::uniform_real_distribution<double>(-2.0, 2.0)(gen);
  std::vector<Index> doc(static_cast<std::size_t>(L));
  for (Index i = 0; i < L; ++i) doc[std::size_t(i)] = i < 3 ? 0 : i < 4 ? 1 : i < 17 ? 2 : 3;  // one of one token
  const RelativeBias bias{&table, max_distance};
  const auto q = qkv::to<T>(random_tensor<double>({2, H, L, E}, gen));
  const auto k = qkv::to<T>(random_tensor<double>({2, H, L, E}, gen));
  const auto v = qkv::to<T>(random_tensor<double>({2, H, L, 5}, gen));
  for (int trial = 0; trial < 8; ++trial) {
    AttentionOptions<T> options;
    options.causal = trial % 2 ? Causal::upper_left : Causal::none;
    if (trial % 4 >= 2) options.softcap = 3.0, options.window = {5, -1};
    SCOPED_TRACE("trial " + std::to_string(trial));
    const double bound = 8.0;
    if (trial < 4) {
      const Tensor<T> out = qkv::scaled_dot_product_attention(q, k, v, options, qkv::score_mod(bias));
      EXPECT_LE(normwise_error(out, variant_reference(q, k, v, options, nullptr, bias)), tolerance<T>(bound));
    } else {
      const SameDocument same{&doc};
      const Tensor<T> out = qkv::scaled_dot_product_attention(q, k, v, options, qkv::modifiers(bias, same));
      const Tensor<double> ref = variant_reference(q, k, v, options, nullptr, bias, same);
      EXPECT_LE(normwise_error(out, ref), tolerance<T>(bound));
      const Tensor<T> pairs =
          qkv::scaled_dot_product_attention(q, k, v, options, qkv::mask_mod(SameDocumentPairs{&doc}));
      EXPECT_LE(normwise_error(pairs, variant_reference(q, k, v, options, nullptr, NoScore{}, same)),
                tolerance<T>(bound));
      if (TypeParam::path == Path::naive) {
        const auto result = qkv::scaled_dot_product_attention_with_weights(q, k, v, options, qkv::modifiers(bias, same));
        Tensor<double> ref_weights;
        (void)variant_reference(q, k, v, options, &ref_weights, bias, same);
        EXPECT_LE(normwise_error(result.weights, ref_weights), tolerance<T>(bound));
      }
    }
  }
}

// A layer configured with each variant (as Gemma 2's, Mistral's, gpt-oss's and BLOOM's
// layers): decoding through a KV cache token by token, and in chunks, equals one causal
// pass, the window and ALiBi taking the tokens' positions in the cache.
TEST(VariantLayer, DecodingEqualsOnePass) {
  for (int kind = 0; kind < 5; ++kind) {
    SCOPED_TRACE("variant " + std::to_string(kind));
    qkv::MultiHeadAttentionConfig config;
    config.num_kv_heads = 2;
    if (kind == 0 || kind == 4) config.window = {2, 0};  // Mistral: 3 tokens
    if (kind == 1 || kind == 4) config.softcap = 0.5;   // Gemma 2 (a cap small enough to bite)
    if (kind == 2 || kind == 4) config.sinks = {0.5, -1.0, 2.0, 0.0};  // gpt-oss
    if (kind == 3 || kind == 4) config.alibi_slopes = qkv::alibi_slopes(4);
    qkv::NumpyRandom rng(16);
    qkv::MultiHeadAttention<double> m(16, 4, config, rng);
    const Tensor<double> x = rng.randn<double>({2, 9, 16});
    qkv::MultiHeadAttentionForward<double> options;
    options.causal = Causal::upper_left;
    const Tensor<double> full = m.forward(x, options).output;
    for (const std::vector<Index>& chunks : std::vector<std::vector<Index>>{{1, 1, 1, 1, 1, 1, 1, 1, 1}, {4, 1, 3, 1}}) {
      auto cache = m.make_cache(2, 9);
      Index position = 0;
      for (Index n : chunks) {
        const Tensor<double> out = m.forward_cached(x.narrow(1, position, n), cache);
        EXPECT_TRUE(qkv::test::AllNear(out, Tensor<double>(full.narrow(1, position, n)), 1e-13)) << position;
        position += n;
      }
    }
  }
  // The variants change the layer's output (the test above would pass if they were ignored
  // by both paths alike).
  qkv::MultiHeadAttentionConfig window, none;
  window.window = {1, 0};
  qkv::NumpyRandom a(3), b(3);
  const qkv::MultiHeadAttention<double> with(8, 2, window, a), without(8, 2, none, b);
  qkv::NumpyRandom rng(4);
  const Tensor<double> x = rng.randn<double>({1, 5, 8});
  EXPECT_FALSE(qkv::test::AllNear(with.forward(x).output, without.forward(x).output, 1e-3));
  qkv::MultiHeadAttentionConfig bad;
  bad.sinks = {1.0};
  EXPECT_TRUE(qkv::test::ThrowsWith<std::invalid_argument>([&] { qkv::MultiHeadAttention<double> m(8, 2, bad); },
                                                           {"qkv::MultiHeadAttention", "sinks has 1 values != num_heads 2"}));
}

// At the kernels' real tile sizes (tasks of many panels sharing key tiles, tiles skipped
// left of each panel's window): float within the plain kernel's normwise bound, and
// bitwise the same result for 1 and 2 threads.
TEST(VariantKernel, WindowAtRealTileSizes) {
  std::mt19937 gen(1600);
  const Index L = 500, S = 600, E = 64;
  const auto q = random_tensor<float>({2, L, E}, gen), k = random_tensor<float>({2, S, E}, gen);
  const auto v = random_tensor<float>({2, S, E}, gen);
  for (const Causal causal : {Causal::upper_left, Causal::lower_right, Causal::none}) {
    SCOPED_TRACE("causal " + std::to_string(int(causal)));
    AttentionOptions<float> options;
    options.causal = causal;
    options.window = {130, causal == Causal::none ? 17 : -1};
    options.sinks = {1.0, -0.5};
    options.alibi_slopes = {0.05, 0.01};
    options.softcap = 4.0;
    qkv::set_num_threads(1);
    const Tensor<float> one = qkv::scaled_dot_product_attention(q, k, v, options);
    qkv::set_num_threads(2);
    const Tensor<float> two = qkv::scaled_dot_product_attention(q, k, v, options);
    qkv::set_num_threads(0);
    EXPECT_EQ(std::memcmp(one.data(), two.data(), sizeof(float) * std::size_t(one.numel())), 0);
    EXPECT_LE(normwise_error(one, variant_reference(q, k, v, options)), 1e-5 * 8.0);
  }
}

TEST(AlibiSlopes, PowersOfTwoAndBloomsRule) {
  const std::vector<double> eight = qkv::alibi_slopes(8);
  ASSERT_EQ(eight.size(), 8u);
  for (std::size_t h = 0; h < 8; ++h) EXPECT_EQ(eight[h], std::ldexp(1.0, -int(h) - 1));
  // 6 heads: the 4 of 4 heads (2^-2, 2^-4, 2^-6, 2^-8), then 2^-1, 2^-3 (odd ones of 8).
  const std::vector<double> six = qkv::alibi_slopes(6);
  const std::vector<double> expected6 = {0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125};
  EXPECT_EQ(six, expected6);
  // 12 heads: the 8 of 8 heads, then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5.
  const std::vector<double> twelve = qkv::alibi_slopes(12);
  ASSERT_EQ(twelve.size(), 12u);
  for (std::size_t h = 0; h < 4; ++h) EXPECT_DOUBLE_EQ(twelve[8 + h], std::exp2(-0.5 - double(h)));
  EXPECT_EQ(qkv::alibi_slopes(1), std::vector<double>{1.0 / 256});
}

TEST(VariantOptions, BadInputThrowsNamingTheOptionAndShapes) {
  const Tensor<float> q(Shape{3, 4, 8}), k(Shape{3, 5, 8}), v(Shape{3, 5, 8});
  auto call = [&](auto set) {
    return [&q, &k, &v, set] {
      AttentionOptions<float> options;
      set(options);
      (void)qkv::scaled_dot_product_attention(q, k, v, options);
    };
  };
  using qkv::test::ThrowsWith;
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(call([](AttentionOptions<float>& o) { o.window = {-2, 3}; }),
                                                {"qkv::scaled_dot_product_attention", "window {-2, 3}", "query [3,4,8], key [3,5,8]"}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(call([](AttentionOptions<float>& o) { o.window = {1, -5}; }),
                                                {"window {1, -5}"}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(call([](AttentionOptions<float>& o) { o.softcap = -1; }),
                                                {"softcap -1", "positive and finite"}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(
      call([](AttentionOptions<float>& o) { o.softcap = std::numeric_limits<double>::infinity(); }), {"softcap inf"}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(
      call([](AttentionOptions<float>& o) { o.softcap = std::numeric_limits<double>::quiet_NaN(); }), {"softcap"}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(call([](AttentionOptions<float>& o) { o.sinks = {1, 2}; }),
                                                {"sinks has 2 values != 3 query heads", "value [3,5,8]"}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(
      call([](AttentionOptions<float>& o) { o.alibi_slopes = qkv::alibi_slopes(4); }),
      {"alibi_slopes has 4 values != 3 query heads"}));
  // Backward has no variants yet: refused, not silently differentiated as plain attention.
  AttentionOptions<float> options;
  options.softcap = 5;
  const Tensor<float> out(Shape{3, 4, 8}), lse(Shape{3, 4});
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(
      [&] { (void)qkv::scaled_dot_product_attention_backward(out, q, k, v, out, lse, options); },
      {"qkv::scaled_dot_product_attention_backward", "no backward pass"}));
}

}  // namespace
