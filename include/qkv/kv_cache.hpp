// SPDX-License-Identifier: MIT
// qkv::KVCache and qkv::cached_attention: the keys and values of the tokens decoded so far,
// in storage allocated once, and one decode step attending new queries to them (Hugging
// Face's DynamicCache/StaticCache with torch SDPA's causal_lower_right).
#pragma once

#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "attention.hpp"
#include "half.hpp"
#include "shape.hpp"
#include "tensor.hpp"
#include "tensor_view.hpp"

namespace qkv {

namespace detail {

// Keeps a parameter out of template argument deduction, so that a Tensor or a mutable
// view converts to the TensorView<const T> it is declared as (C++20's std::type_identity).
template <class T>
struct NonDeduced {
  using type = T;
};
template <class T>
using non_deduced_t = typename NonDeduced<T>::type;

template <class T>
[[noreturn]] void cached_attention_error(const std::string& what, TensorView<const T> q, TensorView<const T> new_keys,
                                         TensorView<const T> new_values, Index batch, Index num_kv_heads,
                                         Index head_dim) {
  throw std::invalid_argument("qkv::cached_attention: " + what + " (q " + q.shape().str() + ", new_keys " +
                              new_keys.shape().str() + ", new_values " + new_values.shape().str() + ", cache batch " +
                              std::to_string(batch) + ", num_kv_heads " + std::to_string(num_kv_heads) +
                              ", head_dim " + std::to_string(head_dim) + ")");
}

}  // namespace detail

/// \brief The keys and values of the tokens seen so far, for autoregressive decoding.
/// \tparam T float or double: the type of the tokens appended and of the queries.
/// \tparam Storage the type the keys and values are kept in: T, or bfloat16 or half
/// under float queries (half the memory, and half the bytes each decode step reads;
/// appended tokens are rounded to nearest even, and attention widens them exactly).
///
/// Keys are stored as (batch, num_kv_heads, capacity, head_dim) and values as
/// (batch, num_kv_heads, capacity, value_dim), allocated once by the constructor; append
/// copies new tokens after the cached ones and keys()/values() view the first size()
/// of them, ready for scaled_dot_product_attention. Nothing is reallocated, so views stay
/// valid across appends (and see the new tokens only through fresh calls to keys()).
/// \code
/// qkv::KVCache<float> cache(/*batch=*/1, /*num_kv_heads=*/8, /*capacity=*/2048, /*head_dim=*/64);
/// // or qkv::KVCache<float, qkv::bfloat16>: the same in 2 bytes per element
/// cache.append(k_prompt, v_prompt);              // (1, 8, n, 64) each
/// auto out = qkv::scaled_dot_product_attention(q, cache.keys(), cache.values(), options);
/// cache.clear();                                 // next sequence, same storage
/// \endcode
/// \see cached_attention, which appends and attends in one decode step.
template <class T, class Storage = T>
class KVCache {
  static_assert(std::is_floating_point_v<T>, "qkv::KVCache: float or double tokens");
  static_assert(detail::is_attention_pair_v<T, Storage>,
                "qkv::KVCache: storage of the tokens' type, or bfloat16 or half under float");

 public:
  /// \throws std::invalid_argument unless every size is positive; std::out_of_range if
  /// the storage would not fit in memory addressable by Index.
  KVCache(Index batch, Index num_kv_heads, Index capacity, Index head_dim, Index value_dim)
      : keys_(storage_shape(batch, num_kv_heads, capacity, head_dim, value_dim, head_dim)),
        values_(storage_shape(batch, num_kv_heads, capacity, head_dim, value_dim, value_dim)) {}
  /// Values as wide as keys (value_dim = head_dim).
  KVCache(Index batch, Index num_kv_heads, Index capacity, Index head_dim)
      : KVCache(batch, num_kv_heads, capacity, head_dim, head_dim) {}

  /// Number of sequences: dimension 0 of keys() and values().
  Index batch() const noexcept { return keys_.shape()[0]; }
  /// Number of key/value heads: dimension 1 of keys() and values().
  Index num_kv_heads() const noexcept { return keys_.shape()[1]; }
  /// The most tokens the storage holds, allocated by the constructor.
  Index capacity() const noexcept { return keys_.shape()[2]; }
  /// Width of each key: dimension 3 of keys().
  Index head_dim() const noexcept { return keys_.shape()[3]; }
  /// Width of each value: dimension 3 of values() (head_dim() unless given).
  Index value_dim() const noexcept { return values_.shape()[3]; }
  /// Tokens cached so far.
  Index size() const noexcept { return size_; }
  /// Tokens that still fit: capacity() - size().
  Index remaining() const noexcept { return capacity() - size_; }
  /// Bytes of storage held for keys and values, whatever size() is.
  std::size_t memory_bytes() const noexcept {
    return static_cast<std::size_t>(keys_.numel() + values_.numel()) * sizeof(Storage);
  }

