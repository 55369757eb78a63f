// SPDX-License-Identifier: MIT
// Tests for qkv::NumpyRandom: the streams must be bit-identical to NumPy's legacy
// generator, so every expected value below is exact and compared with EXPECT_EQ.
#include <qkv/random.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

namespace {

// ---- Expected values: the output of tests/data/make_random_cases.py, pasted verbatim. ----
// NumPy 1.24.2
const std::vector<std::uint32_t> kRawSeed0 = {2357136044u, 2546248239u, 3071714933u, 3626093760u, 2588848963u, 3684848379u};
const std::vector<std::uint32_t> kRawSeed42 = {1608637542u, 3421126067u, 4083286876u, 787846414u, 3143890026u, 3348747335u};
const std::vector<std::uint32_t> kRawSeed5489 = {3499211612u, 581869302u, 3890346734u, 3586334585u, 545404204u, 4161255391u};
const std::vector<std::uint32_t> kRawSeed4294967295 = {419326371u, 479346978u, 3918654476u, 2416749639u, 3388880820u, 2260532800u};
const std::vector<double> kRand5x4Seed0 = {
    0.5488135039273248,
    0.7151893663724195,
    0.6027633760716439,
    0.5448831829968969,
    0.4236547993389047,
    0.6458941130666561,
    0.4375872112626925,
    0.8917730007820798,
    0.9636627605010293,
    0.3834415188257777,
    0.7917250380826646,
    0.5288949197529045,
    0.5680445610939323,
    0.925596638292661,
    0.07103605819788694,
    0.08712929970154071,
    0.02021839744032572,
    0.832619845547938,
    0.7781567509498505,
    0.8700121482468192};
const std::vector<double> kRandn5Seed0 = {
    1.764052345967664,
    0.4001572083672233,
    0.9787379841057392,
    2.240893199201458,
    1.8675579901499675};
const std::vector<double> kRandn3Then4Then1Then7Seed0 = {
    1.764052345967664,
    0.4001572083672233,
    0.9787379841057392,
    2.240893199201458,
    1.8675579901499675,
    -0.977277879876411,
    0.9500884175255894,
    -0.1513572082976979,
    -0.10321885179355784,
    0.41059850193837233,
    0.144043571160878,
    1.454273506962975,
    0.7610377251469934,
    0.12167501649282841,
    0.44386323274542566};
const std::vector<double> kInterleavedSeed0 = {
    1.764052345967664,
    0.4001572083672233,
    0.9787379841057392,
    0.4236547993389047,
    2.240893199201458,
    -0.8427240538292873,
    0.8917730007820798,
    0.9636627605010293,
    0.3834415188257777,
    1.9699244478698945,
    0.144043571160878,
    0.5680445610939323};
const std::vector<double> kRand5Seed42 = {
    0.3745401188473625,
    0.9507143064099162,
    0.7319939418114051,
    0.5986584841970366,
    0.15601864044243652};
const std::vector<double> kRandn5Seed42 = {
    0.4967141530112327,
    -0.13826430117118466,
    0.6476885381006925,
    1.5230298564080254,
    -0.23415337472333597};
const std::vector<double> kRand5Seed4294967295 = {
    0.0976320289940138,
    0.9123828453026218,
    0.78903530185164,
    0.7800035981134678,
    0.01793967398674523};
const std::vector<double> kRandn5Seed4294967295 = {
    0.6484086742306527,
    0.6693235306338161,
    -1.0805437227474493,
    0.2845010447986309,
    0.11388773652167104};
const std::vector<float> kRand4FloatSeed0 = {
    0.5488135f,
    0.71518934f,
    0.60276335f,
    0.5448832f};
const std::vector<float> kRandn5FloatSeed0 = {
    1.7640524f,
    0.4001572f,
    0.978738f,
    2.2408931f,
    1.867558f};
const std::vector<double> kUniformSeed0 = {
    0.7440675196366238,
    1.5759468318620975,
    1.0138168803582195,
    0.7244159149844842,
    0.11827399669452365,
    -0.29178822613331223,
    0.12482557747461498,
    -0.7835460015641595};
const std::vector<double> kTransposedFillSeed0 = {
    0.5488135039273248,
    0.6027633760716439,
    0.4236547993389047,
    0.7151893663724195,
    0.5448831829968969,
    0.6458941130666561};
const std::vector<double> kLongRandnPicksSeed123 = {
    -1.0856306033005612,
    0.9973454465835858,
    0.7520336682672812,
    -1.1114304477623544,
    -0.748827465569452,
    0.22194476771336202,
    0.6998092479479775};
constexpr std::uint64_t kRand100000HashSeed0 = 0x8C0363452A1238F2ull;
constexpr std::uint64_t kRandn100001HashSeed2024 = 0x16711A3ABBFC639Cull;
// ---- End of generated values. ----

template <class T>
std::vector<T> values(const qkv::Tensor<T>& t) {
  return std::vector<T>(t.begin(), t.end());
}

std::vector<double> concat(std::initializer_list<std::vector<double>> parts) {
  std::vector<double> all;
  for (const auto& part : parts) all.insert(all.end(), part.begin(), part.end());
  return all;
}

// The same FNV-1a over IEEE-754 bit patterns as make_random_cases.py.
std::uint64_t fnv1a(const qkv::Tensor<double>& t) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (double v : t) {
    std::uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    for (int i = 0; i < 8; ++i) {
      h ^= (bits >> (8 * i)) & 0xFF;
      h *= 0x100000001B3ull;
    }
  }
  return h;
}

