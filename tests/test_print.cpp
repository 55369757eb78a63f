// SPDX-License-Identifier: MIT
// Tests for qkv/print.hpp. Every expected string is the output of real PyTorch 1.13 or
// NumPy 1.24 for the same values, printed by tests/data/make_print_cases.py (the bfloat16
// and float16 cases, with their inputs as bit patterns, in tests/data/print_half_cases.inc).
#include <qkv/print.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "test_util.hpp"

namespace {

using qkv::Index;
using qkv::Shape;
using qkv::Tensor;
using qkv::TensorView;

// 0, 1, 2, ... laid out in `shape` and divided by `divisor` in T, as
// torch.arange(n).reshape(shape) / divisor in the tensor's dtype.
template <class T>
Tensor<T> arange(const Shape& shape, T divisor = T(1)) {
  Tensor<T> t(shape);
  for (Index i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(i) / divisor;
  return t;
}

constexpr float inf = std::numeric_limits<float>::infinity();
constexpr float nan = std::numeric_limits<float>::quiet_NaN();

// ---------------------------------------------------------------------------------------
// torch_repr

TEST(TorchRepr, NotebookVector) {
  const Tensor<float> t = {0.9544f, 1.4950f, 1.4754f, 0.8434f, 0.7070f, 1.0865f};
  EXPECT_EQ(qkv::torch_repr(t),
            R"(tensor([0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865]))");
}

TEST(TorchRepr, AttentionScores6x6) {
  // inputs @ inputs.T for the notebook's six 3-d token embeddings; row 1 is the vector above.
  const Tensor<float> scores = {
      {0.9994999f, 0.95440006f, 0.9422f, 0.4753f, 0.4576f, 0.63100004f},
      {0.95440006f, 1.4950001f, 1.4754001f, 0.8434f, 0.707f, 1.0865f},
      {0.9422f, 1.4754001f, 1.457f, 0.8296f, 0.7154f, 1.0605f},
      {0.4753f, 0.8434f, 0.8296f, 0.49369997f, 0.34739998f, 0.6565f},
      {0.4576f, 0.707f, 0.7154f, 0.34739998f, 0.66539997f, 0.2935f},
      {0.63100004f, 1.0865f, 1.0605f, 0.6565f, 0.2935f, 0.94500005f}};
  EXPECT_EQ(qkv::torch_repr(scores),
            R"(tensor([[0.9995, 0.9544, 0.9422, 0.4753, 0.4576, 0.6310],
        [0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865],
        [0.9422, 1.4754, 1.4570, 0.8296, 0.7154, 1.0605],
        [0.4753, 0.8434, 0.8296, 0.4937, 0.3474, 0.6565],
        [0.4576, 0.7070, 0.7154, 0.3474, 0.6654, 0.2935],
        [0.6310, 1.0865, 1.0605, 0.6565, 0.2935, 0.9450]]))");
  EXPECT_EQ(qkv::torch_repr(scores[1]),
            R"(tensor([0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865]))");
}

TEST(TorchRepr, AttentionWeights6x6) {
  // softmax(scores, dim=-1) of the scores above.
  const Tensor<float> weights = {
      {0.20983472f, 0.20058145f, 0.1981492f, 0.12422821f, 0.12204872f, 0.14515764f},
      {0.13854757f, 0.2378913f, 0.23327403f, 0.123991586f, 0.108181864f, 0.15811361f},
      {0.1390076f, 0.23692146f, 0.23260196f, 0.124204405f, 0.11080021f, 0.15646443f},
      {0.14352688f, 0.20739442f, 0.20455202f, 0.14619222f, 0.12629525f, 0.1720392f},
      {0.15261085f, 0.19583867f, 0.19749065f, 0.13668668f, 0.18785891f, 0.12951429f},
      {0.13847117f, 0.21836372f, 0.21275944f, 0.14204757f, 0.098806374f, 0.18955176f}};
  EXPECT_EQ(qkv::torch_repr(weights),
            R"(tensor([[0.2098, 0.2006, 0.1981, 0.1242, 0.1220, 0.1452],
        [0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581],
        [0.1390, 0.2369, 0.2326, 0.1242, 0.1108, 0.1565],
        [0.1435, 0.2074, 0.2046, 0.1462, 0.1263, 0.1720],
        [0.1526, 0.1958, 0.1975, 0.1367, 0.1879, 0.1295],
        [0.1385, 0.2184, 0.2128, 0.1420, 0.0988, 0.1896]]))");
}

