// SPDX-License-Identifier: MIT
// qkv::MultiHeadAttention against torch.nn.MultiheadAttention (tests/data/mha_cases.inc,
// written by tests/data/make_mha_cases.py) in float and double; grouped-query attention
// against repeated key/value heads and a long-double per-head formula; decoding through a
// KVCache against one causal pass; the initialisation; every error message.
#include <qkv/kv_cache.hpp>
#include <qkv/multi_head_attention.hpp>
#include <qkv/ops.hpp>
#include <qkv/random.hpp>
#include <qkv/rope.hpp>
#include <qkv/tensor.hpp>

#include <gtest/gtest.h>

#include "test_util.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using qkv::test::AllNear;

using qkv::Causal;
using qkv::Index;
using qkv::Shape;
using qkv::Tensor;
using qkv::test::ThrowsWith;

template <class T>
using Mha = qkv::MultiHeadAttention<T>;
template <class T>
using Forward = qkv::MultiHeadAttentionForward<T>;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---- the PyTorch cases -------------------------------------------------------------------

struct Array {
  std::vector<Index> shape;
  std::vector<double> values;
};

struct MhaCase {
  std::string name;
  std::map<std::string, Index> sizes;
  std::map<std::string, Array> arrays;

  Index size(const std::string& key) const { return sizes.at(key); }
  bool has(const std::string& key) const { return arrays.count(key) != 0; }
  const Array& array(const std::string& key) const { return arrays.at(key); }
};

const std::vector<MhaCase>& PyTorchCases() {
  static const std::vector<MhaCase> cases = {
#include "data/mha_cases.inc"
  };
  return cases;
}

