// SPDX-License-Identifier: MIT
// The attention variants as a policy of the kernels, after PyTorch's FlexAttention: a
// score modifier and a mask predicate given as C++ callables (AttentionModifiers), and
// the built-in variants (sliding window, soft-capping, sinks, ALiBi) read from the
// AttentionProblem. A call without any takes the kernels' NoVariant instantiation, whose
// code is that of plain attention: every use of the policy is under `if constexpr`.
#pragma once

#include <cmath>
#include <type_traits>
#include <utility>

#include "attention_problem.hpp"

namespace qkv {

/// What a mask predicate says of a whole tile of (queries × keys): every pair hidden (the
/// kernels skip the tile), some hidden (each pair is asked), or every pair visible (the
/// tile takes the unmasked path).
enum class TileVisibility { hidden, partial, visible };

/// No score modifier: the scores are left as they are.
struct NoScoreMod {};
/// No mask predicate: every key is visible (before the other masks).
struct NoMaskMod {};

/// \brief A user's score modifier and mask predicate, inlined into the kernels.
/// \tparam Score `T operator()(T score, Index batch, Index head, Index q_idx, Index kv_idx) const`,
///   applied to the scaled (and soft-capped, ALiBi-biased) score before the masks; T is the
///   compute type (float for 16-bit inputs, else the query's type). The kernels call it
///   for whole blocks of consecutive queries, so that a simple body vectorises.
/// \tparam Mask `bool operator()(Index batch, Index head, Index q_idx, Index kv_idx) const`:
///   whether the key is visible. It may also have `TileVisibility tile(Index batch,
///   Index head, Index q_begin, Index q_end, Index kv_begin, Index kv_end) const` for the
///   half-open ranges of a tile: hidden tiles are then skipped and fully visible ones take
///   the unmasked path.
/// `batch` is the index over the query's dimensions before the head dimension, `head` the
/// query head (0 when the query has rank 2). Build one with score_mod, mask_mod or
/// modifiers. \see scaled_dot_product_attention
template <class Score = NoScoreMod, class Mask = NoMaskMod>
struct AttentionModifiers {
  /// The score modifier.
  Score score;
  /// The mask predicate.
  Mask visible;
};

/// Modifiers with the score modifier `score` only.
template <class Score>
AttentionModifiers<Score, NoMaskMod> score_mod(Score score) {
  return {std::move(score), NoMaskMod{}};
}

/// Modifiers with the mask predicate `visible` only.
template <class Mask>
AttentionModifiers<NoScoreMod, Mask> mask_mod(Mask visible) {
  return {NoScoreMod{}, std::move(visible)};
}

/// Modifiers with both a score modifier and a mask predicate.
template <class Score, class Mask>
AttentionModifiers<Score, Mask> modifiers(Score score, Mask visible) {
  return {std::move(score), std::move(visible)};
}

namespace detail {

/// The policy of a call without variants: nothing to apply.
struct NoVariant {
  static constexpr bool active = false;
  static constexpr bool has_score = false;
  static constexpr bool has_mask = false;
};

/// The policy of a call with variants: the built-in ones, read from the problem and
/// tested once per block, and the user's callables, known at compile time.
template <class Score, class Mask>
struct Variant {
  static constexpr bool active = true;
  static constexpr bool has_score = !std::is_same_v<Score, NoScoreMod>;
  static constexpr bool has_mask = !std::is_same_v<Mask, NoMaskMod>;
  Score score;
  Mask visible;
};

using BuiltinVariant = Variant<NoScoreMod, NoMaskMod>;

template <class Score, class Mask>
Variant<Score, Mask> make_variant(const AttentionModifiers<Score, Mask>& m) {
  return {m.score, m.visible};
}

template <class M, class = void>
struct has_tile_form : std::false_type {};
template <class M>
struct has_tile_form<M, std::void_t<decltype(std::declval<const M&>().tile(Index{}, Index{}, Index{}, Index{},
                                                                             Index{}, Index{}))>>
    : std::true_type {};

/// The user mask's verdict on queries [q_begin, q_end) × keys [kv_begin, kv_end) of batch
/// element b: its tile form, or partial when it has none.
template <class V, class Problem>
TileVisibility user_tile(const V& v, const Problem& p, Index b, Index q_begin, Index q_end, Index kv_begin,
                         Index kv_end) {
  if constexpr (V::has_mask && has_tile_form<decltype(v.visible)>::value)
    return v.visible.tile(b / p.num_heads, p.head(b), q_begin, q_end, kv_begin, kv_end);
  else if constexpr (V::has_mask) return TileVisibility::partial;
  else return TileVisibility::visible;
}

/// The score of query i and key j of batch element b after the score modifiers, scalar:
/// soft-capping, then ALiBi, then the user's. The reference path and the decode kernel's
/// leftovers use it; the fused kernel applies the same operations to packets.
template <class T, class V, class Problem>
T modified_score(const V& v, const Problem& p, Index b, Index i, Index j, T s) {
  if (p.softcap > 0) s = p.softcap * std::tanh(s / p.softcap);
  if (p.alibi_slopes) {
    const Index d = i + p.alignment_offset() - j;
    s -= static_cast<T>(p.alibi_slopes[p.head(b)]) * static_cast<T>(d < 0 ? -d : d);
  }
  if constexpr (V::has_score) s = v.score(s, b / p.num_heads, p.head(b), i, j);
  return s;
}

/// Whether the user's mask lets query i see key j of batch element b (true without one).
template <class V, class Problem>
bool user_visible(const V& v, const Problem& p, Index b, Index i, Index j) {
  if constexpr (V::has_mask) return v.visible(b / p.num_heads, p.head(b), i, j);
  else return true;
}

}  // namespace detail
}  // namespace qkv