TEST(TorchRepr, IntegralValuesPrintWithATrailingPoint) {
  EXPECT_EQ(qkv::torch_repr(Tensor<float>::zeros({3})),
            R"(tensor([0., 0., 0.]))");
  EXPECT_EQ(qkv::torch_repr(arange<float>({30})),
            R"(tensor([ 0.,  1.,  2.,  3.,  4.,  5.,  6.,  7.,  8.,  9., 10., 11., 12., 13.,
        14., 15., 16., 17., 18., 19., 20., 21., 22., 23., 24., 25., 26., 27.,
        28., 29.]))");
}

TEST(TorchRepr, Scalars) {
  EXPECT_EQ(qkv::torch_repr(Tensor<float>::scalar(0.99999994f)),
            R"(tensor(1.0000))");
  EXPECT_EQ(qkv::torch_repr(Tensor<float>::scalar(1.0f)),
            R"(tensor(1.))");
  EXPECT_EQ(qkv::torch_repr(Tensor<std::int64_t>::scalar(42)),
            R"(tensor(42))");
}

TEST(TorchRepr, NegativeValuesArePaddedToOneWidth) {
  const Tensor<float> t = {{-0.1467951f, 0.7861413f, 0.94682163f, -1.114344f},
                           {1.6907902f, -0.8948279f, -0.35562503f, 1.2323858f},
                           {0.13817266f, -1.6821985f, 0.3176783f, 0.13280697f}};
  EXPECT_EQ(qkv::torch_repr(t),
            R"(tensor([[-0.1468,  0.7861,  0.9468, -1.1143],
        [ 1.6908, -0.8948, -0.3556,  1.2324],
        [ 0.1382, -1.6822,  0.3177,  0.1328]]))");
}

TEST(TorchRepr, ScientificNotation) {
  EXPECT_EQ(qkv::torch_repr(Tensor<float>{1e-5f, 0.5f, 2.0f}),
            R"(tensor([1.0000e-05, 5.0000e-01, 2.0000e+00]))");
  EXPECT_EQ(qkv::torch_repr(Tensor<float>{1.5e9f, -2.25f}),
            R"(tensor([ 1.5000e+09, -2.2500e+00]))");
  // Integral values spanning more than 1000x leave int mode for scientific notation too.
  EXPECT_EQ(qkv::torch_repr(Tensor<float>{1.0f, 1e5f}),
            R"(tensor([1.0000e+00, 1.0000e+05]))");
}

TEST(TorchRepr, LongRowWraps) {
  const Tensor<float> t = {
      -0.8489086f, -1.2169294f, -0.081021585f, 1.3614851f, -1.3032167f, 0.08747838f,
      -1.3849614f, 0.5035639f, -0.8667016f, -0.5640067f, -2.0564625f, -0.35672253f,
      1.0955805f, 0.48235416f, -0.3089963f, 0.9342882f, -0.38211593f, -1.1668941f,
      0.36357585f, -0.3156411f, -0.53207886f, 0.29914185f, -0.35526603f, 0.75419253f,
      0.6901244f, -0.14426184f, 1.6120467f, 1.5671238f, -0.93883914f, -1.2369686f};
  EXPECT_EQ(qkv::torch_repr(t),
            R"(tensor([-0.8489, -1.2169, -0.0810,  1.3615, -1.3032,  0.0875, -1.3850,  0.5036,
        -0.8667, -0.5640, -2.0565, -0.3567,  1.0956,  0.4824, -0.3090,  0.9343,
        -0.3821, -1.1669,  0.3636, -0.3156, -0.5321,  0.2991, -0.3553,  0.7542,
         0.6901, -0.1443,  1.6120,  1.5671, -0.9388, -1.2370]))");
}

TEST(TorchRepr, Rank3BlocksAreSeparatedByABlankLine) {
  const Tensor<float> t = {{{-0.58238864f, -0.6153447f, 1.5496191f, 0.5989f},
                            {-0.6376678f, -2.2858188f, -0.36766416f, -0.882181f},
                            {0.14159851f, -0.545823f, -0.53682244f, 0.82888263f}},
                           {{1.0570698f, -1.1046938f, 0.12744354f, -0.018942945f},
                            {0.26587373f, -0.19068138f, 0.38363746f, 1.9125689f},
                            {-1.2145036f, 1.771138f, 0.50707644f, -0.1575864f}}};
  EXPECT_EQ(qkv::torch_repr(t),
            R"(tensor([[[-0.5824, -0.6153,  1.5496,  0.5989],
         [-0.6377, -2.2858, -0.3677, -0.8822],
         [ 0.1416, -0.5458, -0.5368,  0.8289]],

        [[ 1.0571, -1.1047,  0.1274, -0.0189],
         [ 0.2659, -0.1907,  0.3836,  1.9126],
         [-1.2145,  1.7711,  0.5071, -0.1576]]]))");
}