template <class T>
Tensor<T> ToTensor(const Array& a) {
  Shape shape;
  for (Index d : a.shape) shape.push_back(d);
  Tensor<T> t(shape);
  for (Index i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(a.values[static_cast<std::size_t>(i)]);
  return t;
}

template <class To, class From>
Tensor<To> Cast(const Tensor<From>& x) {
  return qkv::map(x, [](From v) { return static_cast<To>(v); });
}

// The case's module with its weights, in T (every value is a float32, exact in T).
template <class T>
Mha<T> LayerFor(const MhaCase& c) {
  qkv::MultiHeadAttentionConfig config;
  config.kdim = c.size("kdim");
  config.vdim = c.size("vdim");
  config.bias = c.size("bias") != 0;
  Mha<T> m(c.size("embed_dim"), c.size("num_heads"), config);
  const Tensor<T> out_weight = ToTensor<T>(c.array("out_proj_weight"));
  if (!config.bias) {
    if (c.has("in_proj_weight")) {
      m.set_in_proj(ToTensor<T>(c.array("in_proj_weight")));
    } else {
      m.set_q_proj(ToTensor<T>(c.array("q_proj_weight")));
      m.set_k_proj(ToTensor<T>(c.array("k_proj_weight")));
      m.set_v_proj(ToTensor<T>(c.array("v_proj_weight")));
    }
    m.set_out_proj(out_weight);
    return m;
  }
  const Tensor<T> in_bias = ToTensor<T>(c.array("in_proj_bias"));
  const Index E = m.embed_dim();
  if (c.has("in_proj_weight")) {
    m.set_in_proj(ToTensor<T>(c.array("in_proj_weight")), in_bias);
  } else {  // PyTorch keeps one in_proj_bias (3 E) beside the separate weights
    m.set_q_proj(ToTensor<T>(c.array("q_proj_weight")), in_bias.narrow(0, 0, E));
    m.set_k_proj(ToTensor<T>(c.array("k_proj_weight")), in_bias.narrow(0, E, E));
    m.set_v_proj(ToTensor<T>(c.array("v_proj_weight")), in_bias.narrow(0, 2 * E, E));
  }
  m.set_out_proj(out_weight, ToTensor<T>(c.array("out_proj_bias")));
  return m;
}

// A case's inputs and masks in T, and the options that view them.
template <class T>
struct CaseInputs {
  Tensor<T> query, key, value;
  Tensor<bool> padding, bool_attn_mask;
  Tensor<T> float_attn_mask;
  Forward<T> options;

  explicit CaseInputs(const MhaCase& c) {
    query = ToTensor<T>(c.array("query"));
    key = c.size("self_attention") ? query : ToTensor<T>(c.array("key"));
    value = c.size("self_attention") ? query : ToTensor<T>(c.array("value"));
    if (c.has("key_padding_mask")) {
      padding = qkv::map(ToTensor<double>(c.array("key_padding_mask")), [](double x) { return x != 0; });
      options.key_padding_mask = padding;
    }
    if (c.has("attn_mask")) {
      if (c.size("attn_mask_is_bool")) {
        bool_attn_mask = qkv::map(ToTensor<double>(c.array("attn_mask")), [](double x) { return x != 0; });
        options.attn_mask = bool_attn_mask;
      } else {
        float_attn_mask = ToTensor<T>(c.array("attn_mask"));
        options.attn_mask = float_attn_mask;
      }
    }
    if (c.size("causal")) options.causal = Causal::upper_left;
    options.average_attn_weights = c.size("average_attn_weights") != 0;
  }
  CaseInputs(const CaseInputs&) = delete;  // the options view the tensors
  CaseInputs& operator=(const CaseInputs&) = delete;

  double additive_mask_max() const {
    double m = 0;
    for (T x : float_attn_mask)
      if (std::isfinite(x)) m = std::max(m, std::abs(static_cast<double>(x)));
    return m;
  }
};

// ---- error bounds ------------------------------------------------------------------------

// A first-order bound on how far a forward pass computed in a floating-point type of unit
// roundoff u lies from the exact result, from the layer and inputs in double (exactly the
// values of the layer computed with). With n inputs to a projection, head_dim D, S keys,
// H heads and embed_dim E:
// - a projection sum_e x_e w_e + b: n products and n sums, <= (n + 2) u P, where
//   P = max(|x| |W|ᵀ + |b|) bounds |projection|; a rotary embedding (a c - b s with rounded
//   c, s) at most doubles the magnitude and the error, and adds 3 roundings of 2P plus those
//   of c and s: dq' <= 2 dq + 8 u Q;
// - a score scale sum_d q_d k_d (+ mask): from dq, dk, its own D products and sums, the
//   rounding of the scale and of q scaled first (PyTorch) and the mask's addition:
//   ds <= scale D ((Q + dq) dk + dq (K + dk) + (D + 3) u (Q + dq)(K + dk)) + 2 u s_max;
// - a weight exp(s_j - m) / sum_l exp(s_l - m): every score off by ds moves it by a factor
//   within exp(±2 ds); the subtraction (<= 2 u s_max), the exps (an ulp each), the sum of
//   S terms and the division add (S + 5) u, so weights are off by a relative
//   rel = exp(2 ds + 4 u s_max + (S + 5) u) - 1, hence absolutely (w <= 1); averaging H of
//   them adds (H + 1) u;
// - a head output sum_j w_j v_j: <= (rel + S u)(V + dv) + dv, as the weights sum to <= 1;
// - out_proj, sum_e a_e W_ie + b_i: R do + (E + 2) u (R (V + dv) + max|b|), with R the
//   largest row sum of |W_out|.
struct Bounds {
  double output, weights;
};
Bounds ForwardErrorBound(const Mha<double>& m, const Tensor<double>& query, const Tensor<double>& key,
                         const Tensor<double>& value, double mask_max, bool rotated, double u) {
  const auto magnitude = [&](const Tensor<double>& x, const Tensor<double>& w, const Tensor<double>& b) {
    Tensor<double> p = qkv::matmul(qkv::abs(x), qkv::transpose(qkv::abs(w)));
    if (m.has_bias()) p += qkv::abs(b);
    return qkv::max(p);
  };
  const double E = static_cast<double>(m.embed_dim()), D = static_cast<double>(m.head_dim());
  const double H = static_cast<double>(m.num_heads()), S = static_cast<double>(key.size(-2));
  double Q = magnitude(query, m.q_proj_weight(), m.q_proj_bias());
  double K = magnitude(key, m.k_proj_weight(), m.k_proj_bias());
  const double V = magnitude(value, m.v_proj_weight(), m.v_proj_bias());
  double dq = (E + 2) * u * Q, dk = (static_cast<double>(m.kdim()) + 2) * u * K;
  const double dv = (static_cast<double>(m.vdim()) + 2) * u * V;
  if (rotated) {
    dq = 2 * dq + 8 * u * Q, dk = 2 * dk + 8 * u * K;
    Q *= 2, K *= 2;
  }
  const double scale = 1 / std::sqrt(D);
  const double s_max = scale * D * (Q + dq) * (K + dk) + mask_max;
  const double ds = scale * D * ((Q + dq) * dk + dq * (K + dk) + (D + 3) * u * (Q + dq) * (K + dk)) + 2 * u * s_max;
  const double rel = std::expm1(2 * ds + 4 * u * s_max + (S + 5) * u);
  const double d_head = (rel + S * u) * (V + dv) + dv;
  double row_sum = 0;
  const Tensor<double> w_out = qkv::abs(m.out_proj_weight());
  for (Index i = 0; i < w_out.size(0); ++i) row_sum = std::max(row_sum, qkv::sum(w_out[i]));
  const double b_out = m.has_bias() ? qkv::max(qkv::abs(m.out_proj_bias())) : 0.0;
  return {row_sum * d_head + (E + 2) * u * (row_sum * (V + dv) + b_out), rel + (H + 1) * u};
}

template <class T>
constexpr double UnitRoundoff() {
  return std::is_same_v<T, float> ? 0x1p-24 : 0x1p-53;
}

template <class T>
Mha<double> ToDouble(const Mha<T>& m) {
  qkv::MultiHeadAttentionConfig config;
  config.kdim = m.kdim(), config.vdim = m.vdim(), config.bias = m.has_bias(), config.num_kv_heads = m.num_kv_heads();
  Mha<double> d(m.embed_dim(), m.num_heads(), config);
  if (!m.has_bias()) {
    d.set_q_proj(Cast<double>(m.q_proj_weight()));
    d.set_k_proj(Cast<double>(m.k_proj_weight()));
    d.set_v_proj(Cast<double>(m.v_proj_weight()));
    d.set_out_proj(Cast<double>(m.out_proj_weight()));
    return d;
  }
  d.set_q_proj(Cast<double>(m.q_proj_weight()), Cast<double>(m.q_proj_bias()));
  d.set_k_proj(Cast<double>(m.k_proj_weight()), Cast<double>(m.k_proj_bias()));
  d.set_v_proj(Cast<double>(m.v_proj_weight()), Cast<double>(m.v_proj_bias()));
  d.set_out_proj(Cast<double>(m.out_proj_weight()), Cast<double>(m.out_proj_bias()));
  return d;
}

// Both results within ForwardErrorBound of the exact one: twice that apart.
template <class T>
Bounds TwoComputations(const Mha<T>& m, const Tensor<T>& query, const Tensor<T>& key, const Tensor<T>& value,
                       double mask_max = 0, bool rotated = false) {
  const Bounds b = ForwardErrorBound(ToDouble(m), Cast<double>(query), Cast<double>(key), Cast<double>(value),
                                     mask_max, rotated, UnitRoundoff<T>());
  return {2 * b.output, 2 * b.weights};
}

template <class T>
class MhaTest : public testing::Test {};
TYPED_TEST_SUITE(MhaTest, qkv::test::FloatTypes, qkv::test::FloatTypeNames);

// ---- equality with torch.nn.MultiheadAttention ---------------------------------------------

TYPED_TEST(MhaTest, MatchesPyTorchOnEveryCase) {
  using T = TypeParam;
  const std::string suffix = std::is_same_v<T, float> ? "_float" : "_double";
  ASSERT_EQ(PyTorchCases().size(), 19u);
  for (const MhaCase& c : PyTorchCases()) {
    SCOPED_TRACE("case " + c.name);
    const Mha<T> m = LayerFor<T>(c);
    CaseInputs<T> in(c);
    const Bounds tolerance = TwoComputations(m, in.query, in.key, in.value, in.additive_mask_max());
    SCOPED_TRACE("output bound " + std::to_string(tolerance.output) + ", weight bound " +
                 std::to_string(tolerance.weights));
    const Tensor<double> expected_output = ToTensor<double>(c.array("output" + suffix));
    const Tensor<double> expected_weights = ToTensor<double>(c.array("weights" + suffix));

    Forward<T> options = in.options;
    options.need_weights = true;
    const auto result = c.size("self_attention") ? m.forward(in.query, options)
                                                 : m.forward(in.query, in.key, in.value, options);
    EXPECT_TRUE(AllNear(result.output, expected_output, tolerance.output));
    EXPECT_TRUE(AllNear(result.weights, expected_weights, tolerance.weights));

    // Where PyTorch 1.13 gives NaN (a query that may see no key), qkv attends to nothing:
    // the output is out_proj's bias and the weights are zeros.
    for (Index i = 0; i < expected_output.numel(); ++i) {
      if (std::isnan(expected_output.data()[i])) {
        EXPECT_EQ(result.output.data()[i], m.out_proj_bias().data()[i % m.embed_dim()]) << "element " << i;
      }
    }
    for (Index i = 0; i < expected_weights.numel(); ++i) {
      if (std::isnan(expected_weights.data()[i])) {
        EXPECT_EQ(result.weights.data()[i], T(0)) << "weight " << i;
      }
    }

    // Without weights (qkv's default) the fast path gives the same output.
    options.need_weights = false;
    const auto fast = m.forward(in.query, in.key, in.value, options);
    EXPECT_TRUE(AllNear(fast.output, expected_output, tolerance.output));
    EXPECT_TRUE(AllNear(fast.output, result.output, tolerance.output));
    EXPECT_TRUE(fast.weights.empty());
  }
}

TEST(MhaPyTorchCases, CoverWhatTheyClaim) {
  // The fully masked case really has NaN rows in PyTorch, and the unbatched cases are unbatched.
  int nan_cases = 0, unbatched = 0, per_head = 0;
  for (const MhaCase& c : PyTorchCases()) {
    const auto& out = c.array("output_double").values;
    nan_cases += std::any_of(out.begin(), out.end(), [](double x) { return std::isnan(x); });
    unbatched += c.size("batched") == 0 && c.array("query").shape.size() == 2;
    per_head += c.size("average_attn_weights") == 0 && c.array("weights_double").shape.size() ==
                                                           (c.size("batched") ? 4u : 3u);
  }
  EXPECT_EQ(nan_cases, 1);
  EXPECT_EQ(unbatched, 2);
  EXPECT_EQ(per_head, 2);
}

// ---- grouped-query attention ---------------------------------------------------------------

// A layer drawn by reset_parameters, with biases drawn too (reset_parameters zeroes them).
template <class T>
Mha<T> RandomLayer(Index embed_dim, Index num_heads, qkv::MultiHeadAttentionConfig config, std::uint32_t seed) {
  qkv::NumpyRandom rng(seed);
  Mha<T> m(embed_dim, num_heads, config, rng);
  if (!config.bias) return m;
  m.set_q_proj(m.q_proj_weight(), rng.uniform<T>(-0.5, 0.5, {embed_dim}));
  m.set_k_proj(m.k_proj_weight(), rng.uniform<T>(-0.5, 0.5, {m.kv_dim()}));
  m.set_v_proj(m.v_proj_weight(), rng.uniform<T>(-0.5, 0.5, {m.kv_dim()}));
  m.set_out_proj(m.out_proj_weight(), rng.uniform<T>(-0.5, 0.5, {embed_dim}));
  return m;
}

// The rows of a (num_kv_heads * head_dim, ...) k/v weight or bias repeated for each query
// head: head h reads key/value head h / group, as torch.repeat_interleave(w, group, dim=0)
// on the head-sized blocks.
template <class T>
Tensor<T> RepeatHeads(const Tensor<T>& w, Index head_dim, Index group) {
  const Index kv_heads = w.size(0) / head_dim, cols = w.numel() / w.size(0);
  Shape shape = w.shape();
  shape[0] = w.size(0) * group;
  Tensor<T> out(shape);
  for (Index h = 0; h < kv_heads * group; ++h)
    for (Index r = 0; r < head_dim; ++r)
      for (Index c = 0; c < cols; ++c)
        out.data()[(h * head_dim + r) * cols + c] = w.data()[((h / group) * head_dim + r) * cols + c];
  return out;
}

template <class T>
Mha<T> WithRepeatedKeyValueHeads(const Mha<T>& g) {
  qkv::MultiHeadAttentionConfig config;
  config.kdim = g.kdim(), config.vdim = g.vdim(), config.bias = g.has_bias();
  Mha<T> m(g.embed_dim(), g.num_heads(), config);
  const Index D = g.head_dim(), group = g.num_heads() / g.num_kv_heads();
  m.set_q_proj(g.q_proj_weight(), g.q_proj_bias());
  m.set_k_proj(RepeatHeads(g.k_proj_weight(), D, group), RepeatHeads(g.k_proj_bias(), D, group));
  m.set_v_proj(RepeatHeads(g.v_proj_weight(), D, group), RepeatHeads(g.v_proj_bias(), D, group));
  m.set_out_proj(g.out_proj_weight(), g.out_proj_bias());
  return m;
}

TYPED_TEST(MhaTest, GroupedQueryEqualsRepeatedKeyValueHeads) {
  using T = TypeParam;
  for (const Index kdim : {0, 6}) {
    qkv::MultiHeadAttentionConfig config;
    config.num_kv_heads = 2;
    config.kdim = kdim;
    config.vdim = kdim ? 5 : 0;
    const Mha<T> g = RandomLayer<T>(12, 6, config, 21);
    ASSERT_EQ(g.kv_dim(), 4);
    const Mha<T> m = WithRepeatedKeyValueHeads(g);
    qkv::NumpyRandom rng(22);
    const Tensor<T> query = rng.randn<T>({2, 3, 12});
    const Tensor<T> key = rng.randn<T>({2, 5, g.kdim()}), value = rng.randn<T>({2, 5, g.vdim()});
    const Tensor<bool> padding = {{false, true, false, false, false}, {false, false, false, false, true}};
    Forward<T> options;
    options.key_padding_mask = padding;
    options.need_weights = true;
    options.average_attn_weights = false;
    const Bounds tolerance = TwoComputations(m, query, key, value);
    const auto grouped = g.forward(query, key, value, options), repeated = m.forward(query, key, value, options);
    EXPECT_TRUE(AllNear(grouped.output, repeated.output, tolerance.output));
    EXPECT_TRUE(AllNear(grouped.weights, repeated.weights, tolerance.weights));
    EXPECT_EQ(grouped.weights.shape(), (Shape{2, 6, 3, 5}));
  }
}

// softmax(q kᵀ / sqrt(D) + mask) v per head and out_proj, in long double, written from the
// definitions: query head h uses rows h D .. h D + D - 1 of W_q and key/value head
// h / (num_heads / num_kv_heads). `hide` is an additive (batch, num_heads, L, S) mask.
Tensor<double> DirectFormula(const Mha<double>& m, const Tensor<double>& query, const Tensor<double>& key,
                             const Tensor<double>& value, const Tensor<double>& hide) {
  using LD = long double;
  const Index B = query.size(0), L = query.size(1), S = key.size(1), E = m.embed_dim(), D = m.head_dim();
  const Index H = m.num_heads(), group = H / m.num_kv_heads();
  const auto project = [&](const Tensor<double>& x, Index b, Index t, const Tensor<double>& w,
                           const Tensor<double>& bias, Index row) {
    LD sum = m.has_bias() ? bias.data()[row] : 0.0L;
    for (Index e = 0; e < x.size(2); ++e) sum += LD(x(b, t, e)) * LD(w(row, e));
    return sum;
  };
  Tensor<double> out(Shape{B, L, E});
  Eigen::Matrix<LD, Eigen::Dynamic, 1> attended(E), scores(S);  // indexed by Index, as the tensors
  for (Index b = 0; b < B; ++b)
    for (Index i = 0; i < L; ++i) {
      for (Index h = 0; h < H; ++h) {
        const Index kv = h / group;
        LD max = -std::numeric_limits<LD>::infinity();
        for (Index j = 0; j < S; ++j) {
          LD dot = 0;
          for (Index d = 0; d < D; ++d)
            dot += project(query, b, i, m.q_proj_weight(), m.q_proj_bias(), h * D + d) *
                   project(key, b, j, m.k_proj_weight(), m.k_proj_bias(), kv * D + d);
          scores[j] = dot / std::sqrt(LD(D)) + LD(hide(b, h, i, j));
          max = std::max(max, scores[j]);
        }
        LD total = 0;
        for (LD& s : scores) total += s = std::isinf(max) ? 0.0L : std::exp(s - max);
        for (Index d = 0; d < D; ++d) {
          LD sum = 0;
          for (Index j = 0; j < S; ++j)
            if (total > 0)
              sum += scores[j] / total * project(value, b, j, m.v_proj_weight(), m.v_proj_bias(), kv * D + d);
          attended[h * D + d] = sum;
        }
      }
      for (Index o = 0; o < E; ++o) {
        LD sum = m.has_bias() ? m.out_proj_bias().data()[o] : 0.0L;
        for (Index e = 0; e < E; ++e) sum += attended[e] * LD(m.out_proj_weight()(o, e));
        out(b, i, o) = static_cast<double>(sum);
      }
    }
  return out;
}

TYPED_TEST(MhaTest, GroupedQueryEqualsTheDirectPerHeadFormula) {
  using T = TypeParam;
  qkv::MultiHeadAttentionConfig config;
  config.num_kv_heads = 2;
  const Mha<T> g = RandomLayer<T>(16, 4, config, 31);
  qkv::NumpyRandom rng(32);
  const Tensor<T> x = rng.randn<T>({2, 5, 16});
  Forward<T> options;
  options.causal = Causal::upper_left;
  Tensor<double> hide(Shape{2, 4, 5, 5});
  for (Index p = 0; p < hide.numel(); ++p)
    if ((p % 5) > (p / 5) % 5) hide.data()[p] = -kInf;  // key j > query i
  const Bounds bound = ForwardErrorBound(ToDouble(g), Cast<double>(x), Cast<double>(x), Cast<double>(x), 0, false,
                                         UnitRoundoff<T>());
  EXPECT_TRUE(AllNear(g.forward(x, options).output, DirectFormula(ToDouble(g), Cast<double>(x), Cast<double>(x),
                                                                  Cast<double>(x), hide),
                      bound.output));
}

// Float key padding and attention masks, which PyTorch 1.13 cannot combine, are added as
// PyTorch 2 adds them (checked against the direct formula); in GQA too.
TYPED_TEST(MhaTest, AdditiveMasksAddUp) {
  using T = TypeParam;
  qkv::MultiHeadAttentionConfig config;
  config.num_kv_heads = 1;
  config.kdim = 5;
  const Mha<T> g = RandomLayer<T>(8, 2, config, 41);
  qkv::NumpyRandom rng(42);
  const Tensor<T> query = rng.randn<T>({2, 3, 8}), key = rng.randn<T>({2, 4, 5}), value = rng.randn<T>({2, 4, 8});
  Tensor<T> padding = rng.uniform<T>(-1, 1, {2, 4}), attn = rng.uniform<T>(-2, 2, {4, 3, 4});
  padding(1, 2) = -std::numeric_limits<T>::infinity();
  attn(0, 1, 0) = -std::numeric_limits<T>::infinity();
  Tensor<double> hide(Shape{2, 2, 3, 4});
  for (Index b = 0; b < 2; ++b)
    for (Index h = 0; h < 2; ++h)
      for (Index i = 0; i < 3; ++i)
        for (Index j = 0; j < 4; ++j) hide(b, h, i, j) = double(padding(b, j)) + double(attn(b * 2 + h, i, j));
  Forward<T> options;
  options.key_padding_mask = padding;
  options.attn_mask = attn;
  const Bounds bound = ForwardErrorBound(ToDouble(g), Cast<double>(query), Cast<double>(key), Cast<double>(value), 3.0,
                                         false, UnitRoundoff<T>());
  const Tensor<double> expected = DirectFormula(ToDouble(g), Cast<double>(query), Cast<double>(key),
                                                Cast<double>(value), hide);
  EXPECT_TRUE(AllNear(g.forward(query, key, value, options).output, expected, bound.output));
  options.need_weights = true;
  EXPECT_TRUE(AllNear(g.forward(query, key, value, options).output, expected, bound.output));
}

// ---- decoding through a KVCache -------------------------------------------------------------

TYPED_TEST(MhaTest, ForwardCachedInChunksEqualsOneCausalForward) {
  using T = TypeParam;
  const qkv::RotaryEmbedding<T> rope(4);  // head_dim 4, half style
  for (const Index kv_heads : {4, 2, 1}) {
    for (const bool rotate : {true, false}) {
      SCOPED_TRACE("num_kv_heads " + std::to_string(kv_heads) + (rotate ? ", RoPE" : ", no RoPE"));
      qkv::MultiHeadAttentionConfig config;
      config.num_kv_heads = kv_heads;
      const Mha<T> m = RandomLayer<T>(16, 4, config, 51);
      qkv::NumpyRandom rng(52);
      const Tensor<T> x = rng.randn<T>({2, 7, 16});
      Forward<T> options;
      options.causal = Causal::upper_left;
      options.rope = rotate ? &rope : nullptr;
      const Tensor<T> full = m.forward(x, options).output;
      const double tolerance = TwoComputations(m, x, x, x, 0, rotate).output;

      const std::vector<std::vector<Index>> chunkings = {{1, 1, 1, 1, 1, 1, 1}, {3, 1, 2, 1}, {4, 1, 1, 1}, {7}};
      for (const std::vector<Index>& chunks : chunkings) {
        qkv::KVCache<T> cache = m.make_cache(2, 8);
        Index position = 0;
        for (Index n : chunks) {
          SCOPED_TRACE("tokens " + std::to_string(position) + " to " + std::to_string(position + n));
          const Tensor<T> out = m.forward_cached(x.narrow(1, position, n), cache, options.rope);
          EXPECT_TRUE(AllNear(out, Tensor<T>(full.narrow(1, position, n)), tolerance));
          position += n;
          EXPECT_EQ(cache.size(), position);
        }
      }
    }
  }
}

// A float layer with a 16-bit cache: every chunking of the same tokens rounds the same
// projected keys and values, so all of them agree with one pass through such a cache to
// float's bound; and the cache holds half the bytes of a float one.
template <class Storage>
void expect_half_cache_chunkings_agree() {
  const qkv::RotaryEmbedding<float> rope(4);
  qkv::MultiHeadAttentionConfig config;
  config.num_kv_heads = 2;
  const Mha<float> m = RandomLayer<float>(16, 4, config, 55);
  qkv::NumpyRandom rng(56);
  const Tensor<float> x = rng.randn<float>({2, 7, 16});
  auto once = m.make_cache<Storage>(2, 8);
  EXPECT_EQ(once.memory_bytes() * 2, m.make_cache(2, 8).memory_bytes());
  const Tensor<float> full = m.forward_cached(x, once, &rope);
  const double tolerance = TwoComputations(m, x, x, x, 0, true).output;
  for (const std::vector<Index>& chunks : std::vector<std::vector<Index>>{{1, 1, 1, 1, 1, 1, 1}, {3, 1, 2, 1}}) {
    auto cache = m.make_cache<Storage>(2, 8);
    Index position = 0;
    for (Index n : chunks) {
      const Tensor<float> out = m.forward_cached(x.narrow(1, position, n), cache, &rope);
      EXPECT_TRUE(AllNear(out, Tensor<float>(full.narrow(1, position, n)), tolerance)) << position;
      position += n;
    }
  }
  // And the 16-bit cache changes the result only by the rounding of the keys and values.
  Forward<float> options;
  options.causal = Causal::upper_left;
  options.rope = &rope;
  const Tensor<float> exact = m.forward(x, options).output;
  double diff = 0, scale = 0;
  for (Index i = 0; i < exact.numel(); ++i) {
    diff = std::max(diff, double(std::abs(full.data()[i] - exact.data()[i])));
    scale = std::max(scale, double(std::abs(exact.data()[i])));
  }
  EXPECT_GT(diff, 0.0);
  EXPECT_LT(diff, (std::is_same_v<Storage, qkv::bfloat16> ? 1.0 / 16 : 1.0 / 128) * scale);
}

TEST(MhaHalfCache, BFloat16CacheChunkingsAgree) { expect_half_cache_chunkings_agree<qkv::bfloat16>(); }
TEST(MhaHalfCache, HalfCacheChunkingsAgree) { expect_half_cache_chunkings_agree<qkv::half>(); }

// RoPE makes scores depend on positions only through their difference, so shifting queries
// and keys together (position_offset) leaves self-attention unchanged; rotating one
// without the other would not.
TYPED_TEST(MhaTest, RopePositionOffsetShiftsQueriesAndKeysTogether) {
  using T = TypeParam;
  const qkv::RotaryEmbedding<T> rope(4);
  qkv::MultiHeadAttentionConfig config;
  config.num_kv_heads = 2;
  const Mha<T> m = RandomLayer<T>(16, 4, config, 53);
  qkv::NumpyRandom rng(54);
  const Tensor<T> x = rng.randn<T>({2, 5, 16});
  Forward<T> options;
  options.rope = &rope;
  const Tensor<T> at_zero = m.forward(x, options).output;
  options.position_offset = 9;
  const Tensor<T> shifted = m.forward(x, options).output;
  EXPECT_TRUE(AllNear(shifted, at_zero, TwoComputations(m, x, x, x, 0, true).output));
  options.rope = nullptr;
  EXPECT_FALSE(AllNear(m.forward(x, options).output, at_zero, 1e-3)) << "RoPE changes the output";
}

TYPED_TEST(MhaTest, MakeCacheFitsTheLayer) {
  using T = TypeParam;
  qkv::MultiHeadAttentionConfig config;
  config.num_kv_heads = 2;
  const Mha<T> m(64, 8, config);
  const qkv::KVCache<T> cache = m.make_cache(3, 100);
  EXPECT_EQ(cache.batch(), 3);
  EXPECT_EQ(cache.num_kv_heads(), 2);
  EXPECT_EQ(cache.capacity(), 100);
  EXPECT_EQ(cache.head_dim(), 8);
  EXPECT_EQ(cache.value_dim(), 8);
  EXPECT_EQ(cache.size(), 0);
}

// ---- initialisation and weights ------------------------------------------------------------

TYPED_TEST(MhaTest, ConstructorZeroesAndResetParametersDrawsPyTorchsDistributions) {
  using T = TypeParam;
  const Mha<T> zero(8, 2);
  for (const Tensor<T>* w : {&zero.q_proj_weight(), &zero.k_proj_weight(), &zero.v_proj_weight(),
                             &zero.out_proj_weight(), &zero.q_proj_bias(), &zero.out_proj_bias()})
    for (T x : *w) EXPECT_EQ(x, T(0));
  EXPECT_EQ(zero.q_proj_bias().shape(), Shape{8});

  // kdim == vdim == embed_dim: one xavier draw over the packed (E + 2 kv_dim, E) in_proj
  // weight, then out_proj U(±1/sqrt(E)); biases zero.
  for (const Index kv_heads : {2, 1}) {
    qkv::MultiHeadAttentionConfig config;
    config.num_kv_heads = kv_heads;
    qkv::NumpyRandom rng(5), numpy(5);
    const Mha<T> m(8, 2, config, rng);
    const Index rows = 8 + 2 * 4 * kv_heads;
    const double xavier = std::sqrt(6.0 / double(rows + 8)), linear = 1 / std::sqrt(8.0);
    EXPECT_TRUE(qkv::equal(m.in_proj_weight(), numpy.uniform<T>(-xavier, xavier, {rows, 8})));
    EXPECT_TRUE(qkv::equal(m.out_proj_weight(), numpy.uniform<T>(-linear, linear, {8, 8})));
    EXPECT_EQ(rng.random_double(), numpy.random_double()) << "nothing else is drawn";
    EXPECT_TRUE(qkv::equal(m.in_proj_bias(), Tensor<T>::zeros({rows})));
    EXPECT_TRUE(qkv::equal(m.out_proj_bias(), Tensor<T>::zeros({8})));
    for (T x : m.in_proj_weight()) EXPECT_LE(std::abs(x), static_cast<T>(xavier));
  }

  // Otherwise q, k and v separately, each xavier over its own fan_in + fan_out.
  qkv::MultiHeadAttentionConfig config;
  config.kdim = 5, config.vdim = 3, config.bias = false;
  qkv::NumpyRandom rng(6), numpy(6);
  const Mha<T> m(8, 2, config, rng);
  const auto xavier = [&](Index rows, Index cols) {
    const double bound = std::sqrt(6.0 / double(rows + cols));
    return numpy.uniform<T>(-bound, bound, {rows, cols});
  };
  EXPECT_TRUE(qkv::equal(m.q_proj_weight(), xavier(8, 8)));
  EXPECT_TRUE(qkv::equal(m.k_proj_weight(), xavier(8, 5)));
  EXPECT_TRUE(qkv::equal(m.v_proj_weight(), xavier(8, 3)));
  EXPECT_TRUE(qkv::equal(m.out_proj_weight(), numpy.uniform<T>(-1 / std::sqrt(8.0), 1 / std::sqrt(8.0), {8, 8})));
  EXPECT_TRUE(m.q_proj_bias().empty());
  EXPECT_TRUE(m.in_proj_bias().empty());
}

TYPED_TEST(MhaTest, PackedInProjSplitsIntoQKVRows) {
  using T = TypeParam;
  qkv::MultiHeadAttentionConfig config;
  config.num_kv_heads = 1;  // rows: q 8, k 4, v 4
  Mha<T> m(8, 2, config);
  qkv::NumpyRandom rng(7);
  const Tensor<T> weight = rng.randn<T>({16, 8}), bias = rng.randn<T>({16});
  m.set_in_proj(weight, bias);
  EXPECT_TRUE(qkv::equal(m.q_proj_weight(), weight.slice(0, 8)));
  EXPECT_TRUE(qkv::equal(m.k_proj_weight(), weight.slice(8, 12)));
  EXPECT_TRUE(qkv::equal(m.v_proj_weight(), weight.slice(12, 16)));
  EXPECT_TRUE(qkv::equal(m.v_proj_bias(), bias.slice(12, 16)));
  EXPECT_TRUE(qkv::equal(m.in_proj_weight(), weight));
  EXPECT_TRUE(qkv::equal(m.in_proj_bias(), bias));
  EXPECT_EQ(m.head_dim(), 4);
  EXPECT_EQ(m.kv_dim(), 4);
}

// ---- layouts and sizes ---------------------------------------------------------------------

TYPED_TEST(MhaTest, StridedInputsEqualContiguousOnes) {
  using T = TypeParam;
  const Mha<T> m = RandomLayer<T>(8, 2, {}, 61);
  qkv::NumpyRandom rng(62);
  // PyTorch's default batch_first=False layout (L, batch, E), seen as (batch, L, E).
  const Tensor<T> sequence_first = rng.randn<T>({3, 2, 8});
  const auto x = sequence_first.view().transpose(0, 1);
  const auto strided = m.forward(x).output, contiguous = m.forward(Tensor<T>(x)).output;
  EXPECT_TRUE(qkv::equal(strided, contiguous));
  // Every other feature of a wider buffer.
  const Tensor<T> wide = rng.randn<T>({2, 3, 16});
  const qkv::TensorView<const T> every_other(wide.data(), Shape{2, 3, 8}, qkv::Strides{48, 16, 2});
  EXPECT_TRUE(qkv::equal(m.forward(every_other).output, m.forward(Tensor<T>(every_other)).output));
}

TYPED_TEST(MhaTest, EmptySequences) {
  using T = TypeParam;
  const Mha<T> m = RandomLayer<T>(8, 2, {}, 71);
  qkv::NumpyRandom rng(72);
  const Tensor<T> x = rng.randn<T>({2, 3, 8});
  EXPECT_EQ(m.forward(Tensor<T>(Shape{2, 0, 8})).output.shape(), (Shape{2, 0, 8}));
  // No keys: zero attention, so every output row is out_proj's bias.
  const auto r = m.forward(x, Tensor<T>(Shape{2, 0, 8}), Tensor<T>(Shape{2, 0, 8}));
  for (Index i = 0; i < r.output.numel(); ++i) EXPECT_EQ(r.output.data()[i], m.out_proj_bias().data()[i % 8]);
  qkv::KVCache<T> cache = m.make_cache(2, 4);
  EXPECT_EQ(m.forward_cached(Tensor<T>(Shape{2, 0, 8}), cache).shape(), (Shape{2, 0, 8}));
  EXPECT_EQ(cache.size(), 0);
}

// ---- errors --------------------------------------------------------------------------------

template <class F>
void ExpectInvalidArgument(F&& f, std::initializer_list<std::string> parts) {
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(f, parts));
}

