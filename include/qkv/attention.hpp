// SPDX-License-Identifier: MIT
// qkv::scaled_dot_product_attention: softmax(q·kᵀ·scale + mask)·v with the semantics of
// PyTorch 2's torch.nn.functional.scaled_dot_product_attention — any leading batch/head
// dimensions, both causal alignments, boolean or additive masks, grouped-query attention —
// and the variants of current models: sliding windows, logit soft-capping, attention sinks,
// ALiBi, and a user's score modifier and mask predicate fused into the kernels.
#pragma once

#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "detail/attention_problem.hpp"
#include "detail/attention_variant.hpp"
#include "detail/naive_attention.hpp"
#include "detail/split_key_decode.hpp"
#include "half.hpp"
#include "kernel.hpp"
#include "parallel.hpp"
#include "shape.hpp"
#include "tensor.hpp"
#include "tensor_view.hpp"

namespace qkv {

/// \brief An attention mask: boolean (true = may attend, as PyTorch) or additive (added
/// to the scaled scores; -inf hides a key). Either broadcasts to (..., L, S).
/// \tparam T the query's element type, which an additive mask has too (as PyTorch requires).
///
/// Converts implicitly from a Tensor or TensorView of bool or of T, so that
/// `options.attn_mask = mask;` works for both kinds. It views the mask: the mask's
/// memory must outlive the call.
template <class T>
class AttentionMask {
 public:
  AttentionMask() = default;
  /// A boolean mask viewing `allowed`: true where a query may attend to a key, as PyTorch.
  AttentionMask(TensorView<const bool> allowed) : bool_(allowed), kind_(detail::MaskKind::boolean) {}  // NOLINT
  /// An additive mask viewing `additive`, added to the scaled scores (-inf hides a key).
  AttentionMask(TensorView<const T> additive) : additive_(additive), kind_(detail::MaskKind::additive) {}  // NOLINT
  /// A boolean mask viewing a mutable view; see the TensorView<const bool> overload.
  AttentionMask(TensorView<bool> allowed) : AttentionMask(TensorView<const bool>(allowed)) {}  // NOLINT
  /// An additive mask viewing a mutable view; see the TensorView<const T> overload.
  AttentionMask(TensorView<T> additive) : AttentionMask(TensorView<const T>(additive)) {}      // NOLINT
  /// A boolean mask viewing a tensor, which must outlive it (a temporary is refused).
  AttentionMask(const Tensor<bool>& allowed) : AttentionMask(allowed.view()) {}  // NOLINT
  /// An additive mask viewing a tensor, which must outlive it (a temporary is refused).
  AttentionMask(const Tensor<T>& additive) : AttentionMask(additive.view()) {}   // NOLINT
  AttentionMask(Tensor<bool>&&) = delete;  // would dangle
  AttentionMask(Tensor<T>&&) = delete;     // would dangle

  /// Whether a mask is set (false for a default-constructed one: no mask).
  bool has_value() const noexcept { return kind_ != detail::MaskKind::none; }
  /// Whether the mask is boolean (true = may attend).
  bool is_boolean() const noexcept { return kind_ == detail::MaskKind::boolean; }
  /// Whether the mask is additive (of T).
  bool is_additive() const noexcept { return kind_ == detail::MaskKind::additive; }
  /// The kind of mask: none, boolean or additive.
  detail::MaskKind kind() const noexcept { return kind_; }
  /// The mask's shape as given, before broadcasting to (..., L, S); [0] without a mask.
  const Shape& shape() const noexcept { return is_boolean() ? bool_.shape() : additive_.shape(); }
  /// The boolean mask; an empty view (null data) unless is_boolean().
  TensorView<const bool> boolean() const noexcept { return bool_; }
  /// The additive mask; an empty view (null data) unless is_additive().
  TensorView<const T> additive() const noexcept { return additive_; }

