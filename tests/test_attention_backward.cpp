// SPDX-License-Identifier: MIT
// qkv::scaled_dot_product_attention_backward against a long-double reference written from
// the formulas (tests/reference_backward.hpp), against finite differences in double, and
// against PyTorch's autograd (tests/data/backward_cases.inc), for every option of the
// forward, with tiles, chunks and blocks forced small so that partial tiles, causal
// skipping, masks across tile edges, several chunks and several blocks all occur.
#include <qkv/attention.hpp>
#include <qkv/attention_backward.hpp>
#include <qkv/ops.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "reference_backward.hpp"
#include "test_util.hpp"

namespace {

using qkv::AttentionOptions;
using qkv::Causal;
using qkv::Index;
using qkv::Shape;
using qkv::Tensor;
using qkv::TensorView;
using qkv::test::ThrowsWith;

/// Forces small tiles (ForcePath), chunks of 10 keys and blocks of 5 (one tile); restores on exit.
class ForceSmallBackward {
 public:
  ForceSmallBackward() : saved_(qkv::detail::backward_config()) {
    qkv::detail::backward_config().key_chunk = 10;
    qkv::detail::backward_config().key_block = 5;
  }
  ~ForceSmallBackward() { qkv::detail::backward_config() = saved_; }
  ForceSmallBackward(const ForceSmallBackward&) = delete;
  ForceSmallBackward& operator=(const ForceSmallBackward&) = delete;

