// SPDX-License-Identifier: MIT
// qkv::scaled_dot_product_attention_backward: the gradients of scaled dot-product attention
// with respect to q, k and v, from the forward's output and log-sum-exp, as PyTorch's
// _scaled_dot_product_flash_attention_backward computes them (FlashAttention-2 on CPUs).
#pragma once

#include <stdexcept>
#include <string>
#include <type_traits>

#include "attention.hpp"
#include "detail/flash_backward.hpp"
#include "shape.hpp"
#include "tensor.hpp"
#include "tensor_view.hpp"

namespace qkv {

/// \brief The gradients of one attention call: grad_q (..., L, E), grad_k (..., S, E) and
/// grad_v (..., S, Ev), each of the shape of its input (summed over broadcast dimensions
/// and over the query heads a grouped key/value head serves).
/// \tparam T float, double, bfloat16 or half.
template <class T>
struct AttentionGradients {
  /// (..., L, E): the gradient of the loss with respect to q, of q's shape.
  Tensor<T> grad_q;
  /// (..., S, E): the gradient with respect to k, of k's shape (summed over the dimensions
  /// k was broadcast along and over the query heads each key head serves).
  Tensor<T> grad_k;
  /// (..., S, Ev): the gradient with respect to v, of v's shape (summed as grad_k).
  Tensor<T> grad_v;
};

namespace detail {

[[noreturn]] inline void backward_shape_error(const char* fn, const char* name, const Shape& actual,
                                              const Shape& expected, const Shape& q, const Shape& k, const Shape& v) {
  sdpa_error(fn, std::string(name) + " shape " + actual.str() + " != expected " + expected.str(), q, k, v);
}

template <class T>
StridedOperand<T> strided_operand(T* data, const Strides& strides) {
  const int r = strides.rank();
  return {data, strides.front(r - 2), strides[r - 2], strides[r - 1]};
}

// Zeros in a view of any strides.
template <class T>
void fill_zero(const TensorView<T>& x) {
  for_each_offset(x.shape(), [&](Index o) { x.data()[o] = T(0); }, x.strides());
}

// Validates one backward call, then runs it into the gradient views.
template <class T>
void attention_backward(const char* fn, const TensorView<T>& grad_q, const TensorView<T>& grad_k,
                        const TensorView<T>& grad_v, const TensorView<const T>& grad_out, const TensorView<const T>& q,
                        const TensorView<const T>& k, const TensorView<const T>& v, const TensorView<const T>& out,
                        const TensorView<const T>& logsumexp, const AttentionOptions<T>& options) {
  const Shape &qs = q.shape(), &ks = k.shape(), &vs = v.shape();
  BackwardProblem<T> bp;
  bp.p = make_problem(fn, q, k, v, options);
  AttentionProblem<T>& p = bp.p;
  // The variants have no backward pass yet: refused rather than differentiated as plain.
  if (p.has_variant())
    sdpa_error(fn, "window, softcap, sinks and alibi_slopes have no backward pass yet; leave them unset", qs, ks, vs);
  if (!is_output_shape(out.shape(), p, p.value_dim))
    backward_shape_error(fn, "out", out.shape(), output_shape(p, p.value_dim), qs, ks, vs);
  if (!is_output_shape(grad_out.shape(), p, p.value_dim))
    backward_shape_error(fn, "grad_out", grad_out.shape(), output_shape(p, p.value_dim), qs, ks, vs);
  if (logsumexp.shape() != rows_shape(p))
    backward_shape_error(fn, "logsumexp", logsumexp.shape(), rows_shape(p), qs, ks, vs);
  if (grad_q.shape() != qs) backward_shape_error(fn, "grad_q", grad_q.shape(), qs, qs, ks, vs);
  if (grad_k.shape() != ks) backward_shape_error(fn, "grad_k", grad_k.shape(), ks, qs, ks, vs);
  if (grad_v.shape() != vs) backward_shape_error(fn, "grad_v", grad_v.shape(), vs, qs, ks, vs);
  if (p.query_len == 0 || p.key_len == 0 || p.batch_count() == 0) {  // no products: every gradient is zero
    fill_zero(grad_q), fill_zero(grad_k), fill_zero(grad_v);
    return;
  }
  // The gradients of k and v go where k and v are read from, each query batch element
  // to its (broadcast, grouped) key/value element: make_problem's strides for them.
  const AttentionProblem<T> kv = make_problem(fn, q, TensorView<const T>(grad_k), TensorView<const T>(grad_v), options);
  bp.grad_k = {grad_k.data(), kv.k_batch, kv.k_row, kv.k_col};
  bp.grad_v = {grad_v.data(), kv.v_batch, kv.v_row, kv.v_col};
  bp.out = strided_operand(out.data(), out.strides());
  // The forward's output strides, so that p.offsets() reads no unset stride (it sums them
  // all, though the backward reads `out` through bp.out).
  p.out_batch = bp.out.batch, p.out_row = bp.out.row, p.out_col = bp.out.col;
  bp.grad_out = strided_operand(grad_out.data(), grad_out.strides());
  bp.grad_q = strided_operand(grad_q.data(), grad_q.strides());
  // The kernel reads the log-sum-exp as contiguous (batch..., L) rows.
  Tensor<T> lse_copy;
  if (logsumexp.is_contiguous()) {
    bp.logsumexp = logsumexp.data();
  } else {
    lse_copy = Tensor<T>(logsumexp);
    bp.logsumexp = lse_copy.data();
  }
  flash_backward(bp, options.workspace);
}

// The options of a 16-bit call for its float twin: an additive mask widened (exactly) into
// `storage`, everything else as it is.
template <class T>
AttentionOptions<float> widened_options(const AttentionOptions<T>& options, Tensor<float>& storage) {
  AttentionOptions<float> wide;
  wide.causal = options.causal;
  wide.scale = options.scale;
  wide.enable_gqa = options.enable_gqa;
  wide.workspace = options.workspace;
  wide.window = options.window;
  wide.softcap = options.softcap;
  wide.sinks = options.sinks;
  wide.alibi_slopes = options.alibi_slopes;
  if (options.attn_mask.is_boolean()) {
    wide.attn_mask = options.attn_mask.boolean();
  } else if (options.attn_mask.is_additive()) {
    storage = to<float>(options.attn_mask.additive());
    wide.attn_mask = storage.view();
  }
  return wide;
}

// to[...] = T(from[...]), from contiguous of to's shape: each gradient rounded once.
template <class T>
void round_into(const Tensor<float>& from, const TensorView<T>& to) {
  const float* in = from.data();
  for_each_offset(to.shape(), [&](Index o) { to.data()[o] = static_cast<T>(*in++); }, to.strides());
}

// bfloat16 and half: the float backward on the inputs widened exactly (the softmax, the
// products and their sums in float, as the forward computes them), then each gradient
// rounded to T once, as PyTorch's CPU kernels accumulate reduced types in float. It costs
// a float copy of the inputs and gradients, O(L·E), beside the float pass.
template <class T>
void widened_attention_backward(const char* fn, const TensorView<T>& grad_q, const TensorView<T>& grad_k,
                                const TensorView<T>& grad_v, const TensorView<const T>& grad_out,
                                const TensorView<const T>& q, const TensorView<const T>& k,
                                const TensorView<const T>& v, const TensorView<const T>& out,
                                const TensorView<const float>& logsumexp, const AttentionOptions<T>& options) {
  Tensor<float> mask;
  const AttentionOptions<float> wide = widened_options(options, mask);
  Tensor<float> dq(grad_q.shape()), dk(grad_k.shape()), dv(grad_v.shape());
  const Tensor<float> go = to<float>(grad_out), q32 = to<float>(q), k32 = to<float>(k), v32 = to<float>(v),
                      o32 = to<float>(out);
  attention_backward<float>(fn, dq.view(), dk.view(), dv.view(), go.view(), q32.view(), k32.view(), v32.view(),
                            o32.view(), logsumexp, wide);
  round_into(dq, grad_q), round_into(dk, grad_k), round_into(dv, grad_v);
}

// One backward call of any element type, into the caller's views.
template <class T>
void any_attention_backward(const char* fn, const TensorView<T>& grad_q, const TensorView<T>& grad_k,
                            const TensorView<T>& grad_v, const TensorView<const T>& grad_out,
                            const TensorView<const T>& q, const TensorView<const T>& k, const TensorView<const T>& v,
                            const TensorView<const T>& out, const TensorView<const compute_t<T>>& logsumexp,
                            const AttentionOptions<T>& options) {
  if constexpr (is_half_v<T>)
    widened_attention_backward(fn, grad_q, grad_k, grad_v, grad_out, q, k, v, out, logsumexp, options);
  else
    attention_backward(fn, grad_q, grad_k, grad_v, grad_out, q, k, v, out, logsumexp, options);
}

}  // namespace detail

/// \brief The gradients of scaled_dot_product_attention with respect to q, k and v.
///
/// grad_out is the gradient of the loss with respect to the attention's output (..., L, Ev);
/// q, k, v and options are those of the forward call; out (..., L, Ev) and logsumexp
/// (..., L) are what scaled_dot_product_attention_with_logsumexp returned for them. Every
/// option of the forward works: both causal alignments, boolean and additive masks (no
/// gradient flows into a mask), grouped-query heads (grad_k and grad_v summed over the
/// query heads of each group), broadcast k and v (summed over the broadcast dimensions),
/// any scale, Ev ≠ E, strided views. A row that may see no key contributes nothing.
/// float, double, and bfloat16 and half: these compute in float on their exact widening and
/// round each gradient to their type once; their logsumexp is float, as the forward returns
/// it. Results are bitwise identical for any thread count.
/// \throws std::invalid_argument naming the shapes when they do not fit together.
/// \code
/// auto [out, lse] = qkv::scaled_dot_product_attention_with_logsumexp(q, k, v, options);
/// auto grads = qkv::scaled_dot_product_attention_backward(grad_out, q, k, v, out, lse, options);
/// // grads.grad_q, grads.grad_k, grads.grad_v
/// \endcode
template <class G, class Q, class K, class V, class O, class LSE, class = std::enable_if_t<detail::is_tensor_v<Q>>>
AttentionGradients<detail::tensor_value_t<Q>> scaled_dot_product_attention_backward(
    const G& grad_out, const Q& q, const K& k, const V& v, const O& out, const LSE& logsumexp,
    const AttentionOptions<detail::tensor_value_t<Q>>& options = {}) {
  using T = detail::tensor_value_t<Q>;
  static_assert(detail::is_floating_v<T>, "qkv::scaled_dot_product_attention_backward: a floating-point type");
  static_assert(std::is_same_v<detail::tensor_value_t<G>, T> && std::is_same_v<detail::tensor_value_t<K>, T> &&
                    std::is_same_v<detail::tensor_value_t<V>, T> && std::is_same_v<detail::tensor_value_t<O>, T> &&
                    std::is_same_v<detail::tensor_value_t<LSE>, detail::compute_t<T>>,
                "qkv::scaled_dot_product_attention_backward: grad_out, q, k, v and out of one type, logsumexp in "
                "its compute type (float for bfloat16 and half)");
  const auto qv = detail::const_view(q), kv = detail::const_view(k), vv = detail::const_view(v);
  AttentionGradients<T> g;
  // Shapes are checked before anything is allocated from them.
  const auto p = detail::make_problem("qkv::scaled_dot_product_attention_backward", qv, kv, vv, options);
  (void)p;
  g.grad_q = Tensor<T>(qv.shape());
  g.grad_k = Tensor<T>(kv.shape());
  g.grad_v = Tensor<T>(vv.shape());
  detail::any_attention_backward("qkv::scaled_dot_product_attention_backward", g.grad_q.view(), g.grad_k.view(),
                                 g.grad_v.view(), detail::const_view(grad_out), qv, kv, vv, detail::const_view(out),
                                 detail::const_view(logsumexp), options);
  return g;
}

/// Writes the gradients into grad_q, grad_k and grad_v, views of the caller's memory in any
/// layout, of the shapes of q, k and v. They must not overlap each other or the inputs.
/// \throws std::invalid_argument when a shape does not fit. \see scaled_dot_product_attention_backward.
template <class T, class G, class Q, class K, class V, class O, class LSE,
          class = std::enable_if_t<detail::is_tensor_v<Q>>>
void scaled_dot_product_attention_backward_out(TensorView<T> grad_q, TensorView<T> grad_k, TensorView<T> grad_v,
                                               const G& grad_out, const Q& q, const K& k, const V& v, const O& out,
                                               const LSE& logsumexp, const AttentionOptions<T>& options = {}) {
  static_assert(detail::is_floating_v<T>, "qkv::scaled_dot_product_attention_backward_out: a floating-point type");
  static_assert(std::is_same_v<detail::tensor_value_t<G>, T> && std::is_same_v<detail::tensor_value_t<Q>, T> &&
                    std::is_same_v<detail::tensor_value_t<K>, T> && std::is_same_v<detail::tensor_value_t<V>, T> &&
                    std::is_same_v<detail::tensor_value_t<O>, T> &&
                    std::is_same_v<detail::tensor_value_t<LSE>, detail::compute_t<T>>,
                "qkv::scaled_dot_product_attention_backward_out: gradients and inputs of one type, logsumexp in its "
                "compute type (float for bfloat16 and half)");
  detail::any_attention_backward("qkv::scaled_dot_product_attention_backward_out", grad_q, grad_k, grad_v,
                                 detail::const_view(grad_out), detail::const_view(q), detail::const_view(k),
                                 detail::const_view(v), detail::const_view(out), detail::const_view(logsumexp),
                                 options);
}

}  // namespace qkv
