// SPDX-License-Identifier: MIT
// scaled_dot_product_attention on 16-bit inputs: all-bfloat16 and all-half calls, and
// float queries against bfloat16 or half keys and values, through each implementation,
// against a long-double reference computed on the same (already rounded) values.
#include <qkv/attention.hpp>
#include <qkv/parallel.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>

#include "reference.hpp"
#include "test_util.hpp"

namespace {

using qkv::AttentionOptions;
using qkv::bfloat16;
using qkv::Causal;
using qkv::half;
using qkv::Index;
using qkv::Shape;
using qkv::Tensor;
using qkv::test::Path;
using qkv::test::random_tensor;
using qkv::test::reference_attention;

template <class Q, class KV, Path P>
struct Case {
  using Query = Q;
  using KeyValue = KV;
  static constexpr Path path = P;
};

template <class T>
std::string name_of() {
  return qkv::detail::type_name<T>();
}

struct CaseNames {
  template <class C>
  static std::string GetName(int) {
    const char* path = C::path == Path::naive           ? "naive"
                       : C::path == Path::fused         ? "fused"
                       : C::path == Path::fused_widened ? "fused_widened"
                                                        : "decode";
    return name_of<typename C::Query>() + "_" + name_of<typename C::KeyValue>() + "_" + path;
  }
};

using HalfCases =
    ::testing::Types<Case<bfloat16, bfloat16, Path::naive>, Case<bfloat16, bfloat16, Path::fused>,
                     Case<bfloat16, bfloat16, Path::decode>, Case<bfloat16, bfloat16, Path::fused_widened>,
                     Case<half, half, Path::naive>,
                     Case<half, half, Path::fused>, Case<half, half, Path::decode>, Case<float, bfloat16, Path::naive>,
                     Case<float, bfloat16, Path::fused>, Case<float, bfloat16, Path::decode>,
                     Case<float, half, Path::naive>, Case<float, half, Path::fused>, Case<float, half, Path::decode>>;

// Unit roundoff of the type the output and P are rounded to (none for float queries).
template <class Q>
constexpr double unit_roundoff() {
  if constexpr (std::is_same_v<Q, bfloat16>) return 1.0 / 256;   // 2^-8
  else if constexpr (std::is_same_v<Q, half>) return 1.0 / 2048;  // 2^-11
  else return 0;
}

// Spacing of Q's subnormals, where rounding errs by up to half of it whatever the value
// (half's start below 6.1e-5; bfloat16's and float's are far below anything here).
template <class Q>
constexpr double subnormal_spacing() {
  return std::is_same_v<Q, half> ? 1.0 / (1 << 24) : 0.0;
}

template <class T>
Tensor<double> wide(const Tensor<T>& t) {
  return qkv::to<double>(t);
}

Tensor<double> absolute(Tensor<double> t) {
  for (double& x : t) x = std::abs(x);
  return t;
}

// One random call with every option: its inputs are drawn in double, then rounded to Q
// (queries, additive mask) and KV (keys, values); the reference reads the rounded values.
template <class Q, class KV>
struct HalfCase {
  Tensor<Q> q;
  Tensor<KV> k, v;
  Tensor<bool> bool_mask;
  Tensor<Q> additive_mask;
  AttentionOptions<Q> options;
  AttentionOptions<double> wide_options;
  Tensor<double> wide_mask;
  std::string description;