TEST(TorchRepr, SummarizesAbove1000Elements) {
  EXPECT_EQ(qkv::torch_repr(arange<float>({40, 50}, 7.0f)),
            R"(tensor([[0.0000e+00, 1.4286e-01, 2.8571e-01,  ..., 6.7143e+00, 6.8571e+00,
         7.0000e+00],
        [7.1429e+00, 7.2857e+00, 7.4286e+00,  ..., 1.3857e+01, 1.4000e+01,
         1.4143e+01],
        [1.4286e+01, 1.4429e+01, 1.4571e+01,  ..., 2.1000e+01, 2.1143e+01,
         2.1286e+01],
        ...,
        [2.6429e+02, 2.6443e+02, 2.6457e+02,  ..., 2.7100e+02, 2.7114e+02,
         2.7129e+02],
        [2.7143e+02, 2.7157e+02, 2.7171e+02,  ..., 2.7814e+02, 2.7829e+02,
         2.7843e+02],
        [2.7857e+02, 2.7871e+02, 2.7886e+02,  ..., 2.8529e+02, 2.8543e+02,
         2.8557e+02]]))");
  EXPECT_EQ(qkv::torch_repr(arange<std::int64_t>({2000})),
            R"(tensor([   0,    1,    2,  ..., 1997, 1998, 1999]))");
}

