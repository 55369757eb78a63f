// SPDX-License-Identifier: MIT
// qkv::detail::AttentionProblem: one validated scaled dot-product attention call reduced
// to pointers and strides, so that every implementation (the naive loop, the fused
// kernel, the decode kernel) reads the same description and none re-derives broadcasting.
#pragma once

#include <limits>
#include <type_traits>

#include "../half.hpp"
#include "../shape.hpp"

namespace qkv {

/// Which causal mask to apply. `upper_left` is PyTorch's `is_causal=True`: query row i
/// may see keys 0..i. `lower_right` aligns the diagonal to the last key, as
/// torch.nn.attention.bias.causal_lower_right: row i may see keys 0..i + (S - L), which is
/// what the newest L queries need when the first S - L keys come from a cache.
enum class Causal { none, upper_left, lower_right };

namespace detail {

enum class MaskKind { none, boolean, additive };

/// Whether queries of type Q attend to keys and values of type KV: one type throughout,
/// or float queries against a 16-bit KV cache (ggml's layout, computed in float).
template <class Q, class KV>
inline constexpr bool is_attention_pair_v =
    is_floating_v<Q> && (std::is_same_v<Q, KV> || (std::is_same_v<Q, float> && is_half_v<KV>));

/// Pointers and element strides of one attention call, batch dimensions broadcast and
/// grouped-query heads resolved. Every index below is in elements, not bytes.
/// Q is the type of the queries, the output and an additive mask; KV that of the keys and
/// values; the arithmetic is in compute_t<Q> (float for the 16-bit types).
template <class Q, class KV = Q>
struct AttentionProblem {
  static_assert(is_attention_pair_v<Q, KV>, "qkv: unsupported query/key-value element types");
  using query_type = Q;
  using kv_type = KV;
  using compute_type = compute_t<Q>;

  Shape batch;            // the query's leading dimensions; one attention per element
  Index query_len = 0;    // L
  Index key_len = 0;      // S
  Index head_dim = 0;     // E
  Index value_dim = 0;    // Ev

  const Q* q = nullptr;
  Strides q_batch;
  Index q_row = 0, q_col = 0;
  const KV* k = nullptr;
  Strides k_batch;  // 0 where the key broadcasts; the head stride is per key/value head
  Index k_row = 0, k_col = 0;
  const KV* v = nullptr;
  Strides v_batch;
  Index v_row = 0, v_col = 0;
  Q* out = nullptr;
  Strides out_batch;
  Index out_row = 0, out_col = 0;

  MaskKind mask_kind = MaskKind::none;
  const bool* bool_mask = nullptr;
  const Q* additive_mask = nullptr;
  Strides mask_batch;
  Index mask_row = 0, mask_col = 0;

  int head_axis = -1;     // index in `batch` of the head dimension, or -1
  Index gqa_group = 1;    // query heads per key/value head
  compute_type scale = compute_type(1);
  /// When not null, receives each row's log Σ_j e^(s_ij) over its visible scaled scores
  /// (−inf for a row that may see no key), contiguous (batch..., L): what the backward
  /// pass recomputes the softmax from, as PyTorch's flash kernel returns it.
  compute_type* logsumexp = nullptr;
  Causal causal = Causal::none;

  // The variants (attention_variant.hpp); all off by default, and the fused and decode
  // kernels instantiated for a call without them never read these.
  Index num_heads = 1;             // query heads: the head of batch element b is b % num_heads
  Index window_left = -1;          // sliding window, as flash-attn's window_size; -1 = unbounded
  Index window_right = -1;
  compute_type softcap = 0;        // s ← cap·tanh(s / cap) when > 0
  const double* sinks = nullptr;   // one logit per head, in the softmax's denominator only
  const double* alibi_slopes = nullptr;  // one slope per head: s −= slope·|i + offset − j|

  Index batch_count() const noexcept { return batch.numel(); }

  /// Floating-point operations of the two products, 2·L·S·(E + Ev) per batch element.
  double flops() const noexcept {
    return 2.0 * double(batch_count()) * double(query_len) * double(key_len) * double(head_dim + value_dim);
  }

  /// Key j is visible to query row i iff j <= i + causal_offset() (and the mask allows).
  Index causal_offset() const noexcept {
    switch (causal) {
      case Causal::upper_left: return 0;
      case Causal::lower_right: return key_len - query_len;
      case Causal::none: break;
    }
    return std::numeric_limits<Index>::max() / 2;
  }
  /// Whether a built-in variant is on: such a call takes the kernels' variant instantiation.
  bool has_variant() const noexcept {
    return window_left >= 0 || window_right >= 0 || softcap > 0 || sinks || alibi_slopes;
  }
  /// Where query row i sits among the keys for windows and ALiBi: i + alignment_offset(),
  /// 0 with upper-left causal masking, S − L otherwise (flash-attn's lower-right default).
  Index alignment_offset() const noexcept { return causal == Causal::upper_left ? 0 : key_len - query_len; }
  /// Key j is visible to row i only if j <= i + upper_offset(): causal, or the window's right side.
  Index upper_offset() const noexcept {
    if (causal != Causal::none || window_right < 0) return causal_offset();
    return alignment_offset() + window_right;
  }
  /// Key j is visible to row i only if j >= i + lower_offset(): the window's left side.
  Index lower_offset() const noexcept {
    return window_left < 0 ? -(std::numeric_limits<Index>::max() / 2) : alignment_offset() - window_left;
  }
  /// Number of keys row i may see before the mask: min(S, max(0, i + offset + 1)).
  /// Causal masking only: the plain kernels' bound.
  Index visible_keys(Index row) const noexcept {
    const Index n = row + causal_offset() + 1;
    return n < 0 ? 0 : (n > key_len ? key_len : n);
  }
  /// One past the last key row i may see before the mask, the window included:
  /// min(S, max(0, i + upper + 1)).
  Index key_end(Index row) const noexcept {
    const Index n = row + upper_offset() + 1;
    return n < 0 ? 0 : (n > key_len ? key_len : n);
  }
  /// The first key row i may see: min(S, max(0, i + lower)); 0 without a window.
  Index key_begin(Index row) const noexcept {
    const Index n = row + lower_offset();
    return n < 0 ? 0 : (n > key_len ? key_len : n);
  }
  /// The head of batch element b (0 when the query has no head dimension).
  Index head(Index b) const noexcept { return b % num_heads; }

  struct Offsets {
    Index q = 0, k = 0, v = 0, out = 0, mask = 0;
  };
  /// Element offsets of the b-th attention (row-major over `batch`).
  Offsets offsets(Index b) const noexcept {
    Offsets o;
    for (int d = batch.rank() - 1; d >= 0; --d) {
      const Index i = b % batch[d];
      b /= batch[d];
      const Index kv = d == head_axis ? i / gqa_group : i;
      o.q += i * q_batch[d];
      o.k += kv * k_batch[d];
      o.v += kv * v_batch[d];
      o.out += i * out_batch[d];
      if (mask_kind != MaskKind::none) o.mask += i * mask_batch[d];
    }
    return o;
  }
};

}  // namespace detail
}  // namespace qkv