TEST(MhaErrors, Construction) {
  ExpectInvalidArgument([] { Mha<float>(10, 3); },
                        {"qkv::MultiHeadAttention: embed_dim 10 is not divisible by num_heads 3"});
  qkv::MultiHeadAttentionConfig config;
  config.num_kv_heads = 3;
  ExpectInvalidArgument([&] { Mha<float>(12, 4, config); },
                        {"qkv::MultiHeadAttention: num_heads 4 is not divisible by num_kv_heads 3"});
  ExpectInvalidArgument([] { Mha<float>(0, 2); },
                        {"qkv::MultiHeadAttention: embed_dim 0 and num_heads 2 must be positive"});
  ExpectInvalidArgument([] { Mha<double>(8, -2); },
                        {"qkv::MultiHeadAttention: embed_dim 8 and num_heads -2 must be positive"});
  config.num_kv_heads = 0;
  config.kdim = -1;
  ExpectInvalidArgument([&] { Mha<float>(8, 2, config); },
                        {"qkv::MultiHeadAttention: kdim -1, vdim 0 and num_kv_heads 0 must not be negative"});
}

TEST(MhaErrors, InProjShapes) {
  Mha<float> m(8, 2);
  const auto zeros = [](Shape s) { return Tensor<float>::zeros(s); };
  ExpectInvalidArgument([&] { m.set_in_proj(zeros({8, 24}), zeros({24})); },
                        {"qkv::MultiHeadAttention::set_in_proj: weight of shape [8,24], expected [24,8] "
                         "(embed_dim + 2 * num_kv_heads * head_dim, embed_dim)"});
  ExpectInvalidArgument([&] { m.set_in_proj(zeros({24, 8}), zeros({23})); },
                        {"qkv::MultiHeadAttention::set_in_proj: bias of shape [23], expected [24]"});
  ExpectInvalidArgument([&] { m.set_in_proj(zeros({24, 8}), zeros({24, 1})); },
                        {"qkv::MultiHeadAttention::set_in_proj: bias of shape [24,1], expected [24]"});
  ExpectInvalidArgument([&] { m.set_in_proj(zeros({24, 8})); },
                        {"qkv::MultiHeadAttention::set_in_proj: missing bias of shape [24] (the layer has "
                         "config.bias = true)"});
  qkv::MultiHeadAttentionConfig config;
  config.bias = false;
  Mha<float> unbiased(8, 2, config);
  ExpectInvalidArgument([&] { unbiased.set_in_proj(zeros({24, 8}), zeros({24})); },
                        {"qkv::MultiHeadAttention::set_in_proj: bias of shape [24] given to a layer without bias"});
  config.bias = true;
  config.kdim = 5;
  Mha<float> separate(8, 2, config);
  ExpectInvalidArgument([&] { separate.set_in_proj(zeros({24, 8}), zeros({24})); },
                        {"qkv::MultiHeadAttention::set_in_proj: needs kdim == vdim == embed_dim, got kdim 5, "
                         "vdim 8, embed_dim 8; use set_q_proj, set_k_proj and set_v_proj"});
  ExpectInvalidArgument([&] { separate.in_proj_weight(); },
                        {"qkv::MultiHeadAttention::in_proj_weight: no packed in_proj with kdim 5, vdim 8"});
  ExpectInvalidArgument([&] { separate.in_proj_bias(); },
                        {"qkv::MultiHeadAttention::in_proj_bias: no packed in_proj with kdim 5, vdim 8"});
  // Nothing changed on failure.
  for (float x : m.q_proj_weight()) EXPECT_EQ(x, 0.0f);
}