// NumpyRandom relies on std::mt19937 seeded with an integer producing NumPy's MT19937
// stream (both seed with init_genrand); check that premise directly.
TEST(NumpyRandomTest, StdMt19937MatchesNumpyRawStream) {
  const std::pair<std::uint32_t, const std::vector<std::uint32_t>*> cases[] = {
      {0u, &kRawSeed0}, {42u, &kRawSeed42}, {5489u, &kRawSeed5489},
      {4294967295u, &kRawSeed4294967295}};
  for (const auto& [seed, expected] : cases) {
    std::mt19937 engine(seed);
    std::vector<std::uint32_t> got;
    for (std::size_t i = 0; i < expected->size(); ++i) got.push_back(static_cast<std::uint32_t>(engine()));
    EXPECT_EQ(got, *expected) << "seed " << seed;
  }
}

TEST(NumpyRandomTest, RandSeed0MatchesNumpy) {
  qkv::NumpyRandom rng(0);
  const qkv::Tensor<double> t = rng.rand({4});
  ASSERT_EQ(t.shape(), qkv::Shape({4}));
  EXPECT_EQ(t(0), 0.5488135039273248);
  EXPECT_EQ(t(1), 0.7151893663724195);
  EXPECT_EQ(t(2), 0.6027633760716439);
  EXPECT_EQ(t(3), 0.5448831829968969);
}

TEST(NumpyRandomTest, RandCallsContinueTheStream) {
  qkv::NumpyRandom rng(0);
  std::vector<double> got;
  for (int i = 0; i < 5; ++i) {
    const auto part = values(rng.rand({4}));
    got.insert(got.end(), part.begin(), part.end());
  }
  EXPECT_EQ(got, kRand5x4Seed0);
}

TEST(NumpyRandomTest, RandomDoubleIsOneRandValue) {
  qkv::NumpyRandom rng(0);
  for (double expected : kRand5x4Seed0) EXPECT_EQ(rng.random_double(), expected);
}

TEST(NumpyRandomTest, DefaultSeedIsZero) {
  qkv::NumpyRandom rng;
  EXPECT_EQ(values(rng.rand({20})), kRand5x4Seed0);
}

TEST(NumpyRandomTest, RandnSeed0MatchesNumpy) {
  qkv::NumpyRandom rng(0);
  EXPECT_EQ(values(rng.randn({5})), kRandn5Seed0);
  rng.seed(0);
  for (double expected : kRandn5Seed0) EXPECT_EQ(rng.standard_normal(), expected);
}

// Odd counts leave the second Gaussian of a pair cached; the next call must return it.
TEST(NumpyRandomTest, RandnCachedGaussianCarriesAcrossCalls) {
  qkv::NumpyRandom rng(0);
  const auto got = concat({values(rng.randn({3})), values(rng.randn({4})),
                           values(rng.randn({1})), values(rng.randn({7}))});
  EXPECT_EQ(got, kRandn3Then4Then1Then7Seed0);

  rng.seed(0);
  EXPECT_EQ(values(rng.randn({15})), kRandn3Then4Then1Then7Seed0);
}

// NumPy's uniform draws neither use nor discard a cached Gaussian.
TEST(NumpyRandomTest, RandBetweenRandnKeepsCachedGaussian) {
  qkv::NumpyRandom rng(0);
  std::vector<double> got = concat({values(rng.randn({3})), values(rng.rand({1})),
                                    values(rng.randn({2})), values(rng.rand({3})),
                                    values(rng.randn({1}))});
  got.push_back(rng.standard_normal());
  got.push_back(rng.random_double());
  EXPECT_EQ(got, kInterleavedSeed0);
}