TEST(TorchRepr, SummarizesEveryDimensionOfARank3Tensor) {
  EXPECT_EQ(qkv::torch_repr(arange<float>({10, 10, 20})),
            R"(tensor([[[0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.7000e+01,
          1.8000e+01, 1.9000e+01],
         [2.0000e+01, 2.1000e+01, 2.2000e+01,  ..., 3.7000e+01,
          3.8000e+01, 3.9000e+01],
         [4.0000e+01, 4.1000e+01, 4.2000e+01,  ..., 5.7000e+01,
          5.8000e+01, 5.9000e+01],
         ...,
         [1.4000e+02, 1.4100e+02, 1.4200e+02,  ..., 1.5700e+02,
          1.5800e+02, 1.5900e+02],
         [1.6000e+02, 1.6100e+02, 1.6200e+02,  ..., 1.7700e+02,
          1.7800e+02, 1.7900e+02],
         [1.8000e+02, 1.8100e+02, 1.8200e+02,  ..., 1.9700e+02,
          1.9800e+02, 1.9900e+02]],

        [[2.0000e+02, 2.0100e+02, 2.0200e+02,  ..., 2.1700e+02,
          2.1800e+02, 2.1900e+02],
         [2.2000e+02, 2.2100e+02, 2.2200e+02,  ..., 2.3700e+02,
          2.3800e+02, 2.3900e+02],
         [2.4000e+02, 2.4100e+02, 2.4200e+02,  ..., 2.5700e+02,
          2.5800e+02, 2.5900e+02],
         ...,
         [3.4000e+02, 3.4100e+02, 3.4200e+02,  ..., 3.5700e+02,
          3.5800e+02, 3.5900e+02],
         [3.6000e+02, 3.6100e+02, 3.6200e+02,  ..., 3.7700e+02,
          3.7800e+02, 3.7900e+02],
         [3.8000e+02, 3.8100e+02, 3.8200e+02,  ..., 3.9700e+02,
          3.9800e+02, 3.9900e+02]],

        [[4.0000e+02, 4.0100e+02, 4.0200e+02,  ..., 4.1700e+02,
          4.1800e+02, 4.1900e+02],
         [4.2000e+02, 4.2100e+02, 4.2200e+02,  ..., 4.3700e+02,
          4.3800e+02, 4.3900e+02],
         [4.4000e+02, 4.4100e+02, 4.4200e+02,  ..., 4.5700e+02,
          4.5800e+02, 4.5900e+02],
         ...,
         [5.4000e+02, 5.4100e+02, 5.4200e+02,  ..., 5.5700e+02,
          5.5800e+02, 5.5900e+02],
         [5.6000e+02, 5.6100e+02, 5.6200e+02,  ..., 5.7700e+02,
          5.7800e+02, 5.7900e+02],
         [5.8000e+02, 5.8100e+02, 5.8200e+02,  ..., 5.9700e+02,
          5.9800e+02, 5.9900e+02]],

        ...,

        [[1.4000e+03, 1.4010e+03, 1.4020e+03,  ..., 1.4170e+03,
          1.4180e+03, 1.4190e+03],
         [1.4200e+03, 1.4210e+03, 1.4220e+03,  ..., 1.4370e+03,
          1.4380e+03, 1.4390e+03],
         [1.4400e+03, 1.4410e+03, 1.4420e+03,  ..., 1.4570e+03,
          1.4580e+03, 1.4590e+03],
         ...,
         [1.5400e+03, 1.5410e+03, 1.5420e+03,  ..., 1.5570e+03,
          1.5580e+03, 1.5590e+03],
         [1.5600e+03, 1.5610e+03, 1.5620e+03,  ..., 1.5770e+03,
          1.5780e+03, 1.5790e+03],
         [1.5800e+03, 1.5810e+03, 1.5820e+03,  ..., 1.5970e+03,
          1.5980e+03, 1.5990e+03]],

        [[1.6000e+03, 1.6010e+03, 1.6020e+03,  ..., 1.6170e+03,
          1.6180e+03, 1.6190e+03],
         [1.6200e+03, 1.6210e+03, 1.6220e+03,  ..., 1.6370e+03,
          1.6380e+03, 1.6390e+03],
         [1.6400e+03, 1.6410e+03, 1.6420e+03,  ..., 1.6570e+03,
          1.6580e+03, 1.6590e+03],
         ...,
         [1.7400e+03, 1.7410e+03, 1.7420e+03,  ..., 1.7570e+03,
          1.7580e+03, 1.7590e+03],
         [1.7600e+03, 1.7610e+03, 1.7620e+03,  ..., 1.7770e+03,
          1.7780e+03, 1.7790e+03],
         [1.7800e+03, 1.7810e+03, 1.7820e+03,  ..., 1.7970e+03,
          1.7980e+03, 1.7990e+03]],

        [[1.8000e+03, 1.8010e+03, 1.8020e+03,  ..., 1.8170e+03,
          1.8180e+03, 1.8190e+03],
         [1.8200e+03, 1.8210e+03, 1.8220e+03,  ..., 1.8370e+03,
          1.8380e+03, 1.8390e+03],
         [1.8400e+03, 1.8410e+03, 1.8420e+03,  ..., 1.8570e+03,
          1.8580e+03, 1.8590e+03],
         ...,
         [1.9400e+03, 1.9410e+03, 1.9420e+03,  ..., 1.9570e+03,
          1.9580e+03, 1.9590e+03],
         [1.9600e+03, 1.9610e+03, 1.9620e+03,  ..., 1.9770e+03,
          1.9780e+03, 1.9790e+03],
         [1.9800e+03, 1.9810e+03, 1.9820e+03,  ..., 1.9970e+03,
          1.9980e+03, 1.9990e+03]]]))");
}

TEST(TorchRepr, DoubleNamesItsDtype) {
  EXPECT_EQ(qkv::torch_repr(Tensor<double>{1.5, 2.25}),
            R"(tensor([1.5000, 2.2500], dtype=torch.float64))");
  // The suffix moves to its own line when it would pass 80 columns.
  const Tensor<double> t = {2.1858555524440875,  -1.1617655201794896, 1.0590674601293206,
                            -1.6755386389138607, -0.1503927491012518, -1.7853831273346703,
                            -1.416360722952363,  -1.135737265529853};
  EXPECT_EQ(qkv::torch_repr(t),
            R"(tensor([ 2.1859, -1.1618,  1.0591, -1.6755, -0.1504, -1.7854, -1.4164, -1.1357],
       dtype=torch.float64))");
}

TEST(TorchRepr, Bool) {
  EXPECT_EQ(qkv::torch_repr(Tensor<bool>{true, false}),
            R"(tensor([ True, False]))");
  EXPECT_EQ(qkv::torch_repr(Tensor<bool>{{true, true}, {false, true}}),
            R"(tensor([[ True,  True],
        [False,  True]]))");
}

