// SPDX-License-Identifier: MIT
// The textbook attention loop, one query row at a time: scores, mask, row softmax,
// weighted sum of values. It is the readable reference beside the fused kernel, the
// path that returns the weights. Every variant is applied here directly from its formula.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "attention_problem.hpp"
#include "attention_variant.hpp"
#include "packet_math.hpp"

namespace qkv::detail {

/// x rounded to Q's precision and widened back: the P of PyTorch's second product for
/// 16-bit inputs, x itself otherwise.
template <class Q, class T>
T round_to(T x) noexcept {
  if constexpr (is_half_v<Q>) return static_cast<T>(Q(x));
  else return x;
}

/// Scores of row `row` of batch element b (scaled, modified, masked, -inf where hidden)
/// into `scores[0..S)`, in the compute type T. Returns the row maximum (-inf when every
/// key is hidden). Keys outside the causal diagonal or the window are hidden.
template <class Q, class KV, class V = NoVariant, class T = compute_t<Q>>
T naive_scores(const AttentionProblem<Q, KV>& p, const typename AttentionProblem<Q, KV>::Offsets& o, Index b,
               Index row, T* scores, const V& variant = {}) {
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  const Q* q = p.q + o.q + row * p.q_row;
  const Index begin = p.key_begin(row), visible = p.key_end(row);
  T row_max = neg_inf;
  for (Index j = 0; j < p.key_len; ++j) {
    T s = neg_inf;
    if (j >= begin && j < visible) {
      const KV* k = p.k + o.k + j * p.k_row;
      T dot = 0;
      for (Index e = 0; e < p.head_dim; ++e) dot += static_cast<T>(q[e * p.q_col]) * static_cast<T>(k[e * p.k_col]);
      s = dot * p.scale;
      if constexpr (V::active) s = modified_score(variant, p, b, row, j, s);
      const Index m = o.mask + row * p.mask_row + j * p.mask_col;
      if (p.mask_kind == MaskKind::boolean && !p.bool_mask[m]) s = neg_inf;
      if (p.mask_kind == MaskKind::additive) s += static_cast<T>(p.additive_mask[m]);
      if (!user_visible(variant, p, b, row, j)) s = neg_inf;
    }
    scores[j] = s;
    row_max = std::max(row_max, s);
  }
  return row_max;
}

/// Attention of every row of every batch element, written to p.out; when `weights` is
/// not null it receives the (batch..., L, S) softmax weights, contiguous. A row whose
/// keys are all hidden has no softmax: its output and weights are zeros. For 16-bit
/// inputs the weights are rounded to their type before the product with V, as PyTorch's
/// math path does; everything else is computed in float. With a sink σ the denominator
/// gains e^σ (the softmax then runs relative to max(row max, σ)) and the row sums to
/// less than 1.
template <class Q, class KV, class V = NoVariant>
void naive_attention(const AttentionProblem<Q, KV>& p, Q* weights, const V& variant = {}) {
  using T = compute_t<Q>;
  // The calling thread's reusable scratch: tiny calls (the notebooks' 6 × 3) must not pay
  // for an allocation.
  // Scores are padded to whole packets, so that the exponentials of a row are a few
  // packet operations.
  using P = Packet<T>;
  constexpr Index lanes = packet_size<T>;
  const Index padded = (p.key_len + lanes - 1) / lanes * lanes;
  thread_local std::vector<T, Eigen::aligned_allocator<T>> buffer;
  if (buffer.size() < static_cast<std::size_t>(padded)) buffer.resize(static_cast<std::size_t>(padded));
  T* scores = buffer.data();
  for (Index b = 0; b < p.batch_count(); ++b) {
    const auto o = p.offsets(b);
    for (Index i = 0; i < p.query_len; ++i) {
      T row_max = naive_scores(p, o, b, i, scores, variant);
      const bool hidden = row_max == -std::numeric_limits<T>::infinity();
      T sink = -std::numeric_limits<T>::infinity();
      if constexpr (V::active)
        if (p.sinks && !hidden) sink = static_cast<T>(p.sinks[p.head(b)]), row_max = std::max(row_max, sink);
      std::fill(scores + p.key_len, scores + padded, -std::numeric_limits<T>::infinity());  // e^-inf = 0
      P sum = simd::pset1<P>(T(0));
      for (Index j = 0; j < padded; j += lanes) {
        const P e = hidden ? simd::pset1<P>(T(0))
                           : pexp_clamped(simd::psub(simd::pload<P>(scores + j), simd::pset1<P>(row_max)));
        simd::pstore(scores + j, e);
        sum = simd::padd(sum, e);
      }
      T total = simd::predux(sum);
      if constexpr (V::active)
        if (sink != -std::numeric_limits<T>::infinity()) total += exp_clamped(sink - row_max);
      const T inv_sum = hidden ? T(0) : T(1) / total;
      if (p.logsumexp) p.logsumexp[b * p.query_len + i] = hidden ? row_max : row_max + std::log(total);
      for (Index j = 0; j < p.key_len; ++j) scores[j] = round_to<Q>(scores[j] * inv_sum);
      if (weights) {
        Q* w = weights + (b * p.query_len + i) * p.key_len;
        for (Index j = 0; j < p.key_len; ++j) w[j] = static_cast<Q>(scores[j]);
      }
      // One output element at a time, summed in a register: accumulating whole rows in
      // `out` would chain every step through a store and a reload.
      Q* out = p.out + o.out + i * p.out_row;
      const KV* v = p.v + o.v;
      for (Index e = 0; e < p.value_dim; ++e) {
        T sum_e = 0;
        for (Index j = 0; j < p.key_len; ++j)  // skips hidden keys
          if (scores[j] != T(0)) sum_e += scores[j] * static_cast<T>(v[j * p.v_row + e * p.v_col]);
        out[e * p.out_col] = static_cast<Q>(sum_e);
      }
    }
  }
}

}  // namespace qkv::detail