TEST(MhaErrors, SeparateProjectionShapes) {
  qkv::MultiHeadAttentionConfig config;
  config.kdim = 5, config.vdim = 3, config.num_kv_heads = 1;  // k/v rows: 1 * head_dim 4
  Mha<double> m(8, 2, config);
  const auto zeros = [](Shape s) { return Tensor<double>::zeros(s); };
  ExpectInvalidArgument([&] { m.set_q_proj(zeros({8, 5}), zeros({8})); },
                        {"qkv::MultiHeadAttention::set_q_proj: weight of shape [8,5], expected [8,8] (embed_dim, "
                         "embed_dim)"});
  ExpectInvalidArgument([&] { m.set_q_proj(zeros({8, 8}), zeros({4})); },
                        {"qkv::MultiHeadAttention::set_q_proj: bias of shape [4], expected [8]"});
  ExpectInvalidArgument([&] { m.set_k_proj(zeros({8, 5}), zeros({4})); },
                        {"qkv::MultiHeadAttention::set_k_proj: weight of shape [8,5], expected [4,5] "
                         "(num_kv_heads * head_dim, kdim)"});
  ExpectInvalidArgument([&] { m.set_k_proj(zeros({4, 5}), zeros({8})); },
                        {"qkv::MultiHeadAttention::set_k_proj: bias of shape [8], expected [4]"});
  ExpectInvalidArgument([&] { m.set_v_proj(zeros({4, 5}), zeros({4})); },
                        {"qkv::MultiHeadAttention::set_v_proj: weight of shape [4,5], expected [4,3] "
                         "(num_kv_heads * head_dim, vdim)"});
  ExpectInvalidArgument([&] { m.set_v_proj(zeros({4, 3})); },
                        {"qkv::MultiHeadAttention::set_v_proj: missing bias of shape [4]"});
  ExpectInvalidArgument([&] { m.set_out_proj(zeros({8, 4}), zeros({8})); },
                        {"qkv::MultiHeadAttention::set_out_proj: weight of shape [8,4], expected [8,8] (embed_dim, "
                         "embed_dim)"});
  ExpectInvalidArgument([&] { m.set_out_proj(zeros({8, 8}), zeros({})); },
                        {"qkv::MultiHeadAttention::set_out_proj: bias of shape [], expected [8]"});
  config.bias = false;
  Mha<double> unbiased(8, 2, config);
  ExpectInvalidArgument([&] { unbiased.set_k_proj(zeros({4, 5}), zeros({4})); },
                        {"qkv::MultiHeadAttention::set_k_proj: bias of shape [4] given to a layer without bias "
                         "(config.bias = false)"});
  ExpectInvalidArgument([&] { unbiased.set_out_proj(zeros({8, 8}), zeros({8})); },
                        {"qkv::MultiHeadAttention::set_out_proj: bias of shape [8] given to a layer without bias"});
}

