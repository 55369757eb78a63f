// SPDX-License-Identifier: MIT
// qkv::KVCache and qkv::cached_attention: decoding a sequence through the cache in chunks
// of every pattern gives what one causal pass over the whole sequence gives (and what the
// long-double reference gives), with and without RoPE, with grouped-query heads, batches,
// values narrower or wider than keys and strided inputs; sizes, capacity and memory;
// overflow and shape errors leave the cache unchanged; clear() refills.
#include <qkv/attention.hpp>
#include <qkv/kv_cache.hpp>
#include <qkv/ops.hpp>
#include <qkv/random.hpp>
#include <qkv/rope.hpp>
#include <qkv/tensor.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "reference.hpp"
#include "test_util.hpp"

namespace {

using qkv::AttentionOptions;
using qkv::Causal;
using qkv::Index;
using qkv::KVCache;
using qkv::RotaryEmbedding;
using qkv::Shape;
using qkv::Tensor;
using qkv::TensorView;
using qkv::test::ThrowsWith;

struct Config {
  Index batch, num_heads, num_kv_heads, length, head_dim, value_dim, capacity;
  std::string str() const {
    return "batch " + std::to_string(batch) + ", heads " + std::to_string(num_heads) + "/" +
           std::to_string(num_kv_heads) + ", length " + std::to_string(length) + ", head_dim " +
           std::to_string(head_dim) + ", value_dim " + std::to_string(value_dim) + ", capacity " +
           std::to_string(capacity);
  }
};

const Config kConfigs[] = {
    {1, 2, 2, 13, 8, 8, 13},  // filled exactly to capacity
    {2, 4, 2, 13, 8, 5, 20},  // grouped-query attention, 2 query heads per key/value head
    {3, 8, 2, 9, 6, 4, 9},    // 4 query heads per key/value head, batch 3
    {2, 3, 1, 11, 4, 7, 16},  // multi-query attention, values wider than keys
    // Long enough for the attention kernels made for many keys (split-key decode, tiled).
    {1, 4, 1, 260, 16, 16, 272},
};

// How a sequence of `length` tokens is fed to the cache: the sizes of successive chunks.
std::vector<std::vector<Index>> chunk_patterns(Index length) {
  std::vector<std::vector<Index>> patterns;
  patterns.emplace_back(static_cast<std::size_t>(length), 1);  // one token at a time
  std::vector<Index> threes, prompt_then_ones{std::min<Index>(7, length)}, uneven;
  for (Index done = 0; done < length; done += 3) threes.push_back(std::min<Index>(3, length - done));
  for (Index n = prompt_then_ones[0]; n < length; ++n) prompt_then_ones.push_back(1);
  Index done = 0;
  for (Index n : {5, 0, 1, 4, 2, 1, 3, 2}) {  // includes an empty step
    if (done + n > length) break;
    uneven.push_back(n);
    done += n;
  }
  if (done < length) uneven.push_back(length - done);
  std::vector<Index> long_prompt_then_ones{length * 3 / 4};
  for (Index n = long_prompt_then_ones[0]; n < length; ++n) long_prompt_then_ones.push_back(1);
  patterns.push_back(threes);
  if (length <= 16) patterns.push_back(prompt_then_ones);  // else much like one at a time
  patterns.push_back(uneven);
  patterns.push_back(long_prompt_then_ones);
  patterns.push_back({length});  // the whole prompt at once
  return patterns;
}

std::string pattern_str(const std::vector<Index>& chunks) {
  std::string s = "chunks";
  for (Index n : chunks) s += " " + std::to_string(n);
  return s;
}

template <class T>
struct Sequence {
  Tensor<T> q, k, v;  // (B, H, L, E), (B, Hkv, L, E), (B, Hkv, L, Ev)