 private:
  TensorView<const bool> bool_;
  TensorView<const T> additive_;
  detail::MaskKind kind_ = detail::MaskKind::none;
};

/// A sliding window, as flash-attn's `window_size`: key j is visible from query i when
/// i + offset − left ≤ j ≤ i + offset + right, −1 leaving a side unbounded. The offset is
/// the causal alignment: 0 with Causal::upper_left, S − L otherwise (lower-right, as
/// flash-attn). It combines with causal masking and with a mask.
struct AttentionWindow {
  /// Keys visible before the query's position; −1 = unbounded.
  Index left = -1;
  /// Keys visible after the query's position; −1 = unbounded.
  Index right = -1;
};

/// \brief The ALiBi slopes of `num_heads` heads (Press et al.): the geometric sequence
/// 2^(−8h/H), h = 1..H, when H is a power of two; otherwise, as BLOOM, those of the largest
/// power of two n < H followed by every other slope of 2n heads (2^(−4(2h−1)/n)), H − n of them.
inline std::vector<double> alibi_slopes(Index num_heads) {
  std::vector<double> slopes;
  if (num_heads <= 0) return slopes;
  Index n = 1;
  while (n * 2 <= num_heads) n *= 2;
  for (Index h = 1; h <= n; ++h) slopes.push_back(std::exp2(-8.0 * double(h) / double(n)));
  for (Index h = 1; Index(slopes.size()) < num_heads; ++h)
    slopes.push_back(std::exp2(-4.0 * double(2 * h - 1) / double(n)));
  return slopes;
}

/// \brief Options of scaled_dot_product_attention, named after PyTorch's arguments.
/// \tparam T the query's element type.
template <class T>
struct AttentionOptions {
  /// Boolean or additive mask broadcastable to (..., L, S); none by default.
  AttentionMask<T> attn_mask;
  /// Causal masking; Causal::upper_left is PyTorch's is_causal=True. Combines with attn_mask.
  Causal causal = Causal::none;
  /// Multiplies q·kᵀ; 1/sqrt(E) when not set. Must be finite.
  std::optional<double> scale;
  /// Allows fewer key/value heads than query heads (dimension -3), each serving
  /// num_heads / num_kv_heads consecutive query heads, as PyTorch's enable_gqa.
  bool enable_gqa = false;
  /// Scratch memory to use instead of each thread's own (see AttentionWorkspace).
  AttentionWorkspace* workspace = nullptr;
  /// A sliding window (Mistral, Gemma 2/3, gpt-oss); unbounded by default.
  AttentionWindow window;
  /// Logit soft-capping (Gemma 2): each scaled score s becomes softcap·tanh(s / softcap),
  /// before the masks. 0 = off; otherwise it must be positive and finite.
  double softcap = 0;
  /// Attention sinks (gpt-oss, StreamingLLM): one logit σ_h per query head (size H, or 1
  /// for a query of rank 2), added to each softmax's denominator as e^(σ_h) with no value:
  /// a row then sums to less than 1, and a row that may see no key still gives zeros.
  std::vector<double> sinks;
  /// ALiBi (BLOOM, MPT, Falcon): the bias −slope_h·|i + offset − j| added to the scaled
  /// scores of head h, offset as for the window; one slope per query head, e.g.
  /// qkv::alibi_slopes(H). Empty = off.
  std::vector<double> alibi_slopes;
};

/// The output (..., L, Ev) and the softmax weights (..., L, S) of one attention call.
template <class T>
struct AttentionResult {
  /// (..., L, Ev): the attention output, in the query's type.
  Tensor<T> output;
  /// (..., L, S): the softmax weights, in the query's type; each row sums to 1, or is
  /// zeros when it may see no key. Empty from ScaledDotProductAttention::forward without
  /// need_weights.
  Tensor<T> weights;
};

/// The output (..., L, Ev) of one attention call and each query row's log-sum-exp
/// (..., L): log Σ_j e^(s_ij) over the row's visible scaled scores s_ij, in the compute
/// type (float for 16-bit inputs), −inf for a row that may see no key. The softmax
/// weights are e^(s_ij − logsumexp_i): what a backward pass recomputes them from.
template <class T>
struct AttentionLogSumExpResult {
  /// (..., L, Ev): the attention output, in the query's type.
  Tensor<T> output;
  /// (..., L): each query row's log-sum-exp, in the compute type; −inf for a row that may
  /// see no key. What scaled_dot_product_attention_backward takes with the output.
  Tensor<detail::compute_t<T>> logsumexp;
};

namespace detail {

inline std::string sdpa_shapes(const Shape& q, const Shape& k, const Shape& v) {
  return "(query " + q.str() + ", key " + k.str() + ", value " + v.str() + ")";
}

[[noreturn]] inline void sdpa_error(const char* fn, const std::string& what, const Shape& q,
                                    const Shape& k, const Shape& v) {
  throw std::invalid_argument(std::string(fn) + ": " + what + " " + sdpa_shapes(q, k, v));
}

// The errors below build their strings out of line: every call makes the checks, only a
// throw needs the strings (built inline, they cost make_problem some 80 instructions).
[[noreturn]] inline void sdpa_mismatch(const char* fn, const char* what, Index a, const char* versus, Index b,
                                       const Shape& q, const Shape& k, const Shape& v) {
  sdpa_error(fn, what + std::to_string(a) + versus + std::to_string(b), q, k, v);
}

[[noreturn]] inline void kv_broadcast_error(const char* fn, const char* name, int d, Index size, Index batch,
                                            bool could_group, const Shape& q, const Shape& k, const Shape& v) {
  sdpa_error(fn, std::string(name) + " batch dimension " + std::to_string(d) + " of size " + std::to_string(size) +
                     " does not broadcast to the query's " + std::to_string(batch) +
                     (could_group ? "; set enable_gqa for grouped-query attention" : ""),
             q, k, v);
}

[[noreturn]] inline void scale_error(const char* fn, double scale, const Shape& q, const Shape& k,
                                     const Shape& v) {
  sdpa_error(fn, "scale " + std::to_string(scale) + " is not finite", q, k, v);
}

// The mask's pointer and strides, broadcast to (batch..., L, S). Apart from make_problem,
// whose every call would otherwise pay for this path's stack frame and strings.
template <class T, class KV>
void set_mask(const char* fn, const AttentionMask<T>& mask, AttentionProblem<T, KV>& p, const Shape& q,
              const Shape& k, const Shape& v) {
  Shape full = p.batch;
  full.push_back(p.query_len);
  full.push_back(p.key_len);
  Strides strides;
  try {
    strides = mask.is_boolean() ? mask.boolean().expand(full).strides() : mask.additive().expand(full).strides();
  } catch (const std::invalid_argument&) {
    sdpa_error(fn, "attn_mask of shape " + mask.shape().str() + " does not broadcast to " + full.str(), q, k, v);
  }
  p.mask_kind = mask.kind();
  p.bool_mask = mask.boolean().data();
  p.additive_mask = mask.additive().data();
  p.mask_batch = strides.front(p.batch.rank());
  p.mask_row = strides[p.batch.rank()];
  p.mask_col = strides[p.batch.rank() + 1];
}

// The built-in variants, validated; out of line as set_mask.
template <class T, class KV>
void set_variants(const char* fn, const AttentionOptions<T>& options, AttentionProblem<T, KV>& p, const Shape& q,
                  const Shape& k, const Shape& v) {
  const AttentionWindow& w = options.window;
  if (w.left < -1 || w.right < -1)
    sdpa_error(fn, "window {" + std::to_string(w.left) + ", " + std::to_string(w.right) +
                       "} has a negative side other than -1 (= unbounded)", q, k, v);
  if (!(options.softcap >= 0) || !std::isfinite(options.softcap))
    sdpa_error(fn, "softcap " + std::to_string(options.softcap) + " must be positive and finite (0 = off)", q, k, v);
  const auto per_head = [&](const std::vector<double>& values, const char* name) {
    if (!values.empty() && Index(values.size()) != p.num_heads)
      sdpa_error(fn, std::string(name) + " has " + std::to_string(values.size()) + " values != " +
                         std::to_string(p.num_heads) + " query heads", q, k, v);
  };
  per_head(options.sinks, "sinks");
  per_head(options.alibi_slopes, "alibi_slopes");
  p.window_left = w.left;
  p.window_right = w.right;
  p.softcap = static_cast<compute_t<T>>(options.softcap);
  p.sinks = options.sinks.empty() ? nullptr : options.sinks.data();
  p.alibi_slopes = options.alibi_slopes.empty() ? nullptr : options.alibi_slopes.data();
}

// Sets `strides` to read `kv` (a key or value view) for every element of the query's
// batch shape `batch`, broadcasting and mapping query heads onto key/value heads.
// `inline` gets g++ to inline both calls, which saves some 70 instructions per call.
template <class T>
inline void kv_batch_strides(const char* fn, const char* name, const TensorView<const T>& kv, const Shape& batch,
                             int head_axis, Index group, const Shape& q, const Shape& k, const Shape& v,
                             Strides& strides) {
  const int lead = batch.rank() - (kv.rank() - 2);  // >= 0: kv has at most the query's rank
  strides = batch;  // for its rank: every stride is set below
  for (int d = 0; d < lead; ++d) strides[d] = 0;  // a missing dimension broadcasts
  for (int d = lead; d < batch.rank(); ++d) {
    const Index size = kv.shape()[d - lead];
    if (size == batch[d] || (d == head_axis && group > 1 && size * group == batch[d]))
      strides[d] = kv.strides()[d - lead];
    else if (size == 1)
      strides[d] = 0;
    else
      kv_broadcast_error(fn, name, d, size, batch[d],
                         d == batch.rank() - 1 && head_axis < 0 && size > 0 && batch[d] % size == 0, q, k, v);
  }
}

// The sizes and strides of a view's last two dimensions (rank >= 2).
struct TrailingMatrix {
  Index rows, cols, row_stride, col_stride;
};

template <class T>
TrailingMatrix trailing_matrix(const TensorView<const T>& x) noexcept {
  const int r = x.rank();
  return {x.shape()[r - 2], x.shape()[r - 1], x.strides()[r - 2], x.strides()[r - 1]};
}

// Validates one call and reduces it to pointers and strides. `out` may be null to
// validate only; its shape is checked by the caller.
template <class T, class KV>
AttentionProblem<T, KV> make_problem(const char* fn, const TensorView<const T>& q, const TensorView<const KV>& k,
                                     const TensorView<const KV>& v, const AttentionOptions<T>& options) {
  const Shape &qs = q.shape(), &ks = k.shape(), &vs = v.shape();
  if (q.rank() < 2) sdpa_error(fn, "query must have rank >= 2 (..., L, E)", qs, ks, vs);
  if (k.rank() < 2) sdpa_error(fn, "key must have rank >= 2 (..., S, E)", qs, ks, vs);
  if (v.rank() < 2) sdpa_error(fn, "value must have rank >= 2 (..., S, Ev)", qs, ks, vs);
  if (k.rank() > q.rank() || v.rank() > q.rank())
    sdpa_error(fn, "key and value must not have more dimensions than the query", qs, ks, vs);
  // Read up front: the compiler cannot tell stores into p from the views' memory, and
  // would reload (and range-check) every size and stride after each.
  const TrailingMatrix qm = trailing_matrix(q), km = trailing_matrix(k), vm = trailing_matrix(v);
  if (km.cols != qm.cols) sdpa_mismatch(fn, "key head_dim ", km.cols, " != query head_dim ", qm.cols, qs, ks, vs);
  if (vm.rows != km.rows) sdpa_mismatch(fn, "value length ", vm.rows, " != key length ", km.rows, qs, ks, vs);

  AttentionProblem<T, KV> p;
  p.query_len = qm.rows;
  p.key_len = km.rows;
  p.head_dim = qm.cols;
  p.value_dim = vm.cols;
  p.q = q.data(), p.q_row = qm.row_stride, p.q_col = qm.col_stride;
  p.k = k.data(), p.k_row = km.row_stride, p.k_col = km.col_stride;
  p.v = v.data(), p.v_row = vm.row_stride, p.v_col = vm.col_stride;
  p.batch = qs.front(q.rank() - 2);
  p.q_batch = q.strides().front(q.rank() - 2);

  if (options.enable_gqa) {
    if (q.rank() < 3) sdpa_error(fn, "enable_gqa needs a head dimension (..., H, L, E)", qs, ks, vs);
    p.head_axis = p.batch.rank() - 1;
    const Index heads = q.size(-3);
    const Index kv_heads = k.rank() >= 3 ? k.size(-3) : 1;
    if (v.rank() >= 3 && v.size(-3) != kv_heads)
      sdpa_mismatch(fn, "value heads ", v.size(-3), " != key heads ", kv_heads, qs, ks, vs);
    if (kv_heads == 0 || heads % kv_heads != 0)
      sdpa_mismatch(fn, "query heads ", heads, " not a multiple of key/value heads ", kv_heads, qs, ks, vs);
    p.gqa_group = heads / kv_heads;
  }
  kv_batch_strides(fn, "key", k, p.batch, p.head_axis, p.gqa_group, qs, ks, vs, p.k_batch);
  kv_batch_strides(fn, "value", v, p.batch, p.head_axis, p.gqa_group, qs, ks, vs, p.v_batch);

  const double scale = options.scale ? *options.scale
                                     : (qm.cols > 0 ? 1.0 / std::sqrt(static_cast<double>(qm.cols)) : 1.0);
  if (options.scale && !std::isfinite(scale)) scale_error(fn, scale, qs, ks, vs);  // 1/sqrt(E) is finite
  p.scale = static_cast<compute_t<T>>(scale);
  p.causal = options.causal;

  if (options.attn_mask.has_value()) set_mask(fn, options.attn_mask, p, qs, ks, vs);
  p.num_heads = q.rank() >= 3 ? q.size(-3) : 1;
  if (options.window.left != -1 || options.window.right != -1 || options.softcap != 0 || !options.sinks.empty() ||
      !options.alibi_slopes.empty())
    set_variants(fn, options, p, qs, ks, vs);
  return p;
}

template <class Problem>
Shape output_shape(const Problem& p, Index last) {
  Shape s = p.batch;
  s.push_back(p.query_len);
  s.push_back(last);
  return s;
}

// (batch..., L): one value per query row.
template <class Problem>
Shape rows_shape(const Problem& p) {
  Shape s = p.batch;
  s.push_back(p.query_len);
  return s;
}

// Whether `s` is output_shape(p, last), without building it.
template <class Problem>
bool is_output_shape(const Shape& s, const Problem& p, Index last) noexcept {
  const int n = p.batch.rank();
  if (s.rank() != n + 2 || s[n] != p.query_len || s[n + 1] != last) return false;
  for (int i = 0; i < n; ++i)
    if (s[i] != p.batch[i]) return false;
  return true;
}

// Out of line, as make_problem's errors.
[[noreturn]] inline void out_shape_error(const Shape& out, const Shape& expected, const Shape& q, const Shape& k,
                                         const Shape& v) {
  throw std::invalid_argument("qkv::scaled_dot_product_attention_out: out shape " + out.str() + " != expected " +
                              expected.str() + " " + sdpa_shapes(q, k, v));
}

// `inline` gets g++ to inline it into the callers (some 12 instructions per call).
template <class T, class KV>
inline void set_output(AttentionProblem<T, KV>& p, const TensorView<T>& out) {
  p.out = out.data();
  p.out_batch = out.strides().front(out.rank() - 2);
  p.out_row = out.stride(-2);
  p.out_col = out.stride(-1);
}

// Picks the implementation; all three compute the same function. A few query rows
// against many keys take the split-key decode kernel, everything else the fused kernel.
// The plain loop serves only empty problems (and the weights, elsewhere): even the
// notebooks' 6 × 3 runs faster through the fused kernel's packets than through scalars.
// Calls with variants take the kernels' variant instantiations (a user's callables always
// do); the others the plain ones, which are compiled without any variant code.
template <class T, class KV, class V>
void run_attention(const AttentionProblem<T, KV>& p, AttentionWorkspace* workspace, const V& variant) {
  const KernelConfig& config = kernel_config();
  if (p.flops() <= config.naive_max_flops) naive_attention(p, static_cast<T*>(nullptr), variant);
  else if (p.query_len <= config.decode_max_rows)
    split_key_decode(p, decode_chunk<KV>(p.head_dim, p.value_dim), workspace, variant);
  else flash_attention(p, workspace, variant);
}

template <class T, class KV>
void run_attention(const AttentionProblem<T, KV>& p, AttentionWorkspace* workspace) {
  if (p.has_variant()) run_attention(p, workspace, BuiltinVariant{});
  else run_attention(p, workspace, NoVariant{});
}

[[noreturn]] inline void type_error(const char* fn, const char* q_type, const char* k_type, const char* v_type,
                                    const Shape& q, const Shape& k, const Shape& v) {
  sdpa_error(fn,
             std::string("query ") + q_type + ", key " + k_type + ", value " + v_type +
                 ": expected one type for all three (float, double, bfloat16 or half), or float queries with "
                 "bfloat16 or half keys and values of one type",
             q, k, v);
}

// Whether the element types of q, k and v go together (see is_attention_pair_v); the
// calls that do not are compiled into type_error.
template <class Q, class K, class V>
inline constexpr bool types_fit_v = std::is_same_v<tensor_value_t<K>, tensor_value_t<V>> &&
                                    is_attention_pair_v<tensor_value_t<Q>, tensor_value_t<K>>;

template <class Q, class K, class V>
[[noreturn]] void throw_type_error(const char* fn, const Q& q, const K& k, const V& v) {
  type_error(fn, type_name<tensor_value_t<Q>>(), type_name<tensor_value_t<K>>(), type_name<tensor_value_t<V>>(),
             const_view(q).shape(), const_view(k).shape(), const_view(v).shape());
}

template <class Q>
inline constexpr bool is_floating_tensor_v = is_floating_v<tensor_value_t<Q>>;

}  // namespace detail

/// \brief softmax(q·kᵀ·scale + mask)·v, as torch.nn.functional.scaled_dot_product_attention.
///
/// q is (..., L, E), k is (..., S, E), v is (..., S, Ev); the result is (..., L, Ev) with
/// the query's leading dimensions. Leading dimensions of k and v broadcast to the query's
/// (size 1 or missing), and with enable_gqa the head dimension (-3) of k and v may divide
/// the query's. Arguments are Tensors or (strided) TensorViews of float, double, bfloat16
/// or half, all three of one type; or float queries with bfloat16 or half keys and values
/// (a 16-bit KV cache), computed in float with the output in float. With 16-bit inputs the
/// output has their type, the products accumulate and the softmax runs in float, and the
/// softmax weights are rounded to the input type for the product with v, as PyTorch does.
/// A query row that may see no key gives zeros, as PyTorch 2. L = 0 gives an empty
/// result; S = 0 gives zeros.
/// \throws std::invalid_argument naming the shapes when they do not fit together, and
/// the types when they do not go together (e.g. bfloat16 queries with half keys).
/// \code
/// qkv::AttentionOptions<float> options;
/// options.causal = qkv::Causal::upper_left;
/// qkv::Tensor<float> out = qkv::scaled_dot_product_attention(q, k, v, options);
/// \endcode
template <class Q, class K, class V, class = std::enable_if_t<detail::is_tensor_v<Q>>>
Tensor<detail::tensor_value_t<Q>> scaled_dot_product_attention(
    const Q& q, const K& k, const V& v, const AttentionOptions<detail::tensor_value_t<Q>>& options = {}) {
  using T = detail::tensor_value_t<Q>;
  constexpr const char* fn = "qkv::scaled_dot_product_attention";
  static_assert(detail::is_floating_tensor_v<Q>, "qkv::scaled_dot_product_attention: floating-point tensors");
  if constexpr (!detail::types_fit_v<Q, K, V>) {
    detail::throw_type_error(fn, q, k, v);
  } else {
    auto p = detail::make_problem(fn, detail::const_view(q), detail::const_view(k), detail::const_view(v), options);
    Tensor<T> out(detail::output_shape(p, p.value_dim));
    detail::set_output(p, out.view());
    detail::run_attention(p, options.workspace);
    return out;
  }
}

/// Writes the attention into `out`, a (..., L, Ev) view of the caller's memory in any
/// layout, e.g. (B, L, H, Ev) memory seen as (B, H, L, Ev). `out` must not overlap the
/// inputs. \throws std::invalid_argument when out's shape is not (..., L, Ev).
template <class T, class Q, class K, class V, class = std::enable_if_t<detail::is_tensor_v<Q>>>
void scaled_dot_product_attention_out(TensorView<T> out, const Q& q, const K& k, const V& v,
                                      const AttentionOptions<T>& options = {}) {
  constexpr const char* fn = "qkv::scaled_dot_product_attention_out";
  static_assert(std::is_same_v<T, detail::tensor_value_t<Q>>,
                "qkv::scaled_dot_product_attention_out: out has the query's element type");
  static_assert(detail::is_floating_tensor_v<Q>, "qkv::scaled_dot_product_attention_out: floating-point tensors");
  if constexpr (!detail::types_fit_v<Q, K, V>) {
    detail::throw_type_error(fn, q, k, v);
  } else {
    auto p = detail::make_problem(fn, detail::const_view(q), detail::const_view(k), detail::const_view(v), options);
    if (!detail::is_output_shape(out.shape(), p, p.value_dim))
      detail::out_shape_error(out.shape(), detail::output_shape(p, p.value_dim), detail::const_view(q).shape(),
                              detail::const_view(k).shape(), detail::const_view(v).shape());
    detail::set_output(p, out);
    detail::run_attention(p, options.workspace);
  }
}

/// Like scaled_dot_product_attention, and also returns each row's log-sum-exp (..., L), as
/// PyTorch's _scaled_dot_product_flash_attention_for_cpu does, at no extra cost: the
/// forward pass of training. \see AttentionLogSumExpResult.
template <class Q, class K, class V, class = std::enable_if_t<detail::is_tensor_v<Q>>>
AttentionLogSumExpResult<detail::tensor_value_t<Q>> scaled_dot_product_attention_with_logsumexp(
    const Q& q, const K& k, const V& v, const AttentionOptions<detail::tensor_value_t<Q>>& options = {}) {
  using T = detail::tensor_value_t<Q>;
  constexpr const char* fn = "qkv::scaled_dot_product_attention_with_logsumexp";
  static_assert(detail::is_floating_tensor_v<Q>, "qkv::scaled_dot_product_attention_with_logsumexp: floating-point tensors");
  if constexpr (!detail::types_fit_v<Q, K, V>) {
    detail::throw_type_error(fn, q, k, v);
  } else {
    auto p = detail::make_problem(fn, detail::const_view(q), detail::const_view(k), detail::const_view(v), options);
    AttentionLogSumExpResult<T> result{Tensor<T>(detail::output_shape(p, p.value_dim)),
                                       Tensor<detail::compute_t<T>>(detail::rows_shape(p))};
    detail::set_output(p, result.output.view());
    p.logsumexp = result.logsumexp.data();
    detail::run_attention(p, options.workspace);
    return result;
  }
}

/// Like scaled_dot_product_attention, and also returns the softmax weights (..., L, S)
/// (zeros on a row that may see no key). This materialises the L×S matrix; use it to
/// inspect or plot the weights, not for speed.
template <class Q, class K, class V, class = std::enable_if_t<detail::is_tensor_v<Q>>>
AttentionResult<detail::tensor_value_t<Q>> scaled_dot_product_attention_with_weights(
    const Q& q, const K& k, const V& v, const AttentionOptions<detail::tensor_value_t<Q>>& options = {}) {
  using T = detail::tensor_value_t<Q>;
  constexpr const char* fn = "qkv::scaled_dot_product_attention_with_weights";
  static_assert(detail::is_floating_tensor_v<Q>, "qkv::scaled_dot_product_attention_with_weights: floating-point tensors");
  if constexpr (!detail::types_fit_v<Q, K, V>) {
    detail::throw_type_error(fn, q, k, v);
  } else {
    auto p = detail::make_problem(fn, detail::const_view(q), detail::const_view(k), detail::const_view(v), options);
    AttentionResult<T> result{Tensor<T>(detail::output_shape(p, p.value_dim)),
                              Tensor<T>(detail::output_shape(p, p.key_len))};
    detail::set_output(p, result.output.view());
    if (p.has_variant()) detail::naive_attention(p, result.weights.data(), detail::BuiltinVariant{});
    else detail::naive_attention(p, result.weights.data());
    return result;
  }
}

/// \brief scaled_dot_product_attention with a user's score modifier and mask predicate
/// (see AttentionModifiers), inlined into the kernels as PyTorch's FlexAttention compiles
/// its score_mod and mask_mod. They apply after the built-in score variants (soft-capping,
/// ALiBi) and before the masks; the predicate hides keys on top of the other masks.
/// \code
/// // A relative-position bias per head, from a small table.
/// auto bias = [&](float s, qkv::Index, qkv::Index h, qkv::Index i, qkv::Index j) {
///   return s + table[h][std::min<qkv::Index>(i - j, 63)];
/// };
/// auto out = qkv::scaled_dot_product_attention(q, k, v, options, qkv::score_mod(bias));
/// \endcode
template <class Q, class K, class V, class Score, class Mask, class = std::enable_if_t<detail::is_tensor_v<Q>>>
Tensor<detail::tensor_value_t<Q>> scaled_dot_product_attention(const Q& q, const K& k, const V& v,
                                                               const AttentionOptions<detail::tensor_value_t<Q>>& options,
                                                               const AttentionModifiers<Score, Mask>& modifiers) {
  using T = detail::tensor_value_t<Q>;
  constexpr const char* fn = "qkv::scaled_dot_product_attention";
  static_assert(detail::is_floating_tensor_v<Q>, "qkv::scaled_dot_product_attention: floating-point tensors");
  if constexpr (!detail::types_fit_v<Q, K, V>) {
    detail::throw_type_error(fn, q, k, v);
  } else {
    auto p = detail::make_problem(fn, detail::const_view(q), detail::const_view(k), detail::const_view(v), options);
    Tensor<T> out(detail::output_shape(p, p.value_dim));
    detail::set_output(p, out.view());
    detail::run_attention(p, options.workspace, detail::make_variant(modifiers));
    return out;
  }
}

/// scaled_dot_product_attention_with_weights with a user's score modifier and mask
/// predicate; the weights are those the modifiers give. \see AttentionModifiers
template <class Q, class K, class V, class Score, class Mask, class = std::enable_if_t<detail::is_tensor_v<Q>>>
AttentionResult<detail::tensor_value_t<Q>> scaled_dot_product_attention_with_weights(
    const Q& q, const K& k, const V& v, const AttentionOptions<detail::tensor_value_t<Q>>& options,
    const AttentionModifiers<Score, Mask>& modifiers) {
  using T = detail::tensor_value_t<Q>;
  constexpr const char* fn = "qkv::scaled_dot_product_attention_with_weights";
  static_assert(detail::is_floating_tensor_v<Q>, "qkv::scaled_dot_product_attention_with_weights: floating-point tensors");
  if constexpr (!detail::types_fit_v<Q, K, V>) {
    detail::throw_type_error(fn, q, k, v);
  } else {
    auto p = detail::make_problem(fn, detail::const_view(q), detail::const_view(k), detail::const_view(v), options);
    AttentionResult<T> result{Tensor<T>(detail::output_shape(p, p.value_dim)),
                              Tensor<T>(detail::output_shape(p, p.key_len))};
    detail::set_output(p, result.output.view());
    detail::naive_attention(p, result.weights.data(), detail::make_variant(modifiers));
    return result;
  }
}

}  // namespace qkv