TEST(NumpyRandomTest, Seed42MatchesNumpy) {
  qkv::NumpyRandom rng(42);
  EXPECT_EQ(values(rng.rand({5})), kRand5Seed42);
  rng.seed(42);
  EXPECT_EQ(values(rng.randn({5})), kRandn5Seed42);
}

TEST(NumpyRandomTest, LargestSeedMatchesNumpy) {
  const std::uint32_t seed = std::numeric_limits<std::uint32_t>::max();  // 2**32 - 1
  qkv::NumpyRandom rng(seed);
  EXPECT_EQ(values(rng.rand({5})), kRand5Seed4294967295);
  rng.seed(seed);
  EXPECT_EQ(values(rng.randn({5})), kRandn5Seed4294967295);
}

TEST(NumpyRandomTest, ReseedingDropsCachedGaussian) {
  qkv::NumpyRandom rng(0);
  rng.randn({1});  // leaves a Gaussian cached
  rng.seed(0);
  EXPECT_EQ(values(rng.randn({5})), kRandn5Seed0);

  rng.randn({3});
  rng.seed(42);
  EXPECT_EQ(values(rng.randn({5})), kRandn5Seed42);
}

TEST(NumpyRandomTest, FloatTensorsHoldRoundedDoubles) {
  qkv::NumpyRandom rng(0);
  EXPECT_EQ(values(rng.rand<float>({4})), kRand4FloatSeed0);
  rng.seed(0);
  EXPECT_EQ(values(rng.randn<float>({5})), kRandn5FloatSeed0);

  rng.seed(0);
  const auto f = rng.rand<float>({4});
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(f(qkv::Index(i)), static_cast<float>(kRand5x4Seed0[i]));
  rng.seed(0);
  const auto g = rng.uniform<float>(-2.0, 3.0, {5});
  for (std::size_t i = 0; i < 5; ++i) EXPECT_EQ(g(qkv::Index(i)), static_cast<float>(kUniformSeed0[i]));
}

TEST(NumpyRandomTest, TensorsAreFilledInCOrder) {
  qkv::NumpyRandom rng(0);
  const auto t = rng.rand({2, 3, 4});
  EXPECT_EQ(t.shape(), qkv::Shape({2, 3, 4}));
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t(0, 0, 0), kRand5x4Seed0[0]);
  EXPECT_EQ(t(0, 0, 3), kRand5x4Seed0[3]);
  EXPECT_EQ(t(0, 1, 0), kRand5x4Seed0[4]);
  EXPECT_EQ(t(0, 2, 3), kRand5x4Seed0[11]);
  EXPECT_EQ(t(1, 1, 3), kRand5x4Seed0[19]);

  rng.seed(0);
  const auto flat = values(rng.rand({24}));
  EXPECT_EQ(values(t), flat);

  rng.seed(0);
  const auto n = rng.randn<float>({3, 5});
  EXPECT_EQ(n.shape(), qkv::Shape({3, 5}));
  rng.seed(0);
  EXPECT_EQ(values(n), values(rng.randn<float>({15})));
  for (std::size_t i = 0; i < 15; ++i)
    EXPECT_EQ(n(qkv::Index(i / 5), qkv::Index(i % 5)), static_cast<float>(kRandn3Then4Then1Then7Seed0[i]));
}

// np.random.rand(0) draws nothing; a rank-0 shape () draws one value.
TEST(NumpyRandomTest, EmptyAndScalarShapes) {
  qkv::NumpyRandom rng(0);
  const auto empty = rng.rand({2, 0, 3});
  EXPECT_EQ(empty.shape(), qkv::Shape({2, 0, 3}));
  EXPECT_TRUE(empty.empty());
  EXPECT_TRUE(rng.randn({0}).empty());

  const auto scalar = rng.rand(qkv::Shape{});
  EXPECT_EQ(scalar.rank(), 0);
  EXPECT_EQ(scalar.item(), kRand5x4Seed0[0]);
  EXPECT_EQ(rng.random_double(), kRand5x4Seed0[1]);
}