  /// Appends n new tokens: keys (batch, num_kv_heads, n, head_dim) and values
  /// (batch, num_kv_heads, n, value_dim), any strided views, converted to Storage.
  /// \throws std::invalid_argument naming the shapes if they do not fit the cache;
  /// std::out_of_range if size() + n > capacity(). Either way the cache is unchanged.
  void append(TensorView<const T> keys, TensorView<const T> values) {
    check_append(keys, values);
    const Index n = keys.size(2);
    copy_into(keys_.view().narrow(2, size_, n), keys);
    copy_into(values_.view().narrow(2, size_, n), values);
    size_ += n;
  }
  /// Appends the tokens of two tensors; see append(TensorView<const T>, TensorView<const T>).
  void append(const Tensor<T>& keys, const Tensor<T>& values) { append(keys.view(), values.view()); }

  /// The cached keys (batch, num_kv_heads, size(), head_dim): a view into the storage.
  TensorView<const Storage> keys() const { return keys_.view().narrow(2, 0, size_); }
  /// The cached values (batch, num_kv_heads, size(), value_dim).
  TensorView<const Storage> values() const { return values_.view().narrow(2, 0, size_); }

  /// Forgets every token (size() = 0) and keeps the storage for the next sequence.
  void clear() noexcept { size_ = 0; }

 private:
  static Shape storage_shape(Index batch, Index num_kv_heads, Index capacity, Index head_dim, Index value_dim,
                             Index width) {
    const std::string sizes = "batch " + std::to_string(batch) + ", num_kv_heads " + std::to_string(num_kv_heads) +
                              ", capacity " + std::to_string(capacity) + ", head_dim " + std::to_string(head_dim) +
                              ", value_dim " + std::to_string(value_dim);
    if (batch <= 0 || num_kv_heads <= 0 || capacity <= 0 || head_dim <= 0 || value_dim <= 0)
      throw std::invalid_argument("qkv::KVCache: sizes must be positive, got " + sizes);
    // Refuse sizes whose element count would overflow Index before allocating them.
    Index elements = 1;
    for (Index d : {batch, num_kv_heads, capacity, head_dim + value_dim}) {
      if (elements > std::numeric_limits<Index>::max() / static_cast<Index>(sizeof(Storage)) / d)
        throw std::out_of_range("qkv::KVCache: storage for " + sizes + " exceeds the addressable size");
      elements *= d;
    }
    return Shape{batch, num_kv_heads, capacity, width};
  }

  std::string expected(const char* last_name, Index last) const {
    return "the cache's (batch " + std::to_string(batch()) + ", num_kv_heads " + std::to_string(num_kv_heads()) +
           ", " + last_name + " " + std::to_string(last) + ")";
  }

  void check_append(TensorView<const T> keys, TensorView<const T> values) const {
    const char* fn = "qkv::KVCache::append: ";
    const auto fits = [&](TensorView<const T> x, Index last) {
      return x.rank() == 4 && x.size(0) == batch() && x.size(1) == num_kv_heads() && x.size(3) == last;
    };
    if (!fits(keys, head_dim()))
      throw std::invalid_argument(fn + std::string("keys ") + keys.shape().str() + " do not match " +
                                  expected("head_dim", head_dim()) + "; expected (batch, num_kv_heads, n, head_dim)");
    if (!fits(values, value_dim()))
      throw std::invalid_argument(fn + std::string("values ") + values.shape().str() + " do not match " +
                                  expected("value_dim", value_dim()) +
                                  "; expected (batch, num_kv_heads, n, value_dim)");
    const Index n = keys.size(2);
    if (values.size(2) != n)
      throw std::invalid_argument(fn + std::string("keys ") + keys.shape().str() + " and values " +
                                  values.shape().str() + " hold different numbers of tokens (" + std::to_string(n) +
                                  " and " + std::to_string(values.size(2)) + ")");
    if (n > remaining())
      throw std::out_of_range(fn + std::to_string(n) + " new tokens exceed the capacity " +
                              std::to_string(capacity()) + " (" + std::to_string(size_) + " cached, " +
                              std::to_string(remaining()) + " remaining); clear() the cache or allocate a larger one");
  }

