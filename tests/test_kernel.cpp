// SPDX-License-Identifier: MIT
// The fused and split-key decode kernels at their real tile sizes: float accuracy against
// a double reference up to L = 4096, results bitwise independent of the thread count,
// causal tiles beyond the diagonal never read, and caller-owned workspaces.
#include <qkv/attention.hpp>
#include <qkv/kernel.hpp>
#include <qkv/parallel.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <type_traits>

#include "reference.hpp"
#include "test_util.hpp"

namespace {

using qkv::AttentionOptions;
using qkv::Causal;
using qkv::Index;
using qkv::Shape;
using qkv::Tensor;
using qkv::test::normwise_error;
using qkv::test::random_tensor;

// softmax(q·kᵀ·scale + causal mask)·v for one head in double with Eigen's products: a
// reference independent of qkv's kernels, fast enough for L = 4096.
Tensor<double> eigen_reference(const Tensor<float>& q, const Tensor<float>& k, const Tensor<float>& v, Causal causal) {
  using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Index L = q.size(0), S = k.size(0);
  const Matrix Q = q.view().matrix().cast<double>(), K = k.view().matrix().cast<double>();
  const Matrix V = v.view().matrix().cast<double>();
  Matrix scores = (Q * K.transpose()) / std::sqrt(static_cast<double>(q.size(1)));
  const Index offset = causal == Causal::lower_right ? S - L : 0;
  for (Index i = 0; i < L; ++i) {
    for (Index j = 0; j < S; ++j)
      if (causal != Causal::none && j > i + offset) scores(i, j) = -std::numeric_limits<double>::infinity();
    scores.row(i) = (scores.row(i).array() - scores.row(i).maxCoeff()).exp().matrix();
    scores.row(i) /= scores.row(i).sum();
  }
  Tensor<double> out(Shape{L, v.size(1)});
  out.view().matrix() = scores * V;
  return out;
}

bool bitwise_equal(const Tensor<float>& a, const Tensor<float>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(float) * std::size_t(a.numel())) == 0;
}

// Restores the thread count a test changed.
class KernelTest : public ::testing::Test {
 protected:
  ~KernelTest() override { qkv::set_num_threads(0); }
};

TEST_F(KernelTest, FloatIsWithinNormwiseBoundUpTo4096) {
  std::mt19937 gen(42);
  struct Case {
    Index L, S, E;
    Causal causal;
  };
  for (const Case& c : {Case{4096, 4096, 64, Causal::none}, Case{4096, 4096, 64, Causal::upper_left},
                        Case{1000, 3000, 128, Causal::lower_right}, Case{777, 1333, 40, Causal::none}}) {
    SCOPED_TRACE("L " + std::to_string(c.L) + " S " + std::to_string(c.S) + " E " + std::to_string(c.E));
    const auto q = random_tensor<float>({c.L, c.E}, gen), k = random_tensor<float>({c.S, c.E}, gen);
    const auto v = random_tensor<float>({c.S, c.E}, gen);
    AttentionOptions<float> options;
    options.causal = c.causal;
    const Tensor<float> out = qkv::scaled_dot_product_attention(q, k, v, options);
    EXPECT_LE(normwise_error(out, eigen_reference(q, k, v, c.causal)), 1e-5);
  }
}

// Scores that rise along the keys by up to 10 per block of the micro-kernel: the softmax
// must raise its reference maximum inside a tile and rescale the rows already written.
// The scores are exact in float (q·kᵀ/2 of multiples of 1/4), so only the softmax errs.
TEST_F(KernelTest, RisingScoresRaiseTheMaximumInsideATile) {
  std::mt19937 gen(44);
  const Index L = 37, S = 300, E = 4;
  Tensor<float> q(Shape{L, E}), k(Shape{S, E});
  for (Index i = 0; i < L; ++i) {
    const float row[] = {0.25f * float(i % 15 - 5), 0.5f * float(i % 3 - 1), 0, 0};
    for (Index e = 0; e < E; ++e) q(i, e) = row[e];
  }
  for (Index j = 0; j < S; ++j) {
    const float row[] = {float(j), float(j % 7 - 3), 1, -1};
    for (Index e = 0; e < E; ++e) k(j, e) = row[e];
  }
  const auto v = random_tensor<float>({S, 3}, gen);
  for (const Index key_tile : {Index(0), Index(20)}) {
    for (const Causal causal : {Causal::none, Causal::lower_right}) {
      SCOPED_TRACE("key tile " + std::to_string(key_tile) + (causal == Causal::none ? "" : ", causal"));
      const auto saved = qkv::detail::kernel_config();
      qkv::detail::kernel_config().key_tile = key_tile;
      AttentionOptions<float> options;
      options.causal = causal;
      const Tensor<float> out = qkv::scaled_dot_product_attention(q, k, v, options);
      qkv::detail::kernel_config() = saved;
      EXPECT_LE(normwise_error(out, eigen_reference(q, k, v, causal)), 1e-5);
    }
  }
}