TEST(TorchRepr, NonFiniteValues) {
  EXPECT_EQ(qkv::torch_repr(Tensor<float>{1.5f, inf, -inf, nan}),
            R"(tensor([1.5000,    inf,   -inf,    nan]))");
  EXPECT_EQ(qkv::torch_repr(Tensor<float>{1.0f, inf, nan}),
            R"(tensor([1., inf, nan]))");
  EXPECT_EQ(qkv::torch_repr(Tensor<float>{nan, nan}),
            R"(tensor([nan, nan]))");
}

TEST(TorchRepr, Empty) {
  EXPECT_EQ(qkv::torch_repr(Tensor<float>()),
            R"(tensor([]))");
  EXPECT_EQ(qkv::torch_repr(Tensor<float>::zeros({2, 0})),
            R"(tensor([], size=(2, 0)))");
  EXPECT_EQ(qkv::torch_repr(Tensor<double>::zeros({0})),
            R"(tensor([], dtype=torch.float64))");
}

TEST(TorchRepr, Integers) {
  EXPECT_EQ(qkv::torch_repr(Tensor<std::int64_t>{{1, -20}, {300, 4}}),
            R"(tensor([[  1, -20],
        [300,   4]]))");
  EXPECT_EQ(qkv::torch_repr(Tensor<std::int32_t>{{1, -20}, {300, 4}}),
            R"(tensor([[  1, -20],
        [300,   4]], dtype=torch.int32))");
  EXPECT_EQ(qkv::torch_repr(Tensor<std::uint8_t>{0, 7, 255}),
            R"(tensor([  0,   7, 255], dtype=torch.uint8))");
}

TEST(TorchRepr, StridedView) {
  Tensor<float> m = {{0.1f, 0.2f, 0.3f}, {0.4f, 0.5f, 0.6f}};
  const std::string expected = R"(tensor([[0.1000, 0.4000],
        [0.2000, 0.5000],
        [0.3000, 0.6000]]))";
  EXPECT_EQ(qkv::torch_repr(m.view().transpose(0, 1)), expected);
  EXPECT_EQ(qkv::torch_repr(std::as_const(m).view().transpose(0, 1)), expected);
}

TEST(TorchRepr, StreamOperator) {
  Tensor<float> t = {0.9544f, 1.4950f, 1.4754f, 0.8434f, 0.7070f, 1.0865f};
  std::ostringstream tensor_out, view_out;
  tensor_out << t;
  view_out << t.view();
  EXPECT_EQ(tensor_out.str(), qkv::torch_repr(t));
  EXPECT_EQ(view_out.str(), qkv::torch_repr(t));
}

// ---------------------------------------------------------------------------------------
// numpy_repr and numpy_str

const Tensor<double>& notebook_array() {
  static const Tensor<double> a = {{1.64020774, -2.18397742, -0.18962513, 0.31165462},
                                   {3.31990305, -2.97388912, -0.33052934, -1.45691831},
                                   {-0.68953308, 0.84267554, 0.41194343, -1.13147334},
                                   {-3.68400046, 3.9732582, 0.77784592, -0.57205458}};
  return a;
}

TEST(NumpyRepr, NotebookMatrix) {
  EXPECT_EQ(qkv::numpy_repr(notebook_array()),
            R"(array([[ 1.64020774, -2.18397742, -0.18962513,  0.31165462],
       [ 3.31990305, -2.97388912, -0.33052934, -1.45691831],
       [-0.68953308,  0.84267554,  0.41194343, -1.13147334],
       [-3.68400046,  3.9732582 ,  0.77784592, -0.57205458]]))");
}

TEST(NumpyStr, NotebookMatrix) {
  EXPECT_EQ(qkv::numpy_str(notebook_array()),
            R"([[ 1.64020774 -2.18397742 -0.18962513  0.31165462]
 [ 3.31990305 -2.97388912 -0.33052934 -1.45691831]
 [-0.68953308  0.84267554  0.41194343 -1.13147334]
 [-3.68400046  3.9732582   0.77784592 -0.57205458]])");
}

TEST(NumpyRepr, MagnitudesWithin1000xStayPositional) {
  const Tensor<double> a = {{5.33206782e-02, 1.16432213e-03}, {2.86007927e-01, 5.28468200e-04}};
  EXPECT_EQ(qkv::numpy_repr(a),
            R"(array([[0.05332068, 0.00116432],
       [0.28600793, 0.00052847]]))");
}