TEST(MhaErrors, InputShapes) {
  qkv::MultiHeadAttentionConfig config;
  config.kdim = 6;
  const Mha<float> m(8, 2, config);
  const auto zeros = [](Shape s) { return Tensor<float>::zeros(s); };
  const std::string fn = "qkv::MultiHeadAttention::forward: ";
  ExpectInvalidArgument([&] { m.forward(zeros({8}), zeros({6}), zeros({8})); },
                        {fn + "query of shape [8], expected (batch, L, embed_dim 8) or unbatched (L, 8)"});
  ExpectInvalidArgument([&] { m.forward(zeros({2, 3, 7}), zeros({2, 4, 6}), zeros({2, 4, 8})); },
                        {fn + "query of shape [2,3,7], expected (batch, L, embed_dim 8)"});
  ExpectInvalidArgument([&] { m.forward(zeros({1, 2, 3, 8}), zeros({2, 4, 6}), zeros({2, 4, 8})); },
                        {fn + "query of shape [1,2,3,8]"});
  ExpectInvalidArgument([&] { m.forward(zeros({2, 3, 8}), zeros({2, 4, 8}), zeros({2, 4, 8})); },
                        {fn + "key of shape [2,4,8], expected (batch 2, S, kdim 6) for query [2,3,8]"});
  ExpectInvalidArgument([&] { m.forward(zeros({2, 3, 8}), zeros({3, 4, 6}), zeros({3, 4, 8})); },
                        {fn + "key of shape [3,4,6], expected (batch 2, S, kdim 6) for query [2,3,8]"});
  ExpectInvalidArgument([&] { m.forward(zeros({2, 3, 8}), zeros({4, 6}), zeros({4, 8})); },
                        {fn + "key of shape [4,6], expected (batch 2, S, kdim 6)"});
  ExpectInvalidArgument([&] { m.forward(zeros({3, 8}), zeros({4, 6}), zeros({5, 8})); },
                        {fn + "value of shape [5,8], expected (S 4, vdim 8) for key [4,6]"});
  ExpectInvalidArgument([&] { m.forward(zeros({2, 3, 8}), zeros({2, 4, 6}), zeros({2, 4, 6})); },
                        {fn + "value of shape [2,4,6], expected (batch 2, S 4, vdim 8) for key [2,4,6]"});
  // Self-attention needs kdim == vdim == embed_dim.
  ExpectInvalidArgument([&] { m.forward(zeros({2, 3, 8})); }, {fn + "key of shape [2,3,8], expected"});
  const qkv::RotaryEmbedding<float> rope(8);
  Forward<float> options;
  options.rope = &rope;
  ExpectInvalidArgument([&] { m.forward(zeros({2, 3, 8}), zeros({2, 4, 6}), zeros({2, 4, 8}), options); },
                        {fn + "rope of head_dim 8 for heads of head_dim 4"});
}