TEST_F(KernelTest, DecodeIsWithinNormwiseBound) {
  std::mt19937 gen(43);
  // Value widths 128 and 203 = 128 + 64 + 8 + 3: every pass of the decode kernel's
  // weighted sum (16, 8 and 1 float packets on AVX2, then scalars).
  for (Index L : {1, 3}) {
    for (Index Ev : {128, 203}) {
      const auto q = random_tensor<float>({L, 128}, gen), k = random_tensor<float>({5000, 128}, gen);
      const auto v = random_tensor<float>({5000, Ev}, gen);
      AttentionOptions<float> options;
      options.causal = Causal::lower_right;
      const Tensor<float> out = qkv::scaled_dot_product_attention(q, k, v, options);
      EXPECT_LE(normwise_error(out, eigen_reference(q, k, v, Causal::lower_right)), 1e-5) << L << " " << Ev;
    }
  }
}

TEST_F(KernelTest, ResultsDoNotDependOnTheThreadCount) {
  std::mt19937 gen(44);
  // Prefill (fused kernel) with GQA and a mask, and decode (split-key kernel).
  const auto q = random_tensor<float>({2, 4, 300, 32}, gen), k = random_tensor<float>({2, 2, 700, 32}, gen);
  const auto v = random_tensor<float>({2, 2, 700, 24}, gen);
  // Long enough a cache for the decode kernel to use several threads.
  const auto q1 = random_tensor<float>({2, 4, 1, 32}, gen), k1 = random_tensor<float>({2, 2, 20000, 32}, gen);
  const auto v1 = random_tensor<float>({2, 2, 20000, 24}, gen);
  Tensor<float> mask = random_tensor<float>({300, 700}, gen);
  for (Causal causal : {Causal::none, Causal::upper_left, Causal::lower_right}) {
    AttentionOptions<float> options;
    options.causal = causal;
    options.enable_gqa = true;
    options.attn_mask = mask;
    AttentionOptions<float> decode = options;
    decode.attn_mask = {};
    qkv::set_num_threads(1);
    const Tensor<float> one = qkv::scaled_dot_product_attention(q, k, v, options);
    const Tensor<float> one_decode = qkv::scaled_dot_product_attention(q1, k1, v1, decode);
    for (int threads : {2, 3, 5}) {
      qkv::set_num_threads(threads);
      EXPECT_TRUE(bitwise_equal(one, qkv::scaled_dot_product_attention(q, k, v, options))) << threads;
      EXPECT_TRUE(bitwise_equal(one_decode, qkv::scaled_dot_product_attention(q1, k1, v1, decode))) << threads;
    }
  }
}

TEST_F(KernelTest, CausalNeverReadsKeysBeyondThePanel) {
  // Keys from `first_poisoned` on are NaN, in K, V and the additive mask. Under upper-left
  // causal masking a query panel ending before them must skip their tiles entirely (not
  // read and mask them, which would turn 0·NaN into NaN); the decode kernel's rows likewise.
  std::mt19937 gen(45);
  constexpr Index W = qkv::detail::FlashBlocking<float>::width;
  const Index L = 4 * W, S = 4 * W, E = 16, first_poisoned = 2 * W;
  const auto q = random_tensor<float>({L, E}, gen);
  auto k = random_tensor<float>({S, E}, gen), v = random_tensor<float>({S, E}, gen);
  auto mask = random_tensor<float>({L, S}, gen);
  AttentionOptions<float> options;
  options.causal = Causal::upper_left;
  options.attn_mask = mask;
  const Tensor<float> clean = qkv::scaled_dot_product_attention(q, k, v, options);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (Index j = first_poisoned; j < S; ++j) {
    for (Index e = 0; e < E; ++e) k(j, e) = v(j, e) = nan;
    for (Index i = 0; i < L; ++i) mask(i, j) = nan;
  }
  const Tensor<float> poisoned = qkv::scaled_dot_product_attention(q, k, v, options);
  for (Index i = 0; i < first_poisoned; ++i)
    for (Index e = 0; e < E; ++e) ASSERT_EQ(poisoned(i, e), clean(i, e)) << "row " << i;
  {
    qkv::test::ForcePath small_tiles(qkv::test::Path::fused);
    const Tensor<float> tiled = qkv::scaled_dot_product_attention(q, k, v, options);
    for (Index i = 0; i < first_poisoned; ++i)
      for (Index e = 0; e < E; ++e) ASSERT_TRUE(std::isfinite(tiled(i, e))) << "row " << i;
  }

  // Decode: under lower-right masking row 0 of 2 sees keys 0 .. S - 2, never key S - 1.
  qkv::test::ForcePath decode(qkv::test::Path::decode);
  const auto q2 = random_tensor<float>({2, E}, gen);
  AttentionOptions<float> lower_right;
  lower_right.causal = Causal::lower_right;
  const Index keys = first_poisoned + 1;
  const Tensor<float> decoded = qkv::scaled_dot_product_attention(q2, k.view().narrow(0, 0, keys),
                                                                  v.view().narrow(0, 0, keys), lower_right);
  for (Index e = 0; e < E; ++e) EXPECT_TRUE(std::isfinite(decoded(0, e)));
  EXPECT_TRUE(std::isnan(decoded(1, 0)));
}