TEST(NumpyRepr, ExponentialNotation) {
  const Tensor<double> a = {{5.33206782e-02, 1.16432213e-03}, {6.86007927e-01, 5.28468200e-04}};
  EXPECT_EQ(qkv::numpy_repr(a),
            R"(array([[5.33206782e-02, 1.16432213e-03],
       [6.86007927e-01, 5.28468200e-04]]))");
  EXPECT_EQ(qkv::numpy_str(a),
            R"([[5.33206782e-02 1.16432213e-03]
 [6.86007927e-01 5.28468200e-04]])");
  EXPECT_EQ(qkv::numpy_repr(Tensor<double>{1e-5, 0.5, 2.0}),
            R"(array([1.e-05, 5.e-01, 2.e+00]))");
  EXPECT_EQ(qkv::numpy_repr(Tensor<double>{1.5e9, -2.25}),
            R"(array([ 1.50e+09, -2.25e+00]))");
}

TEST(NumpyRepr, RowsWrapAt75Columns) {
  const Tensor<double> a = {
      {0.345584192064786, 0.8216181435011584, 0.33043707618338714, -1.303157231604361,
       0.9053558666731177, 0.4463745723640113, -0.5369532353602852, 0.5811181041963531},
      {0.36457239618607573, 0.294132496655526, 0.02842224131579679, 0.5467129866124469,
       -0.7364540870016669, -0.16290994799305278, -0.48211931267997826, 0.5988462126346276},
      {0.03972210748165899, -0.2924567509650886, -0.7819084623568421, -0.2571922406188707,
       0.008142180518343508, -0.2756029052993704, 1.2940638143982073, 1.0067243153057943},
      {-2.7111624789659685, -1.8890132459676727, -0.17477209205516195, -0.42219041157635356,
       0.2136429974986111, 0.21732193102256359, 2.1178387550510482, -1.1120207626922813}};
  EXPECT_EQ(qkv::numpy_repr(a),
            R"(array([[ 0.34558419,  0.82161814,  0.33043708, -1.30315723,  0.90535587,
         0.44637457, -0.53695324,  0.5811181 ],
       [ 0.3645724 ,  0.2941325 ,  0.02842224,  0.54671299, -0.73645409,
        -0.16290995, -0.48211931,  0.59884621],
       [ 0.03972211, -0.29245675, -0.78190846, -0.25719224,  0.00814218,
        -0.27560291,  1.29406381,  1.00672432],
       [-2.71116248, -1.88901325, -0.17477209, -0.42219041,  0.213643  ,
         0.21732193,  2.11783876, -1.11202076]]))");
  EXPECT_EQ(qkv::numpy_str(a),
            R"([[ 0.34558419  0.82161814  0.33043708 -1.30315723  0.90535587  0.44637457
  -0.53695324  0.5811181 ]
 [ 0.3645724   0.2941325   0.02842224  0.54671299 -0.73645409 -0.16290995
  -0.48211931  0.59884621]
 [ 0.03972211 -0.29245675 -0.78190846 -0.25719224  0.00814218 -0.27560291
   1.29406381  1.00672432]
 [-2.71116248 -1.88901325 -0.17477209 -0.42219041  0.213643    0.21732193
   2.11783876 -1.11202076]])");
}

TEST(NumpyRepr, FractionsArePaddedOnTheRight) {
  EXPECT_EQ(qkv::numpy_repr(Tensor<double>{0.0120713, 0.12345678, 1.5}),
            R"(array([0.0120713 , 0.12345678, 1.5       ]))");
}

TEST(NumpyRepr, Float32) {
  const Tensor<float> a = {{0.1f, 0.25f}, {1.0f / 3.0f, -2.0f}};
  EXPECT_EQ(qkv::numpy_repr(a),
            R"(array([[ 0.1       ,  0.25      ],
       [ 0.33333334, -2.        ]], dtype=float32))");
  EXPECT_EQ(qkv::numpy_repr(Tensor<float>{1.2345678e-5f, 0.1f}),
            R"(array([1.2345678e-05, 1.0000000e-01], dtype=float32))");
  EXPECT_EQ(qkv::numpy_repr(arange<float>({6}, 7.0f)),
            R"(array([0.        , 0.14285715, 0.2857143 , 0.42857143, 0.5714286 ,
       0.71428573], dtype=float32))");
}