TEST(NumpyRandomTest, UniformMatchesNumpy) {
  qkv::NumpyRandom rng(0);
  std::vector<double> got{rng.uniform(-2.0, 3.0)};
  const auto part = values(rng.uniform(-2.0, 3.0, {4}));
  got.insert(got.end(), part.begin(), part.end());
  const auto reversed = values(rng.uniform(1.0, -1.0, {3}));  // low > high is allowed
  got.insert(got.end(), reversed.begin(), reversed.end());
  EXPECT_EQ(got, kUniformSeed0);

  rng.seed(0);
  EXPECT_EQ(rng.uniform(), kRand5x4Seed0[0]);  // defaults [0, 1): one rand value
}

TEST(NumpyRandomTest, UniformRejectsInfiniteRangeWithoutDrawing) {
  qkv::NumpyRandom rng(0);
  const double max = std::numeric_limits<double>::max();
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_THROW(rng.uniform(-max, max), std::overflow_error);
  EXPECT_THROW(rng.uniform(0.0, inf, {3}), std::overflow_error);
  EXPECT_THROW(rng.uniform(std::nan(""), 1.0), std::overflow_error);
  EXPECT_EQ(rng.random_double(), kRand5x4Seed0[0]);
}

TEST(NumpyRandomTest, FillWritesInTheViewsOrder) {
  qkv::NumpyRandom rng(0);
  auto a = qkv::Tensor<double>::zeros({2, 3});
  rng.fill_rand(a.view().transpose(0, 1));  // as a.T[...] = np.random.rand(3, 2)
  EXPECT_EQ(values(a), kTransposedFillSeed0);

  rng.seed(0);
  auto b = qkv::Tensor<float>::zeros({5});
  rng.fill_randn(b);
  EXPECT_EQ(values(b), kRandn5FloatSeed0);

  rng.seed(0);
  auto c = qkv::Tensor<double>::zeros({2, 4});
  rng.fill_uniform(c[1], -2.0, 3.0);  // fills the second row only
  EXPECT_EQ(c(0, 0), 0.0);
  EXPECT_EQ(c(0, 3), 0.0);
  EXPECT_EQ(std::vector<double>(c.begin() + 4, c.end()),
            std::vector<double>(kUniformSeed0.begin(), kUniformSeed0.begin() + 4));
}

TEST(NumpyRandomTest, FillRejectsBroadcastViews) {
  qkv::NumpyRandom rng(0);
  auto row = qkv::Tensor<double>::zeros({1, 3});
  EXPECT_THROW(rng.fill_rand(row.view().expand({4, 3})), std::invalid_argument);
  EXPECT_THROW(rng.fill_randn(row.view().expand({2, 3})), std::invalid_argument);
  EXPECT_EQ(rng.random_double(), kRand5x4Seed0[0]);
  EXPECT_NO_THROW(rng.fill_rand(row.view().unsqueeze(0)));  // a stride-0 size-1 dim is fine
}

// Over a thousand Gaussians the polar method rejects hundreds of points; the stream must
// still line up, and the uniform draws after the odd count must skip the cached value.
TEST(NumpyRandomTest, LongRandnStreamMatchesNumpy) {
  qkv::NumpyRandom rng(123);
  const auto n = rng.randn({1001});
  const std::vector<double> got = {n(0), n(1), n(500), n(999), n(1000), rng.random_double(),
                                   rng.random_double()};
  EXPECT_EQ(got, kLongRandnPicksSeed123);
}

TEST(NumpyRandomTest, WholeStreamsMatchNumpyHashes) {
  qkv::NumpyRandom rng(0);
  EXPECT_EQ(fnv1a(rng.rand({100000})), kRand100000HashSeed0);
  rng.seed(2024);
  EXPECT_EQ(fnv1a(rng.randn({100001})), kRandn100001HashSeed2024);
}

TEST(NumpyRandomTest, StatisticsAreSane) {
  qkv::NumpyRandom rng(7);
  const auto u = rng.rand({200000});
  const auto g = rng.randn({200000});
  double u_sum = 0, g_sum = 0, g_sq = 0;
  for (double v : u) {
    ASSERT_GE(v, 0.0);
    ASSERT_LT(v, 1.0);
    u_sum += v;
  }
  for (double v : g) {
    g_sum += v;
    g_sq += v * v;
  }
  const double n = 200000.0;
  EXPECT_NEAR(u_sum / n, 0.5, 0.005);  // standard error ~0.00065
  EXPECT_NEAR(g_sum / n, 0.0, 0.01);   // ~0.0022
  EXPECT_NEAR(g_sq / n - (g_sum / n) * (g_sum / n), 1.0, 0.02);  // ~0.0032
}

}  // namespace