  HalfCase(std::mt19937& gen, int trial) {
    auto pick = [&](std::initializer_list<Index> values) {
      return values.begin()[std::uniform_int_distribution<std::size_t>(0, values.size() - 1)(gen)];
    };
    const Index H = pick({1, 2, 4}), L = pick({0, 1, 2, 5, 17, 40}), S = pick({0, 1, 3, 8, 17, 41});
    const Index E = pick({1, 3, 8, 16, 13}), Ev = pick({1, 4, 7, 16});
    options.enable_gqa = H % 2 == 0 && trial % 3 == 0;
    const Index kv_heads = options.enable_gqa ? H / pick({1, 2}) : H;
    const double magnitude = trial % 7 == 3 ? 12.0 : 1.0;  // large logits
    q = qkv::to<Q>(random_tensor<double>({2, H, L, E}, gen, -magnitude, magnitude));
    k = qkv::to<KV>(random_tensor<double>({2, kv_heads, S, E}, gen));
    v = qkv::to<KV>(random_tensor<double>({2, kv_heads, S, Ev}, gen));
    options.causal = static_cast<Causal>(pick({0, 1, 2}));
    if (trial % 4 == 1) options.scale = std::uniform_real_distribution<double>(-2.0, 2.0)(gen);
    const int mask_kind = static_cast<int>(pick({0, 1, 2}));
    const Shape mask_shape = trial % 2 ? Shape{pick({1, L}), S} : Shape{pick({1, H}), pick({1, L}), S};
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    if (mask_kind == 1) {
      bool_mask = Tensor<bool>(mask_shape);
      for (Index i = 0; i < bool_mask.numel(); ++i) bool_mask.data()[i] = !(trial % 8 == 0 && i < S) && unit(gen) > 0.3;
      options.attn_mask = bool_mask;
    } else if (mask_kind == 2) {
      Tensor<double> mask = random_tensor<double>(mask_shape, gen, -3.0, 3.0);
      for (double& x : mask)
        if (unit(gen) < 0.2) x = -std::numeric_limits<double>::infinity();
      additive_mask = qkv::to<Q>(mask);
      options.attn_mask = additive_mask;
      wide_mask = wide(additive_mask);
    }
    wide_options.causal = options.causal;
    wide_options.scale = options.scale;
    wide_options.enable_gqa = options.enable_gqa;
    if (mask_kind == 1) wide_options.attn_mask = bool_mask;
    if (mask_kind == 2) wide_options.attn_mask = wide_mask;
    std::ostringstream s;
    s << "trial " << trial << ": q " << q.shape().str() << " k " << k.shape().str() << " v " << v.shape().str()
      << " causal " << static_cast<int>(options.causal) << " mask kind " << mask_kind << " gqa "
      << options.enable_gqa;
    description = s.str();
  }

  Index keys() const { return k.size(-2); }
  double max_value() const {
    double m = 0;
    for (KV x : v) m = std::max(m, std::abs(static_cast<double>(static_cast<float>(x))));
    return m;
  }

  double logit_bound() const {
    const double scale = options.scale ? std::abs(*options.scale) : 1.0 / std::sqrt(double(std::max<Index>(1, q.size(-1))));
    double max_q = 0, max_k = 0;
    for (Q x : q) max_q = std::max(max_q, std::abs(static_cast<double>(static_cast<float>(x))));
    for (KV x : k) max_k = std::max(max_k, std::abs(static_cast<double>(static_cast<float>(x))));
    return std::max(1.0, scale * double(q.size(-1)) * max_q * max_k);
  }
};

// Per element: |out − ref| ≤ u·|ref| (the output's rounding) + u·Σ w|v| (each weight
// rounded for the product with V) + the float kernel's own bound, 1e-5 of Σ w|v| times
// the logits' magnification; plus, in half, half a subnormal spacing for the output and
// for each of the S weights (at most max|v| each: the kernel's weights are ≥ 1 in sum).
template <class Q>
::testing::AssertionResult WithinHalfBound(const Tensor<Q>& out, const Tensor<double>& ref,
                                           const Tensor<double>& ref_abs, double logit_bound, Index keys = 0,
                                           double max_value = 0) {
  if (out.shape() != ref.shape()) return ::testing::AssertionFailure() << "shape " << out.shape().str();
  constexpr double u = unit_roundoff<Q>();
  const double subnormal = subnormal_spacing<Q>() / 2 * (1 + double(keys) * max_value);
  for (Index i = 0; i < out.numel(); ++i) {
    const double got = static_cast<double>(static_cast<float>(out.data()[i]));
    const double bound = u * std::abs(ref.data()[i]) + (u + 1e-5 * logit_bound) * ref_abs.data()[i] + subnormal;
    if (!(std::abs(got - ref.data()[i]) <= bound))
      return ::testing::AssertionFailure() << "element " << i << ": " << got << " vs " << ref.data()[i] << ", bound "
                                           << bound;
  }
  return ::testing::AssertionSuccess();
}

template <class C>
class HalfAttention : public ::testing::Test {
 protected:
  ~HalfAttention() override { qkv::set_num_threads(0); }