TEST(NumpyRepr, NonFiniteValues) {
  const double dinf = std::numeric_limits<double>::infinity();
  const double dnan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(qkv::numpy_repr(Tensor<double>{1.5, dinf, -dinf, dnan}),
            R"(array([ 1.5,  inf, -inf,  nan]))");
}

TEST(NumpyRepr, Scalars) {
  EXPECT_EQ(qkv::numpy_repr(Tensor<double>::scalar(1.5)),
            R"(array(1.5))");
  EXPECT_EQ(qkv::numpy_str(Tensor<double>::scalar(1.5)),
            R"(1.5)");
  EXPECT_EQ(qkv::numpy_repr(Tensor<float>::scalar(0.1f)),
            R"(array(0.1, dtype=float32))");
  EXPECT_EQ(qkv::numpy_str(Tensor<double>::scalar(1e16)),
            R"(1e+16)");
}

TEST(NumpyRepr, Rank3) {
  EXPECT_EQ(qkv::numpy_repr(arange<double>({2, 3, 4}, 7.0)),
            R"(array([[[0.        , 0.14285714, 0.28571429, 0.42857143],
        [0.57142857, 0.71428571, 0.85714286, 1.        ],
        [1.14285714, 1.28571429, 1.42857143, 1.57142857]],

       [[1.71428571, 1.85714286, 2.        , 2.14285714],
        [2.28571429, 2.42857143, 2.57142857, 2.71428571],
        [2.85714286, 3.        , 3.14285714, 3.28571429]]]))");
  EXPECT_EQ(qkv::numpy_str(arange<double>({2, 3, 4}, 7.0)),
            R"([[[0.         0.14285714 0.28571429 0.42857143]
  [0.57142857 0.71428571 0.85714286 1.        ]
  [1.14285714 1.28571429 1.42857143 1.57142857]]

 [[1.71428571 1.85714286 2.         2.14285714]
  [2.28571429 2.42857143 2.57142857 2.71428571]
  [2.85714286 3.         3.14285714 3.28571429]]])");
}

TEST(NumpyRepr, SummarizesAbove1000Elements) {
  EXPECT_EQ(qkv::numpy_repr(arange<double>({40, 50}, 7.0)),
            R"(array([[0.00000000e+00, 1.42857143e-01, 2.85714286e-01, ...,
        6.71428571e+00, 6.85714286e+00, 7.00000000e+00],
       [7.14285714e+00, 7.28571429e+00, 7.42857143e+00, ...,
        1.38571429e+01, 1.40000000e+01, 1.41428571e+01],
       [1.42857143e+01, 1.44285714e+01, 1.45714286e+01, ...,
        2.10000000e+01, 2.11428571e+01, 2.12857143e+01],
       ...,
       [2.64285714e+02, 2.64428571e+02, 2.64571429e+02, ...,
        2.71000000e+02, 2.71142857e+02, 2.71285714e+02],
       [2.71428571e+02, 2.71571429e+02, 2.71714286e+02, ...,
        2.78142857e+02, 2.78285714e+02, 2.78428571e+02],
       [2.78571429e+02, 2.78714286e+02, 2.78857143e+02, ...,
        2.85285714e+02, 2.85428571e+02, 2.85571429e+02]]))");
}

TEST(NumpyRepr, Empty) {
  EXPECT_EQ(qkv::numpy_repr(Tensor<double>::zeros({0})),
            R"(array([], dtype=float64))");
  EXPECT_EQ(qkv::numpy_repr(Tensor<double>::zeros({2, 0})),
            R"(array([], shape=(2, 0), dtype=float64))");
  EXPECT_EQ(qkv::numpy_str(Tensor<double>::zeros({2, 0})),
            R"([])");
}

TEST(NumpyRepr, AcceptsViews) {
  const TensorView<const double> view = notebook_array().view();
  EXPECT_EQ(qkv::numpy_repr(view), qkv::numpy_repr(notebook_array()));
  EXPECT_EQ(qkv::numpy_str(view), qkv::numpy_str(notebook_array()));
}

// ---------------------------------------------------------------------------------------
// bfloat16 and float16: PyTorch prints them through .float(); NumPy prints float16 with
// its own shortest digits and has no bfloat16.

struct HalfPrintCase {
  const char* name;
  const char* dtype;  // "bfloat16" or "float16"
  std::vector<Index> shape;
  std::vector<std::uint16_t> bits;  // the elements' bit patterns, in C order
  bool transpose;                   // print t.T rather than t
  const char* torch_repr;
  const char* numpy_repr;  // null for bfloat16
  const char* numpy_str;
};