TEST(MhaErrors, MaskShapes) {
  const Mha<float> m(8, 2);
  const auto x = Tensor<float>::zeros({2, 3, 8}), kv = Tensor<float>::zeros({2, 4, 8});
  const std::string fn = "qkv::MultiHeadAttention::forward: ";
  const auto padding = Tensor<bool>::full({2, 5}, false);
  Forward<float> options;
  options.key_padding_mask = padding;
  ExpectInvalidArgument([&] { m.forward(x, kv, kv, options); },
                        {fn + "key_padding_mask of shape [2,5], expected [2,4] (batch, S)"});
  const auto padding_1x4 = Tensor<float>::zeros({1, 4});
  options.key_padding_mask = padding_1x4;
  ExpectInvalidArgument([&] { m.forward(x[0], kv[0], kv[0], options); },
                        {fn + "key_padding_mask of shape [1,4], expected [4] (S)"});

  Forward<float> with_mask;
  const auto square = Tensor<bool>::full({3, 3}, false);
  with_mask.attn_mask = square;
  ExpectInvalidArgument([&] { m.forward(x, kv, kv, with_mask); },
                        {fn + "attn_mask of shape [3,3], expected [3,4] (L, S) or [4,3,4] (batch * num_heads, L, S)"});
  const auto per_batch = Tensor<float>::zeros({2, 3, 4});
  with_mask.attn_mask = per_batch;
  ExpectInvalidArgument([&] { m.forward(x, kv, kv, with_mask); },
                        {fn + "attn_mask of shape [2,3,4], expected [3,4] (L, S) or [4,3,4]"});
  const auto three_heads = Tensor<float>::zeros({3, 3, 4});
  with_mask.attn_mask = three_heads;
  ExpectInvalidArgument([&] { m.forward(x[0], kv[0], kv[0], with_mask); },
                        {fn + "attn_mask of shape [3,3,4], expected [3,4] (L, S) or [2,3,4] (num_heads, L, S)"});
}