 private:
  qkv::test::ForcePath path_{qkv::test::Path::fused};
  qkv::detail::BackwardConfig saved_;
};

template <class T>
double tolerance() {
  return std::is_same_v<T, float> ? 1e-4 : 1e-12;  // issue 17's accuracy targets, normwise
}

/// What a case feeds the backward: inputs and the incoming gradient.
template <class T>
struct Case {
  Tensor<T> q, k, v, grad_out;
  AttentionOptions<T> options;
};

template <class T>
Case<T> random_case(std::mt19937& gen, const Shape& q, const Shape& k, const Shape& v, double range = 1.0) {
  Case<T> c{qkv::test::random_tensor<T>(q, gen, -range, range), qkv::test::random_tensor<T>(k, gen, -range, range),
            qkv::test::random_tensor<T>(v, gen), Tensor<T>(), {}};
  Shape out = q;
  out[out.rank() - 1] = v[v.rank() - 1];
  c.grad_out = qkv::test::random_tensor<T>(out, gen);
  return c;
}

// Runs forward (with log-sum-exp) and backward on views, checks each gradient against the
// reference, and that every value is finite.
template <class T>
void expect_matches_reference(TensorView<const T> grad_out, TensorView<const T> q, TensorView<const T> k,
                              TensorView<const T> v, const AttentionOptions<T>& options, const std::string& what) {
  const auto forward = qkv::scaled_dot_product_attention_with_logsumexp(q, k, v, options);
  const auto g = qkv::scaled_dot_product_attention_backward(grad_out, q, k, v, forward.output, forward.logsumexp,
                                                            options);
  const auto ref = qkv::test::reference_attention_backward(grad_out, q, k, v, options);
  const struct {
    const char* name;
    const Tensor<T>& got;
    const Tensor<double>& want;
  } grads[] = {{"grad_q", g.grad_q, ref.grad_q}, {"grad_k", g.grad_k, ref.grad_k}, {"grad_v", g.grad_v, ref.grad_v}};
  for (const auto& x : grads) {
    ASSERT_EQ(x.got.shape(), x.want.shape()) << what << " " << x.name;
    for (const T& y : x.got) ASSERT_TRUE(std::isfinite(y)) << what << " " << x.name;
    EXPECT_LE(qkv::test::normwise_error(x.got, x.want), tolerance<T>()) << what << " " << x.name;
  }
}

template <class T>
void expect_matches_reference(const Case<T>& c, const std::string& what) {
  expect_matches_reference<T>(c.grad_out.view(), c.q.view(), c.k.view(), c.v.view(), c.options, what);
}

template <class T>
class Backward : public ::testing::Test {
 protected:
  ForceSmallBackward force_;
  std::mt19937 gen_{17};
};
TYPED_TEST_SUITE(Backward, qkv::test::FloatTypes, qkv::test::FloatTypeNames);

TYPED_TEST(Backward, PlainMatchesReference) {
  using T = TypeParam;
  // L ≠ S, E ≠ Ev, none a multiple of a tile, a panel or a register block.
  expect_matches_reference(random_case<T>(this->gen_, {2, 3, 13, 7}, {2, 3, 17, 7}, {2, 3, 17, 5}), "plain");
  expect_matches_reference(random_case<T>(this->gen_, {1, 1, 70, 19}, {1, 1, 53, 19}, {1, 1, 53, 33}), "long");
}

TYPED_TEST(Backward, CausalBothAlignments) {
  using T = TypeParam;
  for (const Causal causal : {Causal::upper_left, Causal::lower_right})
    for (const auto& [L, S] : {std::pair<Index, Index>{23, 31}, {31, 23}, {40, 40}}) {
      auto c = random_case<T>(this->gen_, {2, 2, L, 6}, {2, 2, S, 6}, {2, 2, S, 4});
      c.options.causal = causal;
      expect_matches_reference(c, "causal " + std::to_string(int(causal)) + " L " + std::to_string(L) + " S " +
                                      std::to_string(S));
    }
}

TYPED_TEST(Backward, BooleanMaskBroadcastWithFullyMaskedRows) {
  using T = TypeParam;
  auto c = random_case<T>(this->gen_, {2, 3, 19, 5}, {2, 3, 22, 5}, {2, 3, 22, 6});
  Tensor<bool> mask(Shape{3, 19, 22});  // broadcast over the batch
  std::bernoulli_distribution keep(0.6);
  for (bool& m : mask) m = keep(this->gen_);
  for (Index h = 0; h < 3; ++h)
    for (Index j = 0; j < 22; ++j) mask(h, Index(4), j) = false;  // row 4 sees no key
  c.options.attn_mask = mask;
  expect_matches_reference(c, "boolean mask");
  c.options.causal = Causal::lower_right;
  expect_matches_reference(c, "boolean mask, causal");
}

TYPED_TEST(Backward, AdditiveMaskBroadcastWithMinusInfinity) {
  using T = TypeParam;
  auto c = random_case<T>(this->gen_, {2, 2, 17, 8}, {2, 2, 24, 8}, {2, 2, 24, 8});
  auto mask = qkv::test::random_tensor<T>({2, 1, 17, 24}, this->gen_, -3.0, 3.0);  // broadcast over heads
  for (Index j = 0; j < 24; ++j) mask(Index(1), Index(0), Index(9), j) = -std::numeric_limits<T>::infinity();
  for (Index i = 0; i < 17; ++i) mask(Index(0), Index(0), i, Index(3)) = -std::numeric_limits<T>::infinity();
  c.options.attn_mask = mask;
  expect_matches_reference(c, "additive mask");
  c.options.causal = Causal::upper_left;
  expect_matches_reference(c, "additive mask, causal");
}

TYPED_TEST(Backward, GroupedQueryHeadsSumTheirGroups) {
  using T = TypeParam;
  auto c = random_case<T>(this->gen_, {2, 6, 15, 6}, {2, 2, 21, 6}, {2, 2, 21, 3});
  c.options.enable_gqa = true;
  expect_matches_reference(c, "gqa");
  c.options.causal = Causal::lower_right;
  expect_matches_reference(c, "gqa, causal");
}

TYPED_TEST(Backward, BroadcastKeysAndValues) {
  using T = TypeParam;
  // k and v shared by the batch, then k shared but v not (groups write their own rows).
  expect_matches_reference(random_case<T>(this->gen_, {3, 2, 11, 4}, {2, 14, 4}, {1, 2, 14, 5}), "shared k, v");
  expect_matches_reference(random_case<T>(this->gen_, {3, 2, 11, 4}, {1, 2, 14, 4}, {3, 2, 14, 5}), "shared k");
  auto c = random_case<T>(this->gen_, {2, 4, 9, 4}, {1, 2, 12, 4}, {2, 2, 12, 3});
  c.options.enable_gqa = true;
  expect_matches_reference(c, "shared k, gqa");
}

TYPED_TEST(Backward, CustomScaleAndLargeLogits) {
  using T = TypeParam;
  auto c = random_case<T>(this->gen_, {1, 2, 16, 8}, {1, 2, 18, 8}, {1, 2, 18, 8});
  c.options.scale = 0.3;
  expect_matches_reference(c, "scale 0.3");
  auto big = random_case<T>(this->gen_, {1, 2, 16, 8}, {1, 2, 18, 8}, {1, 2, 18, 8}, 3.0);
  big.options.scale = 8.0;  // logits up to ~600: the softmax is nearly one-hot
  expect_matches_reference(big, "large logits");
}

TYPED_TEST(Backward, SequencesOfOne) {
  using T = TypeParam;
  expect_matches_reference(random_case<T>(this->gen_, {2, 1, 5}, {2, 9, 5}, {2, 9, 3}), "L = 1");
  expect_matches_reference(random_case<T>(this->gen_, {2, 9, 5}, {2, 1, 5}, {2, 1, 3}), "S = 1");
  auto c = random_case<T>(this->gen_, {1, 1, 5}, {1, 1, 5}, {1, 1, 3});
  c.options.causal = Causal::upper_left;
  expect_matches_reference(c, "L = S = 1");
  auto hidden = random_case<T>(this->gen_, {7, 5}, {1, 5}, {1, 3});
  hidden.options.causal = Causal::lower_right;  // rows 0..5 see no key
  expect_matches_reference(hidden, "S = 1, lower right");
}

TYPED_TEST(Backward, StridedViewsInAndOut) {
  using T = TypeParam;
  // (B, L, H, E) memory seen as (B, H, L, E), as a model's projections lay it out.
  auto c = random_case<T>(this->gen_, {2, 13, 3, 6}, {2, 15, 3, 6}, {2, 15, 3, 4});
  const auto q = c.q.view().permute({0, 2, 1, 3}), k = c.k.view().permute({0, 2, 1, 3});
  const auto v = c.v.view().permute({0, 2, 1, 3}), grad_out = c.grad_out.view().permute({0, 2, 1, 3});
  AttentionOptions<T> options;
  options.causal = Causal::upper_left;
  expect_matches_reference<T>(grad_out, q, k, v, options, "strided");

  const auto forward = qkv::scaled_dot_product_attention_with_logsumexp(q, k, v, options);
  const auto contiguous = qkv::scaled_dot_product_attention_backward(grad_out, q, k, v, forward.output,
                                                                     forward.logsumexp, options);
  Tensor<T> gq(Shape{2, 13, 3, 6}), gk(Shape{2, 15, 3, 6}), gv(Shape{2, 15, 3, 4});
  qkv::scaled_dot_product_attention_backward_out(gq.view().permute({0, 2, 1, 3}), gk.view().permute({0, 2, 1, 3}),
                                                 gv.view().permute({0, 2, 1, 3}), grad_out, q, k, v,
                                                 forward.output, forward.logsumexp, options);
  EXPECT_TRUE(qkv::equal(Tensor<T>(gq.view().permute({0, 2, 1, 3})), contiguous.grad_q));
  EXPECT_TRUE(qkv::equal(Tensor<T>(gk.view().permute({0, 2, 1, 3})), contiguous.grad_k));
  EXPECT_TRUE(qkv::equal(Tensor<T>(gv.view().permute({0, 2, 1, 3})), contiguous.grad_v));
}

TYPED_TEST(Backward, EmptySequencesGiveZeroGradients) {
  using T = TypeParam;
  auto c = random_case<T>(this->gen_, {2, 4, 3}, {2, 0, 3}, {2, 0, 2});
  const auto forward = qkv::scaled_dot_product_attention_with_logsumexp(c.q, c.k, c.v);
  auto g = qkv::scaled_dot_product_attention_backward(c.grad_out, c.q, c.k, c.v, forward.output, forward.logsumexp);
  EXPECT_TRUE(qkv::equal(g.grad_q, Tensor<T>(Shape{2, 4, 3})));
  EXPECT_EQ(g.grad_k.shape(), (Shape{2, 0, 3}));
  auto d = random_case<T>(this->gen_, {2, 0, 3}, {2, 5, 3}, {2, 5, 2});
  const auto f2 = qkv::scaled_dot_product_attention_with_logsumexp(d.q, d.k, d.v);
  g = qkv::scaled_dot_product_attention_backward(d.grad_out, d.q, d.k, d.v, f2.output, f2.logsumexp);
  EXPECT_TRUE(qkv::equal(g.grad_k, Tensor<T>(Shape{2, 5, 3})));
  EXPECT_TRUE(qkv::equal(g.grad_v, Tensor<T>(Shape{2, 5, 2})));
}

// Finite differences in double: the loss Σ out ∘ grad_out, each input element moved by ±h.
TEST(BackwardFiniteDifferences, EveryOptionInDouble) {
  ForceSmallBackward force;
  std::mt19937 gen(5);
  Tensor<bool> bool_mask(Shape{7, 9});
  std::bernoulli_distribution keep(0.7);
  for (bool& m : bool_mask) m = keep(gen);
  for (Index j = 0; j < 9; ++j) bool_mask(Index(2), j) = false;
  const auto additive = qkv::test::random_tensor<double>({4, 1, 9}, gen, -2.0, 2.0);
  struct Variant {
    const char* name;
    Causal causal;
    int mask;  // 0 none, 1 boolean, 2 additive
    bool gqa;
    double scale;
  };
  for (const Variant& variant : {Variant{"plain", Causal::none, 0, false, 0}, Variant{"upper left", Causal::upper_left, 0, false, 0},
                                 Variant{"lower right", Causal::lower_right, 0, false, 0.7},
                                 Variant{"boolean mask", Causal::none, 1, false, 0},
                                 Variant{"additive mask, causal", Causal::upper_left, 2, false, 0},
                                 Variant{"gqa", Causal::lower_right, 0, true, 0}}) {
    auto c = random_case<double>(gen, {1, 4, 7, 3}, {1, variant.gqa ? 2 : 4, 9, 3}, {1, variant.gqa ? 2 : 4, 9, 2});
    AttentionOptions<double>& o = c.options;
    o.causal = variant.causal;
    o.enable_gqa = variant.gqa;
    if (variant.scale > 0) o.scale = variant.scale;
    if (variant.mask == 1) o.attn_mask = bool_mask;
    if (variant.mask == 2) o.attn_mask = additive;
    const auto loss = [&] {
      const auto out = qkv::scaled_dot_product_attention(c.q, c.k, c.v, o);
      double sum = 0;
      for (Index i = 0; i < out.numel(); ++i) sum += out.data()[i] * c.grad_out.data()[i];
      return sum;
    };
    const auto forward = qkv::scaled_dot_product_attention_with_logsumexp(c.q, c.k, c.v, o);
    const auto g = qkv::scaled_dot_product_attention_backward(c.grad_out, c.q, c.k, c.v, forward.output,
                                                              forward.logsumexp, o);
    const struct {
      const char* name;
      Tensor<double>& x;
      const Tensor<double>& grad;
    } inputs[] = {{"q", c.q, g.grad_q}, {"k", c.k, g.grad_k}, {"v", c.v, g.grad_v}};
    for (const auto& in : inputs) {
      double scale = 0;
      for (const double y : in.grad) scale = std::max(scale, std::abs(y));
      ASSERT_GT(scale, 0.0) << variant.name << " " << in.name;
      for (Index i = 0; i < in.x.numel(); ++i) {
        const double h = 1e-5, saved = in.x.data()[i];
        in.x.data()[i] = saved + h;
        const double up = loss();
        in.x.data()[i] = saved - h;
        const double down = loss();
        in.x.data()[i] = saved;
        // Central differences: truncation ~h², rounding ~1e-16/h, against gradients ~1.
        EXPECT_NEAR(in.grad.data()[i], (up - down) / (2 * h), 1e-8 * std::max(scale, 1.0))
            << variant.name << " d" << in.name << "[" << i << "]";
      }
    }
  }
}

// Bitwise equal gradients on 1, 2 and 3 threads, with the kernel's own tile sizes and with
// forced small ones (many chunks, so the dQ reduction has many partials).
TEST(BackwardThreads, BitwiseIdenticalForAnyThreadCount) {
  std::mt19937 gen(3);
  for (const bool small : {false, true}) {
    std::unique_ptr<ForceSmallBackward> force;
    if (small) force = std::make_unique<ForceSmallBackward>();
    auto c = random_case<float>(gen, {1, 4, 301, 16}, {1, 2, 299, 16}, {1, 2, 299, 16});
    c.options.enable_gqa = true;
    c.options.causal = Causal::lower_right;
    const auto forward = qkv::scaled_dot_product_attention_with_logsumexp(c.q, c.k, c.v, c.options);
    std::vector<qkv::AttentionGradients<float>> runs;
    for (const int threads : {1, 2, 3}) {
      qkv::set_num_threads(threads);
      runs.push_back(qkv::scaled_dot_product_attention_backward(c.grad_out, c.q, c.k, c.v, forward.output,
                                                                forward.logsumexp, c.options));
    }
    qkv::set_num_threads(0);
    for (std::size_t r = 1; r < runs.size(); ++r) {
      EXPECT_TRUE(qkv::equal(runs[r].grad_q, runs[0].grad_q)) << "threads run " << r << " small " << small;
      EXPECT_TRUE(qkv::equal(runs[r].grad_k, runs[0].grad_k)) << "threads run " << r << " small " << small;
      EXPECT_TRUE(qkv::equal(runs[r].grad_v, runs[0].grad_v)) << "threads run " << r << " small " << small;
    }
  }
}

// L = S = 4096 at the kernel's own tile sizes: float against double, and the double's dQ
// rows (each independent of the others) against long double on a sample of rows.
TEST(BackwardLong, FloatAgainstDoubleAt4096) {
  std::mt19937 gen(11);
  const Shape qs{1, 1, 4096, 32}, vs{1, 1, 4096, 32};
  auto d = random_case<double>(gen, qs, qs, vs);
  d.options.causal = Causal::upper_left;
  AttentionOptions<float> fo;
  fo.causal = Causal::upper_left;
  Tensor<float> q(qs), k(qs), v(vs), go(vs);
  for (Index i = 0; i < q.numel(); ++i)
    q.data()[i] = float(d.q.data()[i]), k.data()[i] = float(d.k.data()[i]), v.data()[i] = float(d.v.data()[i]),
    go.data()[i] = float(d.grad_out.data()[i]);
  for (Index i = 0; i < q.numel(); ++i)  // the double case on exactly the float inputs
    d.q.data()[i] = q.data()[i], d.k.data()[i] = k.data()[i], d.v.data()[i] = v.data()[i],
    d.grad_out.data()[i] = go.data()[i];
  const auto fd = qkv::scaled_dot_product_attention_with_logsumexp(d.q, d.k, d.v, d.options);
  const auto gd = qkv::scaled_dot_product_attention_backward(d.grad_out, d.q, d.k, d.v, fd.output, fd.logsumexp,
                                                             d.options);
  const auto ff = qkv::scaled_dot_product_attention_with_logsumexp(q, k, v, fo);
  const auto gf = qkv::scaled_dot_product_attention_backward(go, q, k, v, ff.output, ff.logsumexp, fo);
  EXPECT_LE(qkv::test::normwise_error(gf.grad_q, gd.grad_q), 1e-4);
  EXPECT_LE(qkv::test::normwise_error(gf.grad_k, gd.grad_k), 1e-4);
  EXPECT_LE(qkv::test::normwise_error(gf.grad_v, gd.grad_v), 1e-4);
  // The sampled rows' reference: attention of those rows alone sees the same keys when
  // the causal mask is given as a boolean mask of the rows' own positions.
  for (const Index row : {Index(0), Index(1), Index(777), Index(4095)}) {
    const auto qr = d.q.view().narrow(2, row, 1), gr = d.grad_out.view().narrow(2, row, 1);
    Tensor<bool> sees(Shape{1, 4096});
    for (Index j = 0; j < 4096; ++j) sees(Index(0), j) = j <= row;
    AttentionOptions<double> o;
    o.attn_mask = sees;
    const auto ref = qkv::test::reference_attention_backward<double>(gr, qr, d.k.view(), d.v.view(), o);
    const Tensor<double> got(gd.grad_q.view().narrow(2, row, 1));
    EXPECT_LE(qkv::test::normwise_error(got, ref.grad_q), 1e-12) << "row " << row;
  }
}

// ---- PyTorch's autograd (tests/data/make_backward_cases.py) ----------------------------

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Array {
  std::vector<Index> shape;
  std::vector<double> values;
};

struct TorchCase {
  std::string name;
  std::map<std::string, Index> options;
  std::map<std::string, Array> arrays;
};

const std::vector<TorchCase>& TorchCases() {
  static const std::vector<TorchCase> cases = {
#include "data/backward_cases.inc"
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

TYPED_TEST(Backward, PyTorchAutogradCases) {
  using T = TypeParam;
  ASSERT_EQ(TorchCases().size(), 8u);
  for (const TorchCase& c : TorchCases()) {
    const auto q = ToTensor<T>(c.arrays.at("q")), k = ToTensor<T>(c.arrays.at("k")), v = ToTensor<T>(c.arrays.at("v"));
    const auto grad_out = ToTensor<T>(c.arrays.at("grad_out"));
    AttentionOptions<T> options;
    options.causal = c.options.at("causal") == 0   ? Causal::none
                     : c.options.at("causal") == 1 ? Causal::upper_left
                                                   : Causal::lower_right;
    options.enable_gqa = c.options.at("gqa") != 0;
    if (c.options.at("scale_set")) options.scale = c.arrays.at("scale").values.at(0);
    Tensor<bool> bool_mask;
    Tensor<T> float_mask;
    if (c.options.at("mask") == 1) {
      const auto m = ToTensor<double>(c.arrays.at("mask"));
      bool_mask = Tensor<bool>(m.shape());
      for (Index i = 0; i < m.numel(); ++i) bool_mask.data()[i] = m.data()[i] != 0;
      options.attn_mask = bool_mask;
    } else if (c.options.at("mask") == 2) {
      float_mask = ToTensor<T>(c.arrays.at("mask"));
      options.attn_mask = float_mask;
    }
    const auto f = qkv::scaled_dot_product_attention_with_logsumexp(q, k, v, options);
    const auto g = qkv::scaled_dot_product_attention_backward(grad_out, q, k, v, f.output, f.logsumexp, options);
    EXPECT_LE(qkv::test::normwise_error(g.grad_q, ToTensor<double>(c.arrays.at("grad_q"))), tolerance<T>()) << c.name;
    EXPECT_LE(qkv::test::normwise_error(g.grad_k, ToTensor<double>(c.arrays.at("grad_k"))), tolerance<T>()) << c.name;
    EXPECT_LE(qkv::test::normwise_error(g.grad_v, ToTensor<double>(c.arrays.at("grad_v"))), tolerance<T>()) << c.name;
  }
}

TEST(BackwardErrors, ShapesAreNamed) {
  std::mt19937 gen(1);
  auto c = random_case<float>(gen, {2, 3, 4, 8}, {2, 3, 6, 8}, {2, 3, 6, 5});
  const auto f = qkv::scaled_dot_product_attention_with_logsumexp(c.q, c.k, c.v);
  const Tensor<float> wrong_out(Shape{2, 3, 4, 8}), wrong_lse(Shape{2, 3, 5});
  const char* fn = "qkv::scaled_dot_product_attention_backward:";
  const std::string shapes = "(query [2,3,4,8], key [2,3,6,8], value [2,3,6,5])";
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(
      [&] { qkv::scaled_dot_product_attention_backward(wrong_out, c.q, c.k, c.v, f.output, f.logsumexp); },
      {fn, "grad_out shape [2,3,4,8] != expected [2,3,4,5]", shapes}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(
      [&] { qkv::scaled_dot_product_attention_backward(c.grad_out, c.q, c.k, c.v, wrong_out, f.logsumexp); },
      {fn, "out shape [2,3,4,8] != expected [2,3,4,5]", shapes}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(
      [&] { qkv::scaled_dot_product_attention_backward(c.grad_out, c.q, c.k, c.v, f.output, wrong_lse); },
      {fn, "logsumexp shape [2,3,5] != expected [2,3,4]", shapes}));
  const Tensor<float> short_k(Shape{2, 3, 6, 7});
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(
      [&] { qkv::scaled_dot_product_attention_backward(c.grad_out, c.q, short_k, c.v, f.output, f.logsumexp); },
      {fn, "key head_dim 7 != query head_dim 8"}));
  Tensor<float> gq(Shape{2, 3, 4, 8}), gk(Shape{2, 3, 6, 8}), gv(Shape{2, 3, 6, 4});
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(
      [&] {
        qkv::scaled_dot_product_attention_backward_out(gq.view(), gk.view(), gv.view(), c.grad_out, c.q, c.k, c.v,
                                                       f.output, f.logsumexp);
      },
      {"qkv::scaled_dot_product_attention_backward_out:", "grad_v shape [2,3,6,4] != expected [2,3,6,5]", shapes}));
}

// bfloat16 and half: the gradients against the long-double reference on the same 16-bit
// values (widened exactly). What separates them is 16-bit rounding: of the forward's output
// (which D = rowsum(dO ∘ O) reads) and of each gradient; the float arithmetic is far below.
template <class T>
class HalfBackward : public ::testing::Test {
 protected:
  ForceSmallBackward force_;
  std::mt19937 gen_{23};
};
using HalfTypes = ::testing::Types<qkv::bfloat16, qkv::half>;
struct HalfTypeNames {
  template <class T>
  static std::string GetName(int) {
    return std::is_same_v<T, qkv::bfloat16> ? "bfloat16" : "half";
  }
};
TYPED_TEST_SUITE(HalfBackward, HalfTypes, HalfTypeNames);

// T's unit roundoff: 2^-8 for bfloat16, 2^-11 for half. (Eigen 3.4's
// numeric_limits<half>::epsilon() is 2^-13, not 2^-10, so it is not used here.)
template <class T>
double unit_roundoff() {
  return std::is_same_v<T, qkv::bfloat16> ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
}

// The bound, normwise: 8 unit roundoffs of T (the gradients measure about 1).
template <class T>
double half_tolerance() {
  return 8.0 * unit_roundoff<T>();
}

template <class T>
Case<T> rounded_case(std::mt19937& gen, const Shape& q, const Shape& k, const Shape& v) {
  const Case<float> c = random_case<float>(gen, q, k, v);
  return {qkv::to<T>(c.q), qkv::to<T>(c.k), qkv::to<T>(c.v), qkv::to<T>(c.grad_out), {}};
}

template <class T>
double worst_half_error(TensorView<const T> grad_out, TensorView<const T> q, TensorView<const T> k,
                        TensorView<const T> v, const AttentionOptions<T>& options, const std::string& what) {
  const auto forward = qkv::scaled_dot_product_attention_with_logsumexp(q, k, v, options);
  const Tensor<float>& lse = forward.logsumexp;  // float, as the forward returns it for 16-bit types
  const auto g = qkv::scaled_dot_product_attention_backward(grad_out, q, k, v, forward.output, lse, options);
  AttentionOptions<float> wide;
  wide.causal = options.causal;
  wide.scale = options.scale;
  wide.enable_gqa = options.enable_gqa;
  Tensor<float> additive;
  if (options.attn_mask.is_boolean()) wide.attn_mask = options.attn_mask.boolean();
  if (options.attn_mask.is_additive()) additive = qkv::to<float>(options.attn_mask.additive());
  if (options.attn_mask.is_additive()) wide.attn_mask = additive;
  const Tensor<float> go = qkv::to<float>(grad_out), q32 = qkv::to<float>(q), k32 = qkv::to<float>(k),
                      v32 = qkv::to<float>(v);
  const auto ref = qkv::test::reference_attention_backward<float>(go.view(), q32.view(), k32.view(), v32.view(), wide);
  double worst = 0;
  const struct {
    const char* name;
    const Tensor<T>& got;
    const Tensor<double>& want;
  } grads[] = {{"grad_q", g.grad_q, ref.grad_q}, {"grad_k", g.grad_k, ref.grad_k}, {"grad_v", g.grad_v, ref.grad_v}};
  for (const auto& x : grads) {
    EXPECT_EQ(x.got.shape(), x.want.shape()) << what << " " << x.name;
    const Tensor<float> got = qkv::to<float>(x.got);
    for (const float y : got) EXPECT_TRUE(std::isfinite(y)) << what << " " << x.name;
    const double error = qkv::test::normwise_error(got, x.want);
    EXPECT_LE(error, half_tolerance<T>()) << what << " " << x.name;
    worst = std::max(worst, error);
  }
  return worst;
}

template <class T>
double worst_half_error(const Case<T>& c, const std::string& what) {
  return worst_half_error<T>(c.grad_out.view(), c.q.view(), c.k.view(), c.v.view(), c.options, what);
}

TYPED_TEST(HalfBackward, EveryOptionMatchesTheReferenceOnTheRoundedValues) {
  using T = TypeParam;
  auto& gen = this->gen_;
  double worst = worst_half_error(rounded_case<T>(gen, {2, 3, 13, 7}, {2, 3, 17, 7}, {2, 3, 17, 5}), "plain");
  for (const Causal causal : {Causal::upper_left, Causal::lower_right}) {
    auto c = rounded_case<T>(gen, {2, 2, 23, 6}, {2, 2, 31, 6}, {2, 2, 31, 4});
    c.options.causal = causal;
    worst = std::max(worst, worst_half_error(c, "causal"));
  }
  auto masked = rounded_case<T>(gen, {2, 3, 19, 5}, {2, 3, 22, 5}, {2, 3, 22, 6});
  Tensor<bool> mask(Shape{3, 19, 22});
  std::bernoulli_distribution keep(0.6);
  for (bool& m : mask) m = keep(gen);
  for (Index h = 0; h < 3; ++h)
    for (Index j = 0; j < 22; ++j) mask(h, Index(4), j) = false;  // row 4 sees no key
  masked.options.attn_mask = mask;
  worst = std::max(worst, worst_half_error(masked, "boolean mask"));
  auto added = rounded_case<T>(gen, {2, 2, 17, 8}, {2, 2, 24, 8}, {2, 2, 24, 8});
  const Tensor<T> additive = qkv::to<T>(qkv::test::random_tensor<float>({2, 1, 17, 24}, gen, -3.0, 3.0));
  added.options.attn_mask = additive;
  added.options.causal = Causal::upper_left;
  worst = std::max(worst, worst_half_error(added, "additive mask, causal"));
  auto gqa = rounded_case<T>(gen, {2, 6, 15, 6}, {2, 2, 21, 6}, {2, 2, 21, 3});
  gqa.options.enable_gqa = true;
  gqa.options.scale = 0.3;
  worst = std::max(worst, worst_half_error(gqa, "gqa, scale 0.3"));
  std::printf("worst normwise error %.3g = %.2f unit roundoffs\n", worst, worst / unit_roundoff<T>());
}

TYPED_TEST(HalfBackward, StridedViewsAndTheOutFormAgree) {
  using T = TypeParam;
  auto c = rounded_case<T>(this->gen_, {2, 13, 3, 6}, {2, 15, 3, 6}, {2, 15, 3, 4});
  const auto q = c.q.view().permute({0, 2, 1, 3}), k = c.k.view().permute({0, 2, 1, 3});
  const auto v = c.v.view().permute({0, 2, 1, 3}), grad_out = c.grad_out.view().permute({0, 2, 1, 3});
  AttentionOptions<T> options;
  options.causal = Causal::lower_right;
  worst_half_error<T>(grad_out, q, k, v, options, "strided");
  const auto forward = qkv::scaled_dot_product_attention_with_logsumexp(q, k, v, options);
  const auto g = qkv::scaled_dot_product_attention_backward(grad_out, q, k, v, forward.output, forward.logsumexp,
                                                            options);
  Tensor<T> gq(Shape{2, 13, 3, 6}), gk(Shape{2, 15, 3, 6}), gv(Shape{2, 15, 3, 4});
  qkv::scaled_dot_product_attention_backward_out(gq.view().permute({0, 2, 1, 3}), gk.view().permute({0, 2, 1, 3}),
                                                 gv.view().permute({0, 2, 1, 3}), grad_out, q, k, v,
                                                 forward.output, forward.logsumexp, options);
  EXPECT_TRUE(qkv::equal(Tensor<T>(gq.view().permute({0, 2, 1, 3})), g.grad_q));
  EXPECT_TRUE(qkv::equal(Tensor<T>(gk.view().permute({0, 2, 1, 3})), g.grad_k));
  EXPECT_TRUE(qkv::equal(Tensor<T>(gv.view().permute({0, 2, 1, 3})), g.grad_v));
}

TEST(HalfBackwardErrors, ShapesAreNamed) {
  std::mt19937 gen(2);
  const auto c = rounded_case<qkv::bfloat16>(gen, {2, 4, 8}, {2, 6, 8}, {2, 6, 5});
  const auto f = qkv::scaled_dot_product_attention_with_logsumexp(c.q, c.k, c.v);
  const Tensor<float> wrong_lse(Shape{2, 5});
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(
      [&] { qkv::scaled_dot_product_attention_backward(c.grad_out, c.q, c.k, c.v, f.output, wrong_lse); },
      {"qkv::scaled_dot_product_attention_backward:", "logsumexp shape [2,5] != expected [2,4]",
       "(query [2,4,8], key [2,6,8], value [2,6,5])"}));
}

}  // namespace