 private:
  qkv::test::ForcePath path_{C::path};
};
TYPED_TEST_SUITE(HalfAttention, HalfCases, CaseNames);

TYPED_TEST(HalfAttention, RandomCasesMatchReferenceOnTheRoundedValues) {
  using Q = typename TypeParam::Query;
  using KV = typename TypeParam::KeyValue;
  std::mt19937 gen(2025);
  for (int trial = 0; trial < 300; ++trial) {
    HalfCase<Q, KV> c(gen, trial);
    SCOPED_TRACE(c.description);
    const Tensor<Q> out = qkv::scaled_dot_product_attention(c.q, c.k, c.v, c.options);
    const Tensor<double> ref = reference_attention<double>(wide(c.q), wide(c.k), wide(c.v), c.wide_options);
    const Tensor<double> ref_abs =
        reference_attention<double>(wide(c.q), wide(c.k), absolute(wide(c.v)), c.wide_options);
    EXPECT_TRUE(WithinHalfBound(out, ref, ref_abs, c.logit_bound(), c.keys(), c.max_value()));
  }
}

TYPED_TEST(HalfAttention, WeightsMatchReferenceRoundedToTheQueryType) {
  using Q = typename TypeParam::Query;
  using KV = typename TypeParam::KeyValue;
  std::mt19937 gen(17);
  for (int trial = 0; trial < 60; ++trial) {
    HalfCase<Q, KV> c(gen, trial);
    SCOPED_TRACE(c.description);
    const auto result = qkv::scaled_dot_product_attention_with_weights(c.q, c.k, c.v, c.options);
    Tensor<double> ref_weights;
    const Tensor<double> ref = reference_attention<double>(wide(c.q), wide(c.k), wide(c.v), c.wide_options, &ref_weights);
    const Tensor<double> ref_abs =
        reference_attention<double>(wide(c.q), wide(c.k), absolute(wide(c.v)), c.wide_options);
    EXPECT_TRUE(WithinHalfBound(result.output, ref, ref_abs, c.logit_bound(), c.keys(), c.max_value()));
    // Each weight is the reference's, rounded once to Q: within a unit roundoff, plus float's bound.
    EXPECT_TRUE(WithinHalfBound(result.weights, ref_weights, ref_weights, c.logit_bound()));
  }
}

TYPED_TEST(HalfAttention, FullyMaskedRowsGiveZeros) {
  using Q = typename TypeParam::Query;
  using KV = typename TypeParam::KeyValue;
  std::mt19937 gen(5);
  const auto q = qkv::to<Q>(random_tensor<float>({2, 6, 16}, gen));
  const auto k = qkv::to<KV>(random_tensor<float>({2, 4, 16}, gen));
  const auto v = qkv::to<KV>(random_tensor<float>({2, 4, 3}, gen));
  AttentionOptions<Q> options;
  options.causal = Causal::lower_right;  // rows 0 and 1 see no key
  const Tensor<Q> out = qkv::scaled_dot_product_attention(q, k, v, options);
  for (Index h = 0; h < 2; ++h)
    for (Index i = 0; i < 6; ++i)
      for (Index e = 0; e < 3; ++e) {
        const float x = static_cast<float>(out(h, i, e));
        if (i < 2) {
          EXPECT_EQ(x, 0.0f) << h << " " << i;
        } else {
          EXPECT_TRUE(std::isfinite(x) && x != 0.0f) << h << " " << i;
        }
      }
}

TYPED_TEST(HalfAttention, StridedLayoutsReadAndWriteInPlace) {
  using Q = typename TypeParam::Query;
  using KV = typename TypeParam::KeyValue;
  std::mt19937 gen(9);
  const Index B = 2, L = 7, S = 11, H = 3, E = 8, Ev = 5;
  const auto q_mem = qkv::to<Q>(random_tensor<float>({B, L, H, E}, gen));
  const auto k_mem = qkv::to<KV>(random_tensor<float>({B, S, H, E}, gen));
  const auto v_mem = qkv::to<KV>(random_tensor<float>({B, S, H, Ev}, gen));
  const auto q = q_mem.view().permute({0, 2, 1, 3});  // Q and KV differ: one declaration each
  const auto k = k_mem.view().permute({0, 2, 1, 3}), v = v_mem.view().permute({0, 2, 1, 3});
  Tensor<Q> out_mem(Shape{B, L, H, Ev});
  AttentionOptions<Q> options;
  options.causal = Causal::upper_left;
  qkv::AttentionWorkspace workspace;
  options.workspace = &workspace;
  qkv::scaled_dot_product_attention_out(out_mem.view().permute({0, 2, 1, 3}), q, k, v, options);
  AttentionOptions<Q> plain;
  plain.causal = Causal::upper_left;
  const Tensor<Q> contiguous = qkv::scaled_dot_product_attention(Tensor<Q>(q), Tensor<KV>(k), Tensor<KV>(v), plain);
  const Tensor<Q> strided(out_mem.view().permute({0, 2, 1, 3}));
  // The same values, computed from contiguous and from strided memory (which may take
  // another product path: the results agree to the inputs' rounding, not bit for bit).
  AttentionOptions<double> wide_options;
  wide_options.causal = Causal::upper_left;
  const Tensor<double> ref =
      reference_attention<double>(wide(Tensor<Q>(q)), wide(Tensor<KV>(k)), wide(Tensor<KV>(v)), wide_options);
  const Tensor<double> ref_abs = reference_attention<double>(wide(Tensor<Q>(q)), wide(Tensor<KV>(k)),
                                                             absolute(wide(Tensor<KV>(v))), wide_options);
  EXPECT_TRUE(WithinHalfBound(strided, ref, ref_abs, 4.0, S, 1.0));
  EXPECT_TRUE(WithinHalfBound(contiguous, ref, ref_abs, 4.0, S, 1.0));
  if (TypeParam::path != Path::naive) {
    EXPECT_GT(workspace.bytes(), 0u);  // the plain loop needs none
  }
}

TYPED_TEST(HalfAttention, ResultsDoNotDependOnTheThreadCount) {
  using Q = typename TypeParam::Query;
  using KV = typename TypeParam::KeyValue;
  std::mt19937 gen(12);
  const auto q = qkv::to<Q>(random_tensor<float>({3, 5, 70, 32}, gen));
  const auto k = qkv::to<KV>(random_tensor<float>({3, 5, 90, 32}, gen));
  const auto v = qkv::to<KV>(random_tensor<float>({3, 5, 90, 24}, gen));
  AttentionOptions<Q> options;
  options.causal = Causal::lower_right;
  qkv::set_num_threads(1);
  const Tensor<Q> one = qkv::scaled_dot_product_attention(q, k, v, options);
  qkv::set_num_threads(2);
  const Tensor<Q> two = qkv::scaled_dot_product_attention(q, k, v, options);
  EXPECT_EQ(std::memcmp(one.data(), two.data(), sizeof(Q) * static_cast<std::size_t>(one.numel())), 0);
}

// ---- the kernels at their real tile sizes -------------------------------------------

// softmax(q·kᵀ/sqrt(E) + causal mask)·v for one head, in double with Eigen's products.
Tensor<double> eigen_reference(const Tensor<double>& q, const Tensor<double>& k, const Tensor<double>& v,
                               Causal causal) {
  const Index L = q.size(0), S = k.size(0);
  Eigen::MatrixXd scores = (q.matrix() * k.matrix().transpose()) / std::sqrt(static_cast<double>(q.size(1)));
  const Index offset = causal == Causal::lower_right ? S - L : 0;
  for (Index i = 0; i < L; ++i) {
    for (Index j = 0; j < S; ++j)
      if (causal != Causal::none && j > i + offset) scores(i, j) = -std::numeric_limits<double>::infinity();
    scores.row(i) = (scores.row(i).array() - scores.row(i).maxCoeff()).exp().matrix();
    scores.row(i) /= scores.row(i).sum();
  }
  Tensor<double> out(Shape{L, v.size(1)});
  out.matrix() = scores * v.matrix();
  return out;
}

template <class Q>
double issue_bound() {  // issue 15's accuracy targets, normwise
  return std::is_same_v<Q, bfloat16> ? 1.0 / 128 : std::is_same_v<Q, half> ? 1.0 / 1024 : 1e-5;
}

template <class Q, class KV>
void expect_within_issue_bound(Index L, Index S, Index E, Causal causal, std::mt19937& gen) {
  SCOPED_TRACE(name_of<Q>() + "/" + name_of<KV>() + " L " + std::to_string(L) + " S " + std::to_string(S) + " E " +
               std::to_string(E));
  const auto q = qkv::to<Q>(random_tensor<float>({L, E}, gen));  // Q and KV differ: one declaration each
  const auto k = qkv::to<KV>(random_tensor<float>({S, E}, gen));
  const auto v = qkv::to<KV>(random_tensor<float>({S, E}, gen));
  AttentionOptions<Q> options;
  options.causal = causal;
  const Tensor<Q> out = qkv::scaled_dot_product_attention(q, k, v, options);
  EXPECT_LE(qkv::test::normwise_error(qkv::to<double>(out), eigen_reference(wide(q), wide(k), wide(v), causal)),
            issue_bound<Q>());
}

TEST(HalfKernels, PrefillAndDecodeWithinTheIssuesBounds) {
  std::mt19937 gen(46);
  for (const Causal causal : {Causal::none, Causal::upper_left}) {
    expect_within_issue_bound<bfloat16, bfloat16>(2048, 2048, 64, causal, gen);
    expect_within_issue_bound<half, half>(2048, 2048, 128, causal, gen);
    expect_within_issue_bound<float, bfloat16>(2048, 2048, 64, causal, gen);
    expect_within_issue_bound<float, half>(1000, 3000, 128, causal, gen);
  }
  for (const Index L : {1, 3}) {  // the split-key decode kernel
    expect_within_issue_bound<bfloat16, bfloat16>(L, 5000, 128, Causal::lower_right, gen);
    expect_within_issue_bound<half, half>(L, 5000, 128, Causal::lower_right, gen);
    expect_within_issue_bound<float, bfloat16>(L, 5000, 128, Causal::lower_right, gen);
    expect_within_issue_bound<float, half>(L, 5000, 130, Causal::lower_right, gen);
  }
}

// ---- bad input ----------------------------------------------------------------------

TEST(HalfAttentionErrors, TypesThatDoNotGoTogetherNameTypesAndShapes) {
  const auto q16 = Tensor<bfloat16>(Shape{2, 4, 8});
  const auto k16 = Tensor<half>(Shape{2, 6, 8});
  const auto v16 = Tensor<half>(Shape{2, 6, 8});
  EXPECT_TRUE(qkv::test::ThrowsWith<std::invalid_argument>(
      [&] { qkv::scaled_dot_product_attention(q16, k16, v16); },
      {"qkv::scaled_dot_product_attention", "query bfloat16, key half, value half", "[2,4,8]", "[2,6,8]"}));
  const auto q64 = Tensor<double>(Shape{2, 4, 8});
  EXPECT_TRUE(qkv::test::ThrowsWith<std::invalid_argument>(
      [&] { qkv::scaled_dot_product_attention(q64, k16, v16); }, {"query double, key half", "[2,4,8]"}));
  const auto q32 = Tensor<float>(Shape{2, 4, 8});
  const auto kb = Tensor<bfloat16>(Shape{2, 6, 8});
  EXPECT_TRUE(qkv::test::ThrowsWith<std::invalid_argument>(
      [&] { qkv::scaled_dot_product_attention_with_weights(q32, kb, v16); },
      {"qkv::scaled_dot_product_attention_with_weights", "key bfloat16, value half"}));
  Tensor<float> out(Shape{2, 4, 8});
  EXPECT_TRUE(qkv::test::ThrowsWith<std::invalid_argument>(
      [&] { qkv::scaled_dot_product_attention_out(out.view(), q32, Tensor<float>(Shape{2, 6, 8}), v16); },
      {"qkv::scaled_dot_product_attention_out", "key float, value half"}));
}

TEST(HalfAttentionErrors, ShapeErrorsNameTheShapesForHalfTypes) {
  const auto q = Tensor<float>(Shape{2, 8, 16, 64});
  const auto k = Tensor<half>(Shape{2, 8, 32, 32}), v = Tensor<half>(Shape{2, 8, 32, 64});
  EXPECT_TRUE(qkv::test::ThrowsWith<std::invalid_argument>(
      [&] { qkv::scaled_dot_product_attention(q, k, v); },
      {"key head_dim 32 != query head_dim 64", "[2,8,16,64]", "[2,8,32,32]"}));
}

}  // namespace