TEST(MhaErrors, CacheShapes) {
  qkv::MultiHeadAttentionConfig config;
  config.num_kv_heads = 1;
  const Mha<float> m(8, 2, config);  // head_dim 4
  const std::string fn = "qkv::MultiHeadAttention::forward_cached: ";
  qkv::KVCache<float> cache = m.make_cache(2, 3);
  ExpectInvalidArgument([&] { m.forward_cached(Tensor<float>::zeros({2, 8}), cache); },
                        {fn + "input of shape [2,8], expected (batch, n, embed_dim 8)"});
  ExpectInvalidArgument([&] { m.forward_cached(Tensor<float>::zeros({2, 1, 6}), cache); },
                        {fn + "input of shape [2,1,6]"});
  ExpectInvalidArgument([&] { m.forward_cached(Tensor<float>::zeros({1, 1, 8}), cache); },
                        {fn + "cache (batch 2, num_kv_heads 1, head_dim 4, value_dim 4) does not fit the layer "
                              "and input [1,1,8], expected (batch 1, num_kv_heads 1, head_dim 4, value_dim 4)"});
  qkv::KVCache<float> two_heads(2, 2, 3, 4, 4), wide(2, 1, 3, 8, 8), narrow_values(2, 1, 3, 4, 2);
  ExpectInvalidArgument([&] { m.forward_cached(Tensor<float>::zeros({2, 1, 8}), two_heads); },
                        {fn + "cache (batch 2, num_kv_heads 2, head_dim 4, value_dim 4) does not fit"});
  ExpectInvalidArgument([&] { m.forward_cached(Tensor<float>::zeros({2, 1, 8}), wide); },
                        {fn + "cache (batch 2, num_kv_heads 1, head_dim 8, value_dim 8) does not fit"});
  ExpectInvalidArgument([&] { m.forward_cached(Tensor<float>::zeros({2, 1, 8}), narrow_values); },
                        {fn + "cache (batch 2, num_kv_heads 1, head_dim 4, value_dim 2) does not fit"});

  const qkv::RotaryEmbedding<float> rope(2);
  ExpectInvalidArgument([&] { m.forward_cached(Tensor<float>::zeros({2, 1, 8}), cache, &rope); },
                        {fn + "rope of head_dim 2 for heads of head_dim 4"});
  EXPECT_EQ(cache.size(), 0);

  m.forward_cached(Tensor<float>::zeros({2, 2, 8}), cache);
  EXPECT_TRUE(ThrowsWith<std::out_of_range>([&] { m.forward_cached(Tensor<float>::zeros({2, 2, 8}), cache); },
                                            {fn + "2 new tokens do not fit the cache: 2 of 3 positions used"}));
  EXPECT_EQ(cache.size(), 2);  // unchanged
  m.forward_cached(Tensor<float>::zeros({2, 1, 8}), cache);
  EXPECT_TRUE(ThrowsWith<std::out_of_range>([&] { m.forward_cached(Tensor<float>::zeros({2, 1, 8}), cache); },
                                            {fn + "1 new tokens do not fit the cache: 3 of 3 positions used"}));
}

// ---- backward: every gradient against finite differences in double --------------------

struct MhaParams {
  Tensor<double> q_w, k_w, v_w, out_w, q_b, k_b, v_b, out_b;
};

Mha<double> BuildLayer(Index embed_dim, Index heads, const qkv::MultiHeadAttentionConfig& config, const MhaParams& p) {
  Mha<double> m(embed_dim, heads, config);
  if (config.bias) {
    m.set_q_proj(p.q_w, p.q_b.view()), m.set_k_proj(p.k_w, p.k_b.view()), m.set_v_proj(p.v_w, p.v_b.view());
    m.set_out_proj(p.out_w, p.out_b.view());
  } else {
    m.set_q_proj(p.q_w), m.set_k_proj(p.k_w), m.set_v_proj(p.v_w), m.set_out_proj(p.out_w);
  }
  return m;
}