  static void copy_into(TensorView<Storage> to, TensorView<const T> from) {
    Storage* out = to.data();
    const T* in = from.data();
    detail::for_each_offset(
        to.shape(), [&](Index o, Index i) { out[o] = static_cast<Storage>(in[i]); }, to.strides(), from.strides());
  }

  Tensor<Storage> keys_;
  Tensor<Storage> values_;
  Index size_ = 0;
};

/// \brief One decode step: appends the new tokens' keys and values to the cache, then
/// attends the queries to every cached token.
///
/// q is (batch, num_heads, n, head_dim) with num_heads a multiple of the cache's
/// num_kv_heads (grouped-query attention: each key/value head serves num_heads /
/// num_kv_heads consecutive query heads); new_keys (batch, num_kv_heads, n, head_dim) and
/// new_values (batch, num_kv_heads, n, value_dim) are the same n tokens. The causal mask
/// is aligned to the lower right: query row r sees cached tokens 0 .. size_before + r, so
/// decoding a sequence in chunks of any sizes gives what one causal pass over the whole
/// sequence gives. Returns (batch, num_heads, n, value_dim). `scale` defaults to
/// 1/sqrt(head_dim). Inputs are Tensors or strided views; apply RotaryEmbedding to q and
/// new_keys with position_offset = cache.size() before the call.
/// \throws std::invalid_argument naming the shapes (or a scale that is not finite);
/// std::out_of_range when the tokens exceed the capacity. The cache is then unchanged.
/// \code
/// rope.apply(q, cache.size());
/// rope.apply(k, cache.size());
/// qkv::Tensor<float> out = qkv::cached_attention(cache, q, k, v);  // (B, H, n, Ev)
/// \endcode
/// \see scaled_dot_product_attention (Causal::lower_right, enable_gqa), which it calls.
template <class T, class Storage>
Tensor<T> cached_attention(KVCache<T, Storage>& cache, detail::non_deduced_t<TensorView<const T>> q,
                           detail::non_deduced_t<TensorView<const T>> new_keys,
                           detail::non_deduced_t<TensorView<const T>> new_values,
                           std::optional<double> scale = {}) {
  AttentionOptions<T> options;
  options.scale = scale;
  return cached_attention<T>(cache, q, new_keys, new_values, options);
}

/// cached_attention with the scale and the variants (window, softcap, sinks, ALiBi) of
/// `options`; its causal and enable_gqa are those of a cache (lower-right, grouped), its
/// mask must be unset. The window's and ALiBi's positions are then the tokens' positions
/// in the cache, so decoding token by token equals one causal pass.
template <class T, class Storage>
Tensor<T> cached_attention(KVCache<T, Storage>& cache, detail::non_deduced_t<TensorView<const T>> q,
                           detail::non_deduced_t<TensorView<const T>> new_keys,
                           detail::non_deduced_t<TensorView<const T>> new_values, AttentionOptions<T> options) {
  const std::optional<double> scale = options.scale;
  const auto fail = [&](const std::string& what) {
    detail::cached_attention_error(what, q, new_keys, new_values, cache.batch(), cache.num_kv_heads(),
                                   cache.head_dim());
  };
  // Everything that could make the attention throw is checked before the cache changes.
  if (q.rank() != 4 || q.size(0) != cache.batch() || q.size(-1) != cache.head_dim())
    fail("q must be (batch, num_heads, n, head_dim)");
  if (q.size(1) == 0 || q.size(1) % cache.num_kv_heads() != 0)
    fail("num_heads " + std::to_string(q.size(1)) + " is not a positive multiple of num_kv_heads " +
         std::to_string(cache.num_kv_heads()));
  if (new_keys.rank() == 4 && new_keys.size(2) != q.size(2))
    fail(std::to_string(q.size(2)) + " queries but " + std::to_string(new_keys.size(2)) + " new tokens");
  if (scale && !std::isfinite(*scale)) fail("scale " + std::to_string(*scale) + " is not finite");
  cache.append(new_keys, new_values);

  options.causal = Causal::lower_right;
  options.enable_gqa = true;
  return scaled_dot_product_attention(q, cache.keys(), cache.values(), options);
}

}  // namespace qkv