TEST_F(KernelTest, CallerWorkspaceGivesTheSameResultAndIsReused) {
  std::mt19937 gen(46);
  const auto q = random_tensor<float>({3, 200, 64}, gen), k = random_tensor<float>({3, 500, 64}, gen);
  const auto v = random_tensor<float>({3, 500, 64}, gen);
  const auto q1 = random_tensor<float>({3, 1, 64}, gen);
  qkv::AttentionWorkspace workspace;
  AttentionOptions<float> options;
  options.causal = Causal::lower_right;
  const Tensor<float> own = qkv::scaled_dot_product_attention(q, k, v, options);
  const Tensor<float> own_decode = qkv::scaled_dot_product_attention(q1, k, v, options);
  options.workspace = &workspace;
  EXPECT_TRUE(bitwise_equal(own, qkv::scaled_dot_product_attention(q, k, v, options)));
  EXPECT_TRUE(bitwise_equal(own_decode, qkv::scaled_dot_product_attention(q1, k, v, options)));
  const std::size_t bytes = workspace.bytes();
  EXPECT_GT(bytes, 0u);
  EXPECT_TRUE(bitwise_equal(own, qkv::scaled_dot_product_attention(q, k, v, options)));
  EXPECT_EQ(workspace.bytes(), bytes);  // steady state: nothing new allocated
}

TEST_F(KernelTest, WorkspaceIsIndependentOfKeyLength) {
  // O(tile) memory: the fused kernel's per-thread scratch does not grow with S.
  std::mt19937 gen(47);
  const auto q = random_tensor<float>({100, 32}, gen);
  std::size_t bytes[2];
  for (int n = 0; n < 2; ++n) {
    const Index S = n == 0 ? 1000 : 20000;
    const auto k = random_tensor<float>({S, 32}, gen), v = random_tensor<float>({S, 32}, gen);
    qkv::AttentionWorkspace workspace;
    AttentionOptions<float> options;
    options.workspace = &workspace;
    qkv::set_num_threads(1);
    (void)qkv::scaled_dot_product_attention(q, k, v, options);
    bytes[n] = workspace.bytes();
  }
  EXPECT_EQ(bytes[0], bytes[1]);
}

template <class T>
class ExpTyped : public ::testing::Test {};
TYPED_TEST_SUITE(ExpTyped, qkv::test::FloatTypes, qkv::test::FloatTypeNames);

TYPED_TEST(ExpTyped, ExpIsAccurateUpToTheSoftmaxsHeadroomAndZeroWhereMasked) {
  using T = TypeParam;
  using P = qkv::detail::Packet<T>;
  constexpr int lanes = qkv::detail::packet_size<T>;
  // Relative error against the long-double exponential, lane by lane and in the scalar
  // form. e^x has condition number |x|: log2(e) rounded to T alone costs up to eps·|x|
  // (as would rounding the argument), so the bound is a few eps·(1 + |x|). (In the
  // softmax, large |x| are the negligible weights.)
  const double eps = std::numeric_limits<T>::epsilon();
  double worst = 0;  // in units of eps·(1 + |x|)
  // The fused kernel's softmax takes scores up to 5 above its reference maximum.
  for (int n = 0; n <= 20000; ++n) {
    const T x = static_cast<T>(-80.0 + 85.0 * n / 20000.0);
    alignas(64) T in[qkv::detail::extent<lanes>], out[qkv::detail::extent<lanes>];
    for (int l = 0; l < lanes; ++l) in[l] = x;
    qkv::detail::simd::pstore(out, qkv::detail::pexp_clamped(qkv::detail::simd::pload<P>(in)));
    const long double ref = std::exp(static_cast<long double>(x));
    const double relative = static_cast<double>(std::abs((out[0] - ref) / ref));
    worst = std::max(worst, relative / (eps * (1.0 + std::abs(static_cast<double>(x)))));
    ASSERT_EQ(out[lanes - 1], out[0]);
    ASSERT_EQ(qkv::detail::exp_clamped(x), out[0]);
  }
  EXPECT_LE(worst, 4.0);
  EXPECT_EQ(qkv::detail::exp_clamped(-std::numeric_limits<T>::infinity()), T(0));
  EXPECT_EQ(qkv::detail::exp_clamped(T(-1e6)), T(0));
  EXPECT_EQ(qkv::detail::exp_clamped(T(0)), T(1));
}

TEST(Threads, SetNumThreadsRejectsNegative) {
  EXPECT_TRUE(qkv::test::ThrowsWith<std::invalid_argument>([] { qkv::set_num_threads(-1); },
                                                           {"qkv::set_num_threads", "-1"}));
}

}  // namespace