const std::vector<HalfPrintCase>& half_print_cases() {
  static const std::vector<HalfPrintCase> cases = {
#include "data/print_half_cases.inc"
  };
  return cases;
}

// The tensor a case holds, built from its bit patterns: no conversion is involved.
template <class H>
Tensor<H> from_bits(const HalfPrintCase& c) {
  Shape shape;
  for (Index d : c.shape) shape.push_back(d);
  Tensor<H> t(shape);
  EXPECT_EQ(static_cast<std::size_t>(t.numel()), c.bits.size()) << c.name;
  for (Index i = 0; i < t.numel() && static_cast<std::size_t>(i) < c.bits.size(); ++i)
    t.data()[i] = Eigen::numext::bit_cast<H>(c.bits[static_cast<std::size_t>(i)]);
  return t;
}

template <class H>
void check_half_cases(const char* dtype) {
  int checked = 0;
  for (const HalfPrintCase& c : half_print_cases()) {
    if (std::string(c.dtype) != dtype) continue;
    SCOPED_TRACE(std::string(dtype) + " " + c.name);
    const Tensor<H> t = from_bits<H>(c);
    const TensorView<const H> shown = c.transpose ? t.view().transpose(0, 1) : t.view();
    EXPECT_EQ(qkv::torch_repr(shown), c.torch_repr);
    std::ostringstream streamed;
    streamed << shown;
    EXPECT_EQ(streamed.str(), c.torch_repr);
    if (!c.transpose) {
      EXPECT_EQ(qkv::torch_repr(t), c.torch_repr);
    }
    if constexpr (std::is_same_v<H, qkv::half>) {
      ASSERT_NE(c.numpy_repr, nullptr);
      EXPECT_EQ(qkv::numpy_repr(shown), c.numpy_repr);
      EXPECT_EQ(qkv::numpy_str(shown), c.numpy_str);
    }
    ++checked;
  }
  EXPECT_GE(checked, 25) << "cases of " << dtype << " in print_half_cases.inc";
}

TEST(TorchRepr, BFloat16PrintsAsPyTorch) { check_half_cases<qkv::bfloat16>("bfloat16"); }
TEST(TorchRepr, Float16PrintsAsPyTorchAndNumpy) { check_half_cases<qkv::half>("float16"); }

TEST(TorchRepr, HalfTypesNameTheirDtype) {
  // The examples of the issue, built by conversion from float as torch.tensor(...).to(dtype).
  const Tensor<qkv::bfloat16> b = {{qkv::bfloat16(0.1f), qkv::bfloat16(0.2f)}};
  EXPECT_EQ(qkv::torch_repr(b), R"(tensor([[0.1001, 0.2002]], dtype=torch.bfloat16))");
  const Tensor<qkv::half> h = {qkv::half(1.0f), qkv::half(2.0f)};
  EXPECT_EQ(qkv::torch_repr(h), R"(tensor([1., 2.], dtype=torch.float16))");
  EXPECT_EQ(qkv::numpy_repr(h), R"(array([1., 2.], dtype=float16))");
  EXPECT_EQ(qkv::torch_repr(Tensor<qkv::half>::zeros({0})), R"(tensor([], dtype=torch.float16))");
}

TEST(NumpyRepr, RefusesBFloat16) {
  const Tensor<qkv::bfloat16> b = Tensor<qkv::bfloat16>::zeros({2, 3});
  using qkv::test::ThrowsWith;
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>(
      [&] { qkv::numpy_repr(b); },
      {"qkv::numpy_repr: NumPy has no bfloat16 dtype (Tensor<bfloat16> of shape [2,3]); "
       "print qkv::to<float>(x), which holds the same values"}));
  EXPECT_TRUE(ThrowsWith<std::invalid_argument>([&] { qkv::numpy_str(b.view()[1]); },
                                                {"qkv::numpy_str: NumPy has no bfloat16 dtype", "shape [3]"}));
  // The suggested conversion prints as NumPy prints the same values in float32.
  EXPECT_EQ(qkv::numpy_repr(qkv::to<float>(Tensor<qkv::bfloat16>{qkv::bfloat16(0.5f), qkv::bfloat16(-2.0f)})),
            R"(array([ 0.5, -2. ], dtype=float32))");
}

}  // namespace