// Central differences of loss() in each element of x against `grad`; returns how many
// elements were checked.
template <class Loss>
int ExpectGradientMatches(const char* what, Tensor<double>& x, const Tensor<double>& grad, Loss&& loss) {
  EXPECT_EQ(x.shape(), grad.shape()) << what;
  double scale = 1;
  for (const double g : grad) scale = std::max(scale, std::abs(g));
  int checked = 0;
  for (Index i = 0; i < x.numel(); ++i, ++checked) {
    const double saved = x.data()[i], h = 1e-5;
    x.data()[i] = saved + h;
    const double up = loss();
    x.data()[i] = saved - h;
    const double down = loss();
    x.data()[i] = saved;
    // Truncation ~h², rounding ~1e-16/h: both far below 1e-8 of gradients of order 1.
    EXPECT_NEAR(grad.data()[i], (up - down) / (2 * h), 1e-8 * scale) << what << "[" << i << "]";
  }
  return checked;
}

struct BackwardSpec {
  const char* name;
  Index embed_dim, heads, batch, query_len, key_len;
  qkv::MultiHeadAttentionConfig config;
  bool self_attention;
  Causal causal;
  int mask;  // 0 none, 1 boolean key padding, 2 additive attn_mask (L, S)
  int rope = 0;  // 0 none, 1 rotate_half, 2 interleaved (queries and keys from position 3)
};

TEST(MultiHeadAttentionBackward, FiniteDifferencesOfEveryGradient) {
  const BackwardSpec specs[] = {
      {"self-attention, causal, key padding", 8, 2, 2, 4, 4, {}, true, Causal::upper_left, 1},
      {"cross, kdim/vdim, grouped heads, additive mask", 8, 4, 2, 3, 5, {5, 7, true, 2}, false, Causal::none, 2},
      {"unbatched, no bias, lower right", 6, 2, 0, 3, 4, {0, 0, false, 0}, false, Causal::lower_right, 0},
      {"self-attention, causal, rotary (rotate_half)", 8, 2, 2, 4, 4, {}, true, Causal::upper_left, 0, 1},
      {"cross, grouped heads, rotary (interleaved), additive mask", 8, 4, 2, 3, 5, {0, 0, true, 2}, false,
       Causal::none, 2, 2},
  };
  for (const BackwardSpec& spec : specs) {
    qkv::NumpyRandom rng(7);
    const Index E = spec.embed_dim, kv = spec.config.num_kv_heads ? spec.config.num_kv_heads * (E / spec.heads) : E;
    const Index kdim = spec.config.kdim ? spec.config.kdim : E, vdim = spec.config.vdim ? spec.config.vdim : E;
    MhaParams p{rng.randn<double>({E, E}), rng.randn<double>({kv, kdim}), rng.randn<double>({kv, vdim}),
                rng.randn<double>({E, E}),  rng.randn<double>({E}),       rng.randn<double>({kv}),
                rng.randn<double>({kv}),    rng.randn<double>({E})};
    for (Tensor<double>* w : {&p.q_w, &p.k_w, &p.v_w, &p.out_w}) *w = *w * 0.3;
    const auto lead = [&](Index rows, Index cols) { return spec.batch > 0 ? Shape{spec.batch, rows, cols} : Shape{rows, cols}; };
    Tensor<double> query = rng.randn<double>(lead(spec.query_len, E));
    Tensor<double> key = rng.randn<double>(lead(spec.key_len, kdim)), value = rng.randn<double>(lead(spec.key_len, vdim));
    const Tensor<double> grad_output = rng.randn<double>(lead(spec.query_len, E));
    Forward<double> options;
    options.causal = spec.causal;
    Tensor<bool> padding(Shape{spec.batch, spec.key_len});
    if (spec.mask == 1) {
      padding(Index(1), spec.key_len - 1) = true;
      options.key_padding_mask = padding;
    }
    Tensor<double> additive = rng.randn<double>({spec.query_len, spec.key_len});
    if (spec.mask == 2) options.attn_mask = additive;
    std::optional<qkv::RotaryEmbedding<double>> rope;
    if (spec.rope) {
      rope.emplace(E / spec.heads, 10000.0, spec.rope == 2 ? qkv::RopeStyle::interleaved : qkv::RopeStyle::rotate_half);
      options.rope = &*rope, options.position_offset = 3;
    }

    const auto loss = [&] {
      const Mha<double> m = BuildLayer(E, spec.heads, spec.config, p);
      const auto out = spec.self_attention ? m.forward(query, options) : m.forward(query, key, value, options);
      double sum = 0;
      for (Index i = 0; i < out.output.numel(); ++i) sum += out.output.data()[i] * grad_output.data()[i];
      return sum;
    };
    const Mha<double> m = BuildLayer(E, spec.heads, spec.config, p);
    const auto trained = spec.self_attention ? m.forward_for_backward(query, options)
                                             : m.forward_for_backward(query, key, value, options);
    EXPECT_TRUE(AllNear(trained.output, m.forward(query, spec.self_attention ? query : key,
                                                  spec.self_attention ? query : value, options).output, 1e-14))
        << spec.name;
    const auto g = m.backward(trained.saved, grad_output);
    SCOPED_TRACE(spec.name);
    int checked = 0;
    if (spec.self_attention) {
      checked += ExpectGradientMatches("x", query, g.grad_query + g.grad_key + g.grad_value, loss);
    } else {
      checked += ExpectGradientMatches("query", query, g.grad_query, loss);
      checked += ExpectGradientMatches("key", key, g.grad_key, loss);
      checked += ExpectGradientMatches("value", value, g.grad_value, loss);
    }
    checked += ExpectGradientMatches("q_proj_weight", p.q_w, g.grad_q_proj_weight, loss);
    checked += ExpectGradientMatches("k_proj_weight", p.k_w, g.grad_k_proj_weight, loss);
    checked += ExpectGradientMatches("v_proj_weight", p.v_w, g.grad_v_proj_weight, loss);
    checked += ExpectGradientMatches("out_proj.weight", p.out_w, g.grad_out_proj_weight, loss);
    if (spec.config.bias) {
      checked += ExpectGradientMatches("q bias", p.q_b, g.grad_q_proj_bias, loss);
      checked += ExpectGradientMatches("k bias", p.k_b, g.grad_k_proj_bias, loss);
      checked += ExpectGradientMatches("v bias", p.v_b, g.grad_v_proj_bias, loss);
      checked += ExpectGradientMatches("out_proj.bias", p.out_b, g.grad_out_proj_bias, loss);
    } else {
      EXPECT_TRUE(g.grad_q_proj_bias.empty() && g.grad_out_proj_bias.empty());
    }
    EXPECT_GT(checked, 100);
  }
}

TEST(MultiHeadAttentionBackward, PackedInProjGradientsAndErrors) {
  qkv::NumpyRandom rng(3);
  const Mha<float> m(8, 2, {}, rng);
  const auto x = rng.randn<float>({2, 3, 8});
  const auto trained = m.forward_for_backward(x);
  const auto g = m.backward(trained.saved, Tensor<float>::ones({2, 3, 8}));
  const auto packed = g.grad_in_proj_weight();
  ASSERT_EQ(packed.shape(), (Shape{24, 8}));
  EXPECT_EQ(packed(Index(8), Index(3)), g.grad_k_proj_weight(Index(0), Index(3)));
  EXPECT_EQ(g.grad_in_proj_bias().shape(), (Shape{24}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(
      [&] { m.backward(trained.saved, Tensor<float>::ones({2, 4, 8})); },
      {"qkv::MultiHeadAttention::backward: grad_output of shape [2,4,8], expected the output's [2,3,8]"}));
  const qkv::RotaryEmbedding<float> rope(8);
  Forward<float> options;
  options.rope = &rope;
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(
      [&] { m.forward_for_backward(x, options); },
      {"qkv::MultiHeadAttention::forward_for_backward: rope of head_dim 8 for heads of head_dim 4"}));
}

}  // namespace