  Sequence(const Config& c, qkv::NumpyRandom& rng)
      : q(rng.randn<T>({c.batch, c.num_heads, c.length, c.head_dim})),
        k(rng.randn<T>({c.batch, c.num_kv_heads, c.length, c.head_dim})),
        v(rng.randn<T>({c.batch, c.num_kv_heads, c.length, c.value_dim})) {}
};

// Writes `chunk` (B, H, n, Ev) into rows [start, start + n) of `out` (B, H, L, Ev).
template <class T>
void put_rows(Tensor<T>& out, Index start, const Tensor<T>& chunk) {
  for (Index b = 0; b < chunk.size(0); ++b)
    for (Index h = 0; h < chunk.size(1); ++h)
      for (Index l = 0; l < chunk.size(2); ++l)
        for (Index e = 0; e < chunk.size(3); ++e) out(b, h, start + l, e) = chunk(b, h, l, e);
}

// The whole sequence in one causal pass: what decoding must reproduce.
template <class T>
Tensor<T> full_pass(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v, std::optional<double> scale = {}) {
  AttentionOptions<T> options;
  options.causal = Causal::upper_left;
  options.enable_gqa = true;
  options.scale = scale;
  return qkv::scaled_dot_product_attention(q, k, v, options);
}

// Feeds the sequence to the cache chunk by chunk, rotating each chunk's queries and keys
// at its positions when `rope` is given, and collects the outputs (B, H, L, Ev).
template <class T, class Storage>
Tensor<T> decode(KVCache<T, Storage>& cache, const Sequence<T>& s, const std::vector<Index>& chunks,
                 const RotaryEmbedding<T>* rope, std::optional<double> scale = {}) {
  auto out = Tensor<T>::zeros({s.q.size(0), s.q.size(1), s.q.size(2), s.v.size(3)});
  Index start = 0;
  for (Index n : chunks) {
    EXPECT_EQ(cache.size(), start);
    Tensor<T> q(s.q.narrow(2, start, n)), k(s.k.narrow(2, start, n));
    if (rope) {
      rope->apply(q, cache.size());
      rope->apply(k, cache.size());
    }
    const Tensor<T> chunk = qkv::cached_attention(cache, q, k, s.v.narrow(2, start, n), scale);
    EXPECT_EQ(chunk.shape(), (Shape{s.q.size(0), s.q.size(1), n, s.v.size(3)}));
    put_rows(out, start, chunk);
    start += n;
  }
  return out;
}

// Bound on the normwise error of the attention kernel against the exact result, as
// tests/test_attention.cpp holds it to: 1e-5 (float) or 1e-13 (double) of max|output|,
// magnified by the largest |logit| the softmax sees.
template <class T>
double attention_tolerance(const Tensor<T>& q, const Tensor<T>& k, std::optional<double> scale = {}) {
  const double s = scale ? *scale : 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  const double logit_bound = std::max(1.0, std::abs(s) * static_cast<double>(q.size(-1)) *
                                               static_cast<double>(qkv::max(qkv::abs(q))) *
                                               static_cast<double>(qkv::max(qkv::abs(k))));
  return (std::is_same_v<T, float> ? 1e-5 : 1e-13) * logit_bound;
}

// The exact attention of query rows [begin, begin + rows) of the causal pass over the
// whole sequence: those rows against keys 0 .. begin + rows - 1, aligned to the lower right.
template <class T>
Tensor<double> exact_rows(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v, Index begin, Index rows) {
  AttentionOptions<T> options;
  options.causal = Causal::lower_right;
  options.enable_gqa = true;
  return qkv::test::reference_attention<T>(q.narrow(2, begin, rows), k.narrow(2, 0, begin + rows),
                                           v.narrow(2, 0, begin + rows), options);
}

template <class T>
Tensor<T> row_range(const Tensor<T>& x, Index begin, Index rows) {
  return Tensor<T>(x.narrow(2, begin, rows));
}

template <class T>
Tensor<double> as_double(const Tensor<T>& x) {
  return qkv::map(x, [](T v) { return static_cast<double>(v); });
}

template <class T>
Tensor<T> snapshot(TensorView<const T> view) {
  return Tensor<T>(view);
}

template <class T>
class KVCacheTest : public testing::Test {};
TYPED_TEST_SUITE(KVCacheTest, qkv::test::FloatTypes, qkv::test::FloatTypeNames);

// ---- decoding equals the full pass -------------------------------------------------------

TYPED_TEST(KVCacheTest, DecodingInChunksEqualsOneCausalPass) {
  using T = TypeParam;
  qkv::NumpyRandom rng(2024);
  for (const Config& c : kConfigs) {
    const Sequence<T> s(c, rng);
    const RotaryEmbedding<T> rope(c.head_dim);
    for (bool with_rope : {false, true}) {
      SCOPED_TRACE(c.str() + (with_rope ? ", RoPE" : ", no RoPE"));
      const Tensor<T> q = with_rope ? rope(s.q) : s.q, k = with_rope ? rope(s.k) : s.k;
      const Tensor<T> full = full_pass(q, k, s.v);
      const double tolerance = attention_tolerance(q, k);
      // The long-double reference on the first and the last rows (all rows of a short
      // sequence): the first see few keys, the last all of them.
      const Index checked = std::min<Index>(c.length, 16);
      const std::pair<Index, Tensor<double>> exact[] = {
          {0, exact_rows(q, k, s.v, 0, checked)},
          {c.length - checked, exact_rows(q, k, s.v, c.length - checked, checked)}};
      for (const auto& [begin, rows] : exact)
        ASSERT_LE(qkv::test::normwise_error(row_range(full, begin, checked), rows), tolerance);

      for (const std::vector<Index>& chunks : chunk_patterns(c.length)) {
        SCOPED_TRACE(pattern_str(chunks));
        KVCache<T> cache(c.batch, c.num_kv_heads, c.capacity, c.head_dim, c.value_dim);
        const Tensor<T> decoded = decode(cache, s, chunks, with_rope ? &rope : nullptr);
        EXPECT_EQ(cache.size(), c.length);
        for (const auto& [begin, rows] : exact)
          EXPECT_LE(qkv::test::normwise_error(row_range(decoded, begin, checked), rows), tolerance)
              << "rows from " << begin;
        // Both are within `tolerance` of the exact result (the full pass as
        // test_attention.cpp checks), hence within twice that of each other.
        EXPECT_LE(qkv::test::normwise_error(decoded, as_double(full)), 2 * tolerance);
        // The cache holds the (rotated) keys and the values of the whole sequence.
        EXPECT_TRUE(qkv::equal(cache.keys(), k));
        EXPECT_TRUE(qkv::equal(cache.values(), s.v));
      }
    }
  }
}

TYPED_TEST(KVCacheTest, PassesTheScaleThrough) {
  using T = TypeParam;
  qkv::NumpyRandom rng(5);
  const Config c = kConfigs[1];
  const Sequence<T> s(c, rng);
  for (double scale : {0.3, -1.25}) {
    KVCache<T> cache(c.batch, c.num_kv_heads, c.capacity, c.head_dim, c.value_dim);
    const RotaryEmbedding<T>* no_rope = nullptr;
    const Tensor<T> decoded = decode(cache, s, chunk_patterns(c.length)[3], no_rope, scale);
    AttentionOptions<T> options;
    options.causal = Causal::upper_left;
    options.enable_gqa = true;
    options.scale = scale;
    const Tensor<double> exact = qkv::test::reference_attention<T>(s.q, s.k, s.v, options);
    EXPECT_LE(qkv::test::normwise_error(decoded, exact), attention_tolerance(s.q, s.k, scale)) << "scale " << scale;
    EXPECT_GT(qkv::test::normwise_error(full_pass(s.q, s.k, s.v), exact), 1e-3) << "the default scale differs";
  }
}

TYPED_TEST(KVCacheTest, TakesStridedViewsOfProjectionLayouts) {
  using T = TypeParam;
  qkv::NumpyRandom rng(6);
  const Index B = 2, L = 10, H = 4, Hkv = 2, E = 6, Ev = 3;
  // Projections write (B, L, H, E); attention reads them as (B, H, L, E) without copying.
  const Tensor<T> q_blhe = rng.randn<T>({B, L, H, E}), k_blhe = rng.randn<T>({B, L, Hkv, E});
  const Tensor<T> v_blhe = rng.randn<T>({B, L, Hkv, Ev});
  const auto heads_first = [](TensorView<const T> x) { return x.permute({0, 2, 1, 3}); };
  const RotaryEmbedding<T> rope(E, 10000.0, qkv::RopeStyle::interleaved);
  for (bool with_rope : {false, true}) {
    SCOPED_TRACE(with_rope ? "RoPE" : "no RoPE");
    Tensor<T> q_buffer = q_blhe, k_buffer = k_blhe;  // rotated in place, chunk by chunk
    const TensorView<T> q = q_buffer.view().permute({0, 2, 1, 3}), k = k_buffer.view().permute({0, 2, 1, 3});
    const TensorView<const T> v = heads_first(v_blhe);
    KVCache<T> cache(B, Hkv, L, E, Ev);
    auto decoded = Tensor<T>::zeros({B, H, L, Ev});
    Index start = 0;
    for (Index n : {4, 1, 3, 2}) {
      if (with_rope) {
        rope.apply(q.narrow(2, start, n), start);
        rope.apply(k.narrow(2, start, n), start);
      }
      put_rows(decoded, start,
               qkv::cached_attention(cache, q.narrow(2, start, n), k.narrow(2, start, n), v.narrow(2, start, n)));
      start += n;
    }
    const Tensor<T> q_full = with_rope ? rope(heads_first(q_blhe)) : Tensor<T>(heads_first(q_blhe));
    const Tensor<T> k_full = with_rope ? rope(heads_first(k_blhe)) : Tensor<T>(heads_first(k_blhe));
    const Tensor<T> v_full(v);
    AttentionOptions<T> options;
    options.causal = Causal::upper_left;
    options.enable_gqa = true;
    const Tensor<double> exact = qkv::test::reference_attention<T>(q_full, k_full, v_full, options);
    EXPECT_LE(qkv::test::normwise_error(decoded, exact), attention_tolerance(q_full, k_full));
    EXPECT_TRUE(qkv::equal(cache.keys(), k_full));
    EXPECT_TRUE(qkv::equal(cache.values(), v_full));
  }
}

// ---- storage -------------------------------------------------------------------------------

TYPED_TEST(KVCacheTest, ReportsItsSizesCapacityAndMemory) {
  using T = TypeParam;
  KVCache<T> cache(2, 4, 16, 8, 3);
  EXPECT_EQ(cache.batch(), 2);
  EXPECT_EQ(cache.num_kv_heads(), 4);
  EXPECT_EQ(cache.capacity(), 16);
  EXPECT_EQ(cache.head_dim(), 8);
  EXPECT_EQ(cache.value_dim(), 3);
  EXPECT_EQ(cache.size(), 0);
  EXPECT_EQ(cache.remaining(), 16);
  const std::size_t bytes = 2 * 4 * 16 * (8 + 3) * sizeof(T);
  EXPECT_EQ(cache.memory_bytes(), bytes);
  EXPECT_EQ(cache.keys().shape(), (Shape{2, 4, 0, 8}));
  EXPECT_EQ(cache.values().shape(), (Shape{2, 4, 0, 3}));

  qkv::NumpyRandom rng(7);
  cache.append(rng.randn<T>({2, 4, 5, 8}), rng.randn<T>({2, 4, 5, 3}));
  EXPECT_EQ(cache.size(), 5);
  EXPECT_EQ(cache.remaining(), 11);
  EXPECT_EQ(cache.memory_bytes(), bytes) << "storage is allocated once";
  EXPECT_EQ(cache.keys().shape(), (Shape{2, 4, 5, 8}));
  EXPECT_EQ(cache.values().shape(), (Shape{2, 4, 5, 3}));

  const KVCache<T> same_widths(1, 2, 32, 64);  // value_dim defaults to head_dim
  EXPECT_EQ(same_widths.value_dim(), 64);
  EXPECT_EQ(same_widths.memory_bytes(), 1 * 2 * 32 * (64 + 64) * sizeof(T));
}

TYPED_TEST(KVCacheTest, KeysAndValuesViewTheStorageInOrderOfArrival) {
  using T = TypeParam;
  qkv::NumpyRandom rng(8);
  KVCache<T> cache(2, 3, 12, 4, 5);
  const Tensor<T> k1 = rng.randn<T>({2, 3, 2, 4}), v1 = rng.randn<T>({2, 3, 2, 5});
  // A strided chunk: (B, n, Hkv, E) memory seen as (B, Hkv, n, E).
  const Tensor<T> k2_bnhe = rng.randn<T>({2, 3, 3, 4}), v2_bnhe = rng.randn<T>({2, 3, 3, 5});
  const TensorView<const T> k2 = k2_bnhe.view().permute({0, 2, 1, 3}), v2 = v2_bnhe.view().permute({0, 2, 1, 3});
  // A broadcast chunk: one token repeated for every batch element.
  const Tensor<T> k3_one = rng.randn<T>({1, 3, 1, 4}), v3_one = rng.randn<T>({1, 3, 1, 5});
  const TensorView<const T> k3 = k3_one.view().expand({2, 3, 1, 4}), v3 = v3_one.view().expand({2, 3, 1, 5});

  cache.append(k1, v1);
  const T* keys_data = cache.keys().data();
  const T* values_data = cache.values().data();
  cache.append(k2, v2);
  cache.append(k3, v3);
  EXPECT_EQ(cache.keys().data(), keys_data) << "appending never moves the storage";
  EXPECT_EQ(cache.values().data(), values_data);
  ASSERT_EQ(cache.size(), 6);
  for (Index b = 0; b < 2; ++b)
    for (Index h = 0; h < 3; ++h) {
      for (Index e = 0; e < 4; ++e) {
        for (Index t = 0; t < 2; ++t) EXPECT_EQ(cache.keys()(b, h, t, e), k1(b, h, t, e));
        for (Index t = 0; t < 3; ++t) EXPECT_EQ(cache.keys()(b, h, 2 + t, e), k2_bnhe(b, t, h, e));
        EXPECT_EQ(cache.keys()(b, h, 5, e), k3_one(0, h, 0, e));
      }
      for (Index e = 0; e < 5; ++e) {
        for (Index t = 0; t < 2; ++t) EXPECT_EQ(cache.values()(b, h, t, e), v1(b, h, t, e));
        for (Index t = 0; t < 3; ++t) EXPECT_EQ(cache.values()(b, h, 2 + t, e), v2_bnhe(b, t, h, e));
        EXPECT_EQ(cache.values()(b, h, 5, e), v3_one(0, h, 0, e));
      }
    }
}

TYPED_TEST(KVCacheTest, FillsExactlyToCapacity) {
  using T = TypeParam;
  KVCache<T> cache(1, 2, 6, 4);
  const auto tokens = [](Index n, T value) { return Tensor<T>::full({1, 2, n, 4}, value); };
  cache.append(tokens(4, 1), tokens(4, 2));
  cache.append(tokens(2, 3), tokens(2, 4));
  EXPECT_EQ(cache.size(), 6);
  EXPECT_EQ(cache.remaining(), 0);
  cache.append(tokens(0, 5), tokens(0, 5));  // nothing to add still fits
  EXPECT_EQ(cache.size(), 6);
  EXPECT_EQ(cache.keys()(0, 1, 5, 3), T(3));
  EXPECT_EQ(cache.values()(0, 1, 5, 3), T(4));
  EXPECT_TRUE(ThrowsWith<std::out_of_range>(
      [&] { cache.append(tokens(1, 5), tokens(1, 5)); },
      {"qkv::KVCache::append: 1 new tokens exceed the capacity 6 (6 cached, 0 remaining)"}));
}

TYPED_TEST(KVCacheTest, OverflowThrowsAndLeavesTheCacheUnchanged) {
  using T = TypeParam;
  qkv::NumpyRandom rng(9);
  KVCache<T> cache(2, 2, 8, 4, 3);
  cache.append(rng.randn<T>({2, 2, 5, 4}), rng.randn<T>({2, 2, 5, 3}));
  const Tensor<T> keys = snapshot(cache.keys()), values = snapshot(cache.values());
  const Tensor<T> k4 = rng.randn<T>({2, 2, 4, 4}), v4 = rng.randn<T>({2, 2, 4, 3});
  EXPECT_TRUE(ThrowsWith<std::out_of_range>(
      [&] { cache.append(k4, v4); },
      {"qkv::KVCache::append: 4 new tokens exceed the capacity 8 (5 cached, 3 remaining)"}));
  const Tensor<T> q4 = rng.randn<T>({2, 4, 4, 4});
  EXPECT_TRUE(ThrowsWith<std::out_of_range>(
      [&] { qkv::cached_attention(cache, q4, k4, v4); },
      {"qkv::KVCache::append: 4 new tokens exceed the capacity 8 (5 cached, 3 remaining)"}));
  EXPECT_EQ(cache.size(), 5);
  EXPECT_EQ(cache.remaining(), 3);
  EXPECT_TRUE(qkv::equal(cache.keys(), keys));
  EXPECT_TRUE(qkv::equal(cache.values(), values));
  // The three tokens that fit still go after the five cached ones.
  cache.append(k4.narrow(2, 0, 3), v4.narrow(2, 0, 3));
  EXPECT_TRUE(qkv::equal(cache.keys().narrow(2, 0, 5), keys));
  EXPECT_TRUE(qkv::equal(cache.keys().narrow(2, 5, 3), k4.narrow(2, 0, 3)));
  EXPECT_TRUE(qkv::equal(cache.values().narrow(2, 5, 3), v4.narrow(2, 0, 3)));
}

TYPED_TEST(KVCacheTest, ClearKeepsTheStorageAndRefills) {
  using T = TypeParam;
  qkv::NumpyRandom rng(10);
  const Config c = kConfigs[1];
  const RotaryEmbedding<T> rope(c.head_dim);
  KVCache<T> cache(c.batch, c.num_kv_heads, c.capacity, c.head_dim, c.value_dim);
  const T* storage = cache.keys().data();
  for (int sequence = 0; sequence < 3; ++sequence) {
    SCOPED_TRACE("sequence " + std::to_string(sequence));
    const Sequence<T> s(c, rng);
    const Tensor<T> decoded = decode(cache, s, chunk_patterns(c.length)[2], &rope);
    const Tensor<T> q = rope(s.q), k = rope(s.k);
    AttentionOptions<T> options;
    options.causal = Causal::upper_left;
    options.enable_gqa = true;
    EXPECT_LE(qkv::test::normwise_error(decoded, qkv::test::reference_attention<T>(q, k, s.v, options)),
              attention_tolerance(q, k));
    cache.clear();
    EXPECT_EQ(cache.size(), 0);
    EXPECT_EQ(cache.remaining(), c.capacity);
    EXPECT_EQ(cache.keys().shape(), (Shape{c.batch, c.num_kv_heads, 0, c.head_dim}));
    EXPECT_EQ(cache.memory_bytes(),
              static_cast<std::size_t>(c.batch * c.num_kv_heads * c.capacity * (c.head_dim + c.value_dim)) * sizeof(T));
    EXPECT_EQ(cache.keys().data(), storage);
  }
}

// ---- errors ----------------------------------------------------------------------------------

TYPED_TEST(KVCacheTest, ConstructorRejectsNonPositiveAndUnaddressableSizes) {
  using T = TypeParam;
  using E = std::invalid_argument;
  EXPECT_TRUE(ThrowsWith<E>([] { KVCache<T>(0, 4, 8, 64); },
                            {"qkv::KVCache: sizes must be positive, got batch 0, num_kv_heads 4, capacity 8, "
                             "head_dim 64, value_dim 64"}));
  const std::string positive = "qkv::KVCache: sizes must be positive";
  EXPECT_TRUE(ThrowsWith<E>([] { KVCache<T>(1, -1, 8, 64, 32); }, {positive, "num_kv_heads -1"}));
  EXPECT_TRUE(ThrowsWith<E>([] { KVCache<T>(1, 4, 0, 64); }, {positive, "capacity 0"}));
  EXPECT_TRUE(ThrowsWith<E>([] { KVCache<T>(1, 4, 8, 0, 16); }, {positive, "head_dim 0"}));
  EXPECT_TRUE(ThrowsWith<E>([] { KVCache<T>(1, 4, 8, 16, 0); }, {positive, "value_dim 0"}));
  const Index huge = Index{1} << 20;
  EXPECT_TRUE(ThrowsWith<std::out_of_range>(
      [&] { KVCache<T>(huge, huge, huge, 64); },
      {"qkv::KVCache: storage for batch 1048576, num_kv_heads 1048576, capacity 1048576, head_dim 64, value_dim 64 "
       "exceeds the addressable size"}));
}

TYPED_TEST(KVCacheTest, AppendRejectsMisshapenTokensNamingTheShapes) {
  using T = TypeParam;
  using E = std::invalid_argument;
  KVCache<T> cache(1, 4, 8, 64, 32);
  const auto zeros = [](Shape s) { return Tensor<T>::zeros(s); };
  cache.append(zeros({1, 4, 2, 64}), zeros({1, 4, 2, 32}));
  const std::string keys_expected = "the cache's (batch 1, num_kv_heads 4, head_dim 64)";
  const std::string values_expected = "the cache's (batch 1, num_kv_heads 4, value_dim 32)";
  EXPECT_TRUE(ThrowsWith<E>([&] { cache.append(zeros({1, 2, 3, 64}), zeros({1, 4, 3, 32})); },
                            {"qkv::KVCache::append: keys [1,2,3,64] do not match " + keys_expected}));
  EXPECT_TRUE(ThrowsWith<E>([&] { cache.append(zeros({2, 4, 3, 64}), zeros({1, 4, 3, 32})); },
                            {"qkv::KVCache::append: keys [2,4,3,64] do not match " + keys_expected}));
  EXPECT_TRUE(ThrowsWith<E>([&] { cache.append(zeros({1, 4, 3, 32}), zeros({1, 4, 3, 32})); },
                            {"qkv::KVCache::append: keys [1,4,3,32] do not match " + keys_expected}));
  EXPECT_TRUE(ThrowsWith<E>([&] { cache.append(zeros({4, 3, 64}), zeros({4, 3, 32})); },
                            {"qkv::KVCache::append: keys [4,3,64] do not match " + keys_expected,
                             "expected (batch, num_kv_heads, n, head_dim)"}));
  EXPECT_TRUE(ThrowsWith<E>([&] { cache.append(zeros({1, 4, 3, 64}), zeros({1, 4, 3, 64})); },
                            {"qkv::KVCache::append: values [1,4,3,64] do not match " + values_expected,
                             "expected (batch, num_kv_heads, n, value_dim)"}));
  EXPECT_TRUE(ThrowsWith<E>([&] { cache.append(zeros({1, 4, 3, 64}), zeros({1, 1, 3, 32})); },
                            {"qkv::KVCache::append: values [1,1,3,32] do not match " + values_expected}));
  EXPECT_TRUE(ThrowsWith<E>([&] { cache.append(zeros({1, 4, 3, 64}), zeros({1, 4, 2, 32})); },
                            {"qkv::KVCache::append: keys [1,4,3,64] and values [1,4,2,32] hold different numbers "
                             "of tokens (3 and 2)"}));
  // A shape error wins over the capacity: the message names what is wrong with the call.
  EXPECT_TRUE(ThrowsWith<E>([&] { cache.append(zeros({1, 4, 9, 64}), zeros({1, 4, 8, 32})); },
                            {"hold different numbers of tokens (9 and 8)"}));
  EXPECT_EQ(cache.size(), 2);
}

TYPED_TEST(KVCacheTest, CachedAttentionRejectsBadQueriesBeforeTouchingTheCache) {
  using T = TypeParam;
  using E = std::invalid_argument;
  KVCache<T> cache(2, 2, 8, 4, 3);
  const auto zeros = [](Shape s) { return Tensor<T>::zeros(s); };
  cache.append(zeros({2, 2, 1, 4}), zeros({2, 2, 1, 3}));
  const Tensor<T> k = zeros({2, 2, 3, 4}), v = zeros({2, 2, 3, 3});
  const std::string cache_str = ", cache batch 2, num_kv_heads 2, head_dim 4)";
  EXPECT_TRUE(ThrowsWith<E>([&] { qkv::cached_attention(cache, zeros({4, 3, 4}), k, v); },
                            {"qkv::cached_attention: q must be (batch, num_heads, n, head_dim) (q [4,3,4], "
                             "new_keys [2,2,3,4], new_values [2,2,3,3]" + cache_str}));
  EXPECT_TRUE(ThrowsWith<E>([&] { qkv::cached_attention(cache, zeros({1, 4, 3, 4}), k, v); },
                            {"qkv::cached_attention: q must be (batch, num_heads, n, head_dim) (q [1,4,3,4]"}));
  EXPECT_TRUE(ThrowsWith<E>([&] { qkv::cached_attention(cache, zeros({2, 4, 3, 8}), k, v); },
                            {"qkv::cached_attention: q must be (batch, num_heads, n, head_dim) (q [2,4,3,8]"}));
  EXPECT_TRUE(ThrowsWith<E>([&] { qkv::cached_attention(cache, zeros({2, 3, 3, 4}), k, v); },
                            {"qkv::cached_attention: num_heads 3 is not a positive multiple of num_kv_heads 2 (q "
                             "[2,3,3,4]"}));
  EXPECT_TRUE(ThrowsWith<E>([&] { qkv::cached_attention(cache, zeros({2, 0, 3, 4}), k, v); },
                            {"qkv::cached_attention: num_heads 0 is not a positive multiple of num_kv_heads 2"}));
  EXPECT_TRUE(ThrowsWith<E>([&] { qkv::cached_attention(cache, zeros({2, 4, 2, 4}), k, v); },
                            {"qkv::cached_attention: 2 queries but 3 new tokens (q [2,4,2,4], new_keys [2,2,3,4]"}));
  EXPECT_TRUE(ThrowsWith<E>(
      [&] { qkv::cached_attention(cache, zeros({2, 4, 3, 4}), k, v, std::numeric_limits<double>::infinity()); },
      {"qkv::cached_attention: scale inf is not finite (q [2,4,3,4]"}));
  EXPECT_TRUE(ThrowsWith<E>(
      [&] { qkv::cached_attention(cache, zeros({2, 4, 3, 4}), k, v, std::numeric_limits<double>::quiet_NaN()); },
      {"qkv::cached_attention: scale nan is not finite"}));
  // The cache's own checks, through the decode step.
  EXPECT_TRUE(ThrowsWith<E>([&] { qkv::cached_attention(cache, zeros({2, 4, 3, 4}), k, zeros({2, 2, 3, 4})); },
                            {"qkv::KVCache::append: values [2,2,3,4] do not match the cache's (batch 2, "
                             "num_kv_heads 2, value_dim 3)"}));
  EXPECT_TRUE(ThrowsWith<E>([&] { qkv::cached_attention(cache, zeros({2, 4, 3, 4}), zeros({2, 4, 3, 4}), v); },
                            {"qkv::KVCache::append: keys [2,4,3,4] do not match"}));
  EXPECT_EQ(cache.size(), 1);
  // After all that, a good call goes through.
  EXPECT_EQ(qkv::cached_attention(cache, zeros({2, 4, 3, 4}), k, v).shape(), (Shape{2, 4, 3, 3}));
  EXPECT_EQ(cache.size(), 4);
}

// ---- a 16-bit cache under float queries ---------------------------------------------------

template <class Storage>
Tensor<float> rounded(const Tensor<float>& x) {
  return qkv::to<float>(qkv::to<Storage>(x));
}

template <class Storage>
void expect_half_cache_decodes_as_one_pass() {
  qkv::NumpyRandom rng(2025);
  for (const Config& c : kConfigs) {
    const Sequence<float> s(c, rng);
    const RotaryEmbedding<float> rope(c.head_dim);
    for (bool with_rope : {false, true}) {
      SCOPED_TRACE(c.str() + (with_rope ? ", RoPE" : ", no RoPE"));
      // The cache keeps the (rotated) keys and the values rounded to Storage: one causal
      // pass over those same rounded values is what decoding must give.
      const Tensor<float> q = with_rope ? rope(s.q) : s.q;
      const Tensor<float> k = rounded<Storage>(with_rope ? rope(s.k) : s.k), v = rounded<Storage>(s.v);
      const Tensor<float> full = full_pass(q, k, v);
      const double tolerance = attention_tolerance(q, k);
      for (const std::vector<Index>& chunks : chunk_patterns(c.length)) {
        SCOPED_TRACE(pattern_str(chunks));
        KVCache<float, Storage> cache(c.batch, c.num_kv_heads, c.capacity, c.head_dim, c.value_dim);
        const Tensor<float> decoded = decode(cache, s, chunks, with_rope ? &rope : nullptr);
        EXPECT_LE(qkv::test::normwise_error(decoded, as_double(full)), 2 * tolerance);
        EXPECT_TRUE(qkv::equal(qkv::to<float>(cache.keys()), k));
        EXPECT_TRUE(qkv::equal(qkv::to<float>(cache.values()), v));
      }
    }
  }
}

TEST(KVCacheHalfStorage, BFloat16CacheDecodesAsOneCausalPassOnTheRoundedValues) {
  expect_half_cache_decodes_as_one_pass<qkv::bfloat16>();
}

TEST(KVCacheHalfStorage, HalfCacheDecodesAsOneCausalPassOnTheRoundedValues) {
  expect_half_cache_decodes_as_one_pass<qkv::half>();
}

TEST(KVCacheHalfStorage, HoldsHalfTheBytesAndRoundsToNearestEven) {
  const KVCache<float> wide(2, 4, 16, 8, 3);
  KVCache<float, qkv::bfloat16> narrow(2, 4, 16, 8, 3);
  EXPECT_EQ(narrow.memory_bytes() * 2, wide.memory_bytes());
  EXPECT_EQ(narrow.memory_bytes(), std::size_t{2 * 4 * 16 * (8 + 3) * 2});
  // 1 + 2^-8 lies halfway between two bfloat16 values and rounds to the even one, 1;
  // 1 + 3·2^-8 rounds up to 1 + 2^-6.
  auto keys = Tensor<float>::full({2, 4, 1, 8}, 1.0f + 1.0f / 256);
  auto values = Tensor<float>::full({2, 4, 1, 3}, 1.0f + 3.0f / 256);
  narrow.append(keys, values);
  EXPECT_EQ(static_cast<float>(narrow.keys()(1, 3, 0, 7)), 1.0f);
  EXPECT_EQ(static_cast<float>(narrow.values()(0, 2, 0, 1)), 1.0f + 1.0f / 64);
}

}  // namespace
