// SPDX-License-Identifier: MIT
// Notebook 003 (../shared/notebooks/003_64c5110f46e13351.txt): six tokens with fixed 3-d
// embeddings, attention without projections, in PyTorch float32. Every number it prints
// is reproduced here with qkv, written as the notebook's Python is, and compared at the
// precision printed (PyTorch's default: 4 decimals).
#include <qkv/attention.hpp>
#include <qkv/ops.hpp>
#include <qkv/softmax.hpp>
#include <qkv/tensor.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <iomanip>
#include <limits>
#include <sstream>
#include <vector>

namespace {

using qkv::Index;
using qkv::Tensor;

// |computed - expected| <= tolerance for every element in row-major order (an infinite
// expected value must be matched exactly).
template <class T>
testing::AssertionResult AllNear(const Tensor<T>& computed, const std::vector<double>& expected, double tolerance) {
  if (computed.numel() != static_cast<Index>(expected.size()))
    return testing::AssertionFailure() << "shape " << computed.shape().str() << " holds " << computed.numel()
                                       << " values, expected " << expected.size();
  std::ostringstream failures;
  failures << std::setprecision(17);
  for (Index i = 0; i < computed.numel(); ++i) {
    const double c = static_cast<double>(computed.data()[i]), e = expected[static_cast<std::size_t>(i)];
    const bool near = std::isinf(e) ? c == e : std::abs(c - e) <= tolerance;
    if (!near)
      failures << "\n  element " << i << " of " << computed.shape().str() << ": computed " << c << ", expected " << e
               << ", |difference| " << std::abs(c - e) << " > " << tolerance;
  }
  if (failures.str().empty()) return testing::AssertionSuccess();
  return testing::AssertionFailure() << failures.str();
}

// The notebook printed its (float32) value rounded to `decimals` places, so that value
// lies within half a unit of the last printed digit; `error` bounds how far our
// computation may lie from the notebook's value.
template <class T>
testing::AssertionResult PrintsAs(const Tensor<T>& computed, const std::vector<double>& printed, int decimals,
                                  double error) {
  return AllNear(computed, printed, 0.5 * std::pow(10.0, -decimals) + error);
}
testing::AssertionResult PrintsAs(double computed, double printed, int decimals, double error) {
  return AllNear(Tensor<double>::scalar(computed), {printed}, 0.5 * std::pow(10.0, -decimals) + error);
}

// PyTorch computed these values in float32 as we do (u = 2^-24), but rounds differently:
// its vectorised sums add in another order, maybe with FMA, and its exp (Sleef) is not
// glibc's. Bounding each side's error and adding the two:
// - a score, three positive products summing to <= 1.5, is within 3u of itself on
//   either side, so the two differ by <= 2 * 3u * 1.5 = 9u;
// - a softmax weight: its exponent by the score's 4.5u, the subtraction of the row
//   maximum (u * 1.2, the largest spread of a row) and exp's ulp (2u): 7.7u; the
//   normalising sum by as much plus 5u for its five additions; the division u: 21.4u
//   relatively on either side, 42.8u between the two;
// - a context vector sum_i w_i x_i (<= 0.66) then by (42.8u + 2 * 6u) * 0.66 = 2.2e-6,
//   the products and sums rounding by 6u on either side. The largest of these.
// So our value lies within 2.5e-6 of PyTorch's; this matters only for a value that close
// to a rounding boundary.
constexpr double kFloatError = 2.5e-6;

// The float sum of six weights w_i = a_i / sum_j a_j (a is exp(scores) for the softmax,
// the scores for In [4]'s weights): given the rounded a_i, the exact quotients sum to 1,
// so only the normalising sum (five additions of positive terms, <= 5u relatively) and
// the division (u) move them, by 6u relatively, 6u in all; our own five additions of
// partial sums below 1 add 5u more. 11u, plus second-order terms: 12u = 7.2e-7.
constexpr double kSumOfWeightsError = 12 * std::numeric_limits<float>::epsilon() / 2;

// In [2]: the embedded sentence "Your journey starts with one step".
Tensor<float> Inputs() {
  return {{0.43f, 0.15f, 0.89f},   // Your    (x^1)
          {0.55f, 0.87f, 0.66f},   // journey (x^2)
          {0.57f, 0.85f, 0.64f},   // starts  (x^3)
          {0.22f, 0.58f, 0.33f},   // with    (x^4)
          {0.77f, 0.25f, 0.10f},   // one     (x^5)
          {0.05f, 0.80f, 0.55f}};  // step    (x^6)
}

// query = inputs[1]; attn_scores_2[i] = torch.dot(x_i, query).
Tensor<float> AttnScores2(Tensor<float>& inputs) {
  const auto query = inputs[1];
  Tensor<float> attn_scores_2(qkv::Shape{inputs.size(0)});
  for (Index i = 0; i < inputs.size(0); ++i) attn_scores_2(i) = qkv::dot(inputs[i], query);
  return attn_scores_2;
}

TEST(Notebook003, InputsShape) {
  // In [6]: inputs.shape -> torch.Size([6, 3])
  EXPECT_EQ(Inputs().shape().str(), "[6,3]");
}

TEST(Notebook003, AttentionScoresOfTokenTwo) {
  Tensor<float> inputs = Inputs();
  const Tensor<float> attn_scores_2 = AttnScores2(inputs);
  EXPECT_EQ(attn_scores_2.shape().str(), "[6]");
  EXPECT_TRUE(PrintsAs(attn_scores_2, {0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865}, 4, kFloatError));
}

TEST(Notebook003, SumNormalisedWeightsAndTheirSum) {
  Tensor<float> inputs = Inputs();
  const Tensor<float> attn_scores_2 = AttnScores2(inputs);
  // In [4]: attn_weights_2_tmp = attn_scores_2 / attn_scores_2.sum()
  const Tensor<float> attn_weights_2_tmp = attn_scores_2 / qkv::sum(attn_scores_2);
  EXPECT_TRUE(PrintsAs(attn_weights_2_tmp, {0.1455, 0.2278, 0.2249, 0.1285, 0.1077, 0.1656}, 4, kFloatError));
  // "Sum:  tensor(1.0000)": PyTorch's float sum was not exactly 1 (it printed 4 decimals).
  EXPECT_TRUE(PrintsAs(qkv::sum(attn_weights_2_tmp), 1.0000, 4, kFloatError));
  EXPECT_NEAR(qkv::sum(attn_weights_2_tmp), 1.0, kSumOfWeightsError);
}

TEST(Notebook003, SoftmaxWeightsAndTheirSum) {
  Tensor<float> inputs = Inputs();
  // In [5]: attn_weights_2 = torch.softmax(attn_scores_2, dim = 0)
  const Tensor<float> attn_weights_2 = qkv::softmax(AttnScores2(inputs), 0);
  EXPECT_TRUE(PrintsAs(attn_weights_2, {0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581}, 4, kFloatError));
  // "Sum: tensor(1.)": PyTorch's float sum was exactly 1; ours, summed in another order,
  // is 1 to within the rounding of six float weights and their sum.
  EXPECT_NEAR(qkv::sum(attn_weights_2), 1.0, kSumOfWeightsError);
}

TEST(Notebook003, ContextVectorLoopPrintsEachRunningSumAndTerm) {
  Tensor<float> inputs = Inputs();
  Tensor<float> attn_weights_2 = qkv::softmax(AttnScores2(inputs), 0);
  const auto query = inputs[1];
  // In [7]: each line prints context_vec_2 before the += and res.
  const std::vector<std::vector<double>> printed_context = {
      {0., 0., 0.},
      {0.0596, 0.0208, 0.1233},
      {0.1904, 0.2277, 0.2803},
      {0.3234, 0.4260, 0.4296},
      {0.3507, 0.4979, 0.4705},
      {0.4340, 0.5250, 0.4813}};
  const std::vector<std::vector<double>> printed_res = {
      {0.0596, 0.0208, 0.1233},
      {0.1308, 0.2070, 0.1570},
      {0.1330, 0.1983, 0.1493},
      {0.0273, 0.0719, 0.0409},
      {0.0833, 0.0270, 0.0108},
      {0.0079, 0.1265, 0.0870}};
  Tensor<float> context_vec_2 = Tensor<float>::zeros(query.shape());
  EXPECT_TRUE(AllNear(context_vec_2, printed_context[0], 0.0)) << "tensor([0., 0., 0.]) is exact";
  for (Index i = 0; i < inputs.size(0); ++i) {
    const Tensor<float> res = inputs[i] * attn_weights_2[i];
    const auto line = static_cast<std::size_t>(i);
    EXPECT_TRUE(PrintsAs(context_vec_2, printed_context[line], 4, kFloatError)) << "context_vec_2, line " << i;
    EXPECT_TRUE(PrintsAs(res, printed_res[line], 4, kFloatError)) << "res, line " << i;
    context_vec_2 += res;
  }
  // In [8]: context_vec_2
  EXPECT_TRUE(PrintsAs(context_vec_2, {0.4419, 0.6515, 0.5683}, 4, kFloatError));
}

// In [10]: attn_scores (printed), and In [12] / In [13]: its softmax along dim=-1 and dim=1.
const std::vector<double> kAttnScores = {
    0.9995, 0.9544, 0.9422, 0.4753, 0.4576, 0.6310,
    0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865,
    0.9422, 1.4754, 1.4570, 0.8296, 0.7154, 1.0605,
    0.4753, 0.8434, 0.8296, 0.4937, 0.3474, 0.6565,
    0.4576, 0.7070, 0.7154, 0.3474, 0.6654, 0.2935,
    0.6310, 1.0865, 1.0605, 0.6565, 0.2935, 0.9450};
const std::vector<double> kAttnWeights = {
    0.2098, 0.2006, 0.1981, 0.1242, 0.1220, 0.1452,
    0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581,
    0.1390, 0.2369, 0.2326, 0.1242, 0.1108, 0.1565,
    0.1435, 0.2074, 0.2046, 0.1462, 0.1263, 0.1720,
    0.1526, 0.1958, 0.1975, 0.1367, 0.1879, 0.1295,
    0.1385, 0.2184, 0.2128, 0.1420, 0.0988, 0.1896};
// In [15]: all_context_vectorss = attn_weights @ inputs
const std::vector<double> kAllContextVectors = {
    0.4421, 0.5931, 0.5790,
    0.4419, 0.6515, 0.5683,
    0.4431, 0.6496, 0.5671,
    0.4304, 0.6298, 0.5510,
    0.4671, 0.5910, 0.5266,
    0.4177, 0.6503, 0.5645};

TEST(Notebook003, AllAttentionScores) {
  const Tensor<float> inputs = Inputs();
  // In [9]: attn_scores = torch.matmul(inputs, inputs.T)
  const Tensor<float> attn_scores = qkv::matmul(inputs, qkv::transpose(inputs));
  EXPECT_EQ(attn_scores.shape().str(), "[6,6]");
  EXPECT_TRUE(PrintsAs(attn_scores, kAttnScores, 4, kFloatError));
}

TEST(Notebook003, AttentionWeightsAlongLastDimAndDimOne) {
  const Tensor<float> inputs = Inputs();
  const Tensor<float> attn_scores = qkv::matmul(inputs, qkv::transpose(inputs));
  // In [11]: torch.softmax(attn_scores, dim = -1); In [13]: check = torch.softmax(attn_scores, dim =1)
  const Tensor<float> attn_weights = qkv::softmax(attn_scores, -1);
  const Tensor<float> check = qkv::softmax(attn_scores, 1);
  EXPECT_TRUE(PrintsAs(attn_weights, kAttnWeights, 4, kFloatError));
  EXPECT_TRUE(PrintsAs(check, kAttnWeights, 4, kFloatError));
  EXPECT_TRUE(qkv::equal(attn_weights, check)) << "dim=1 is dim=-1 for a matrix";
  // In [5]'s softmax of the scores of token 2 is row 2 of these weights.
  EXPECT_TRUE(PrintsAs(Tensor<float>(attn_weights[1]), {0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581}, 4,
                       kFloatError));
}

TEST(Notebook003, RowSums) {
  // In [14]: row_2_sum = sum([0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581]) prints 1.0,
  // Python's repr of a double, so its left-to-right sum is exactly 1. Ours may add in
  // another order: five additions of doubles below 1 round by at most 5 * 2^-53 in all,
  // and the literals themselves differ from their decimals by 6 * 2^-56 at most: 1e-15.
  const Tensor<double> printed_row_2 = {0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581};
  EXPECT_NEAR(qkv::sum(printed_row_2), 1.0, 1e-15);

  // "All row sums: tensor([1.0000, ...])": at least one float row sum was not exactly 1.
  const Tensor<float> inputs = Inputs();
  const Tensor<float> attn_weights = qkv::softmax(qkv::matmul(inputs, qkv::transpose(inputs)), -1);
  const Tensor<float> row_sums = qkv::sum(attn_weights, -1);
  EXPECT_EQ(row_sums.shape().str(), "[6]");
  EXPECT_TRUE(PrintsAs(row_sums, {1.0000, 1.0000, 1.0000, 1.0000, 1.0000, 1.0000}, 4, kFloatError));
  EXPECT_TRUE(AllNear(row_sums, std::vector<double>(6, 1.0), kSumOfWeightsError));
}

TEST(Notebook003, AllContextVectors) {
  const Tensor<float> inputs = Inputs();
  const Tensor<float> attn_weights = qkv::softmax(qkv::matmul(inputs, qkv::transpose(inputs)), -1);
  const Tensor<float> all_context_vectors = qkv::matmul(attn_weights, inputs);
  EXPECT_EQ(all_context_vectors.shape().str(), "[6,3]");
  EXPECT_TRUE(PrintsAs(all_context_vectors, kAllContextVectors, 4, kFloatError));
  // Row 2 is In [8]'s context_vec_2.
  EXPECT_TRUE(PrintsAs(Tensor<float>(all_context_vectors[1]), {0.4419, 0.6515, 0.5683}, 4, kFloatError));
}

TEST(Notebook003, ScaledDotProductAttentionWithScaleOneGivesAllContextVectors) {
  // The notebook's attention is softmax(x xᵀ) x: scaled_dot_product_attention with the
  // inputs as query, key and value, and no 1/sqrt(3) scaling.
  const Tensor<float> inputs = Inputs();
  qkv::AttentionOptions<float> options;
  options.scale = 1.0;
  const auto result = qkv::scaled_dot_product_attention_with_weights(inputs, inputs, inputs, options);
  EXPECT_TRUE(PrintsAs(result.output, kAllContextVectors, 4, kFloatError));
  EXPECT_TRUE(PrintsAs(result.weights, kAttnWeights, 4, kFloatError));
  EXPECT_TRUE(PrintsAs(qkv::scaled_dot_product_attention(inputs, inputs, inputs, options), kAllContextVectors, 4,
                       kFloatError));
}

}  // namespace
