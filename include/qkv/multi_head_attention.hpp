// SPDX-License-Identifier: MIT
// qkv::MultiHeadAttention: the computation of torch.nn.MultiheadAttention (batch_first=True,
// dropout 0) on weights in PyTorch's own layout, plus grouped-query attention, rotary
// position embeddings and token-by-token decoding through a KVCache.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "attention.hpp"
#include "attention_backward.hpp"
#include "kv_cache.hpp"
#include "random.hpp"
#include "rope.hpp"
#include "shape.hpp"
#include "tensor.hpp"
#include "tensor_view.hpp"

namespace qkv {

/// \brief The sizes of a MultiHeadAttention beside embed_dim and num_heads, named after
/// nn.MultiheadAttention's arguments (plus num_kv_heads for grouped-query attention).
struct MultiHeadAttentionConfig {
  /// The first four fields in order, so that `{kdim, vdim, bias, num_kv_heads}` reads as
  /// before the variants came; set those by name. (A constructor rather than aggregate
  /// initialisation: g++'s -Wmissing-field-initializers would flag every shorter brace list.)
  MultiHeadAttentionConfig(Index key_features = 0, Index value_features = 0, bool with_bias = true,
                           Index kv_heads = 0)
      : kdim(key_features), vdim(value_features), bias(with_bias), num_kv_heads(kv_heads) {}

  /// Features of the key input; 0 means embed_dim.
  Index kdim = 0;
  /// Features of the value input; 0 means embed_dim.
  Index vdim = 0;
  /// Biases on the four projections, as nn.MultiheadAttention(bias=True).
  bool bias = true;
  /// Key/value heads, each shared by num_heads / num_kv_heads consecutive query heads;
  /// 0 means num_heads (plain multi-head attention). Must divide num_heads.
  Index num_kv_heads = 0;
  /// The layer's attention variants (AttentionOptions has the same): a sliding window
  /// (Mistral, Gemma 2's local layers), logit soft-capping (Gemma 2), one sink logit per
  /// head (gpt-oss), ALiBi slopes per head (BLOOM; qkv::alibi_slopes(num_heads)). They apply
  /// in forward and forward_cached; forward_for_backward refuses them (no backward yet).
  AttentionWindow window;
  /// Soft-capping of the scaled scores, softcap·tanh(s / softcap); 0 = off.
  double softcap = 0;
  /// One logit per query head in each softmax's denominator; empty = none.
  std::vector<double> sinks;
  /// One ALiBi slope per query head; empty = none.
  std::vector<double> alibi_slopes;
};

/// \brief Options of MultiHeadAttention::forward, named after nn.MultiheadAttention.forward's
/// arguments, with its mask convention.
///
/// Both masks follow nn.MultiheadAttention, not F.scaled_dot_product_attention: a boolean
/// `true` HIDES a key, and an additive mask (of T) is added to the scaled scores. Both are
/// views: their memory must outlive the call.
template <class T>
struct MultiHeadAttentionForward {
  /// (batch, S), or (S) for unbatched input: true (or -inf) where a key is padding.
  AttentionMask<T> key_padding_mask;
  /// (L, S) for every batch element and head, or (batch * num_heads, L, S) as PyTorch
  /// ((num_heads, L, S) for unbatched input): true (or -inf) where a query may not see a key.
  AttentionMask<T> attn_mask;
  /// Causal masking; Causal::upper_left is PyTorch's attn_mask=torch.triu(ones(L, S), 1).bool()
  /// (is_causal=True in PyTorch 2). Combines with the masks.
  Causal causal = Causal::none;
  /// Also return the softmax weights. PyTorch's default is true; qkv's is false, which
  /// keeps the L x S matrices out of memory.
  bool need_weights = false;
  /// Weights averaged over heads (batch, L, S), as PyTorch's default; false gives
  /// (batch, num_heads, L, S).
  bool average_attn_weights = true;
  /// Rotary embedding applied to every query and key head before attending; none by default.
  const RotaryEmbedding<T>* rope = nullptr;
  /// Position of the first query and key row, for `rope`.
  Index position_offset = 0;
};

/// The output (batch, L, embed_dim) of MultiHeadAttention::forward and, when asked for,
/// its attention weights (empty otherwise).
template <class T>
struct MultiHeadAttentionResult {
  /// (batch, L, embed_dim), or (L, embed_dim) for unbatched inputs.
  Tensor<T> output;
  /// (batch, L, S) averaged over heads, (batch, num_heads, L, S) with average_attn_weights = false; empty unless need_weights.
  Tensor<T> weights;
};

/// \brief What MultiHeadAttention::forward_for_backward keeps for backward: the inputs,
/// their projections, the heads' concatenated output and log-sum-exp, and the attention's
/// options (whose masks view the caller's masks or the storage here: the caller's masks
/// must outlive backward). Opaque to the caller.
template <class T>
struct MultiHeadAttentionSaved {
  /// \var Tensor<T> query
  /// The query input (batch, L, embed_dim), contiguous (batch 1 for unbatched input).
  /// \var Tensor<T> key
  /// The key input (batch, S, kdim), contiguous.
  /// \var Tensor<T> value
  /// The value input (batch, S, vdim), contiguous.
  Tensor<T> query, key, value;
  /// \var Tensor<T> q
  /// The projected queries (batch, L, embed_dim), rotated when `rope` is set.
  /// \var Tensor<T> k
  /// The projected keys (batch, S, kv_dim), rotated when `rope` is set.
  /// \var Tensor<T> v
  /// The projected values (batch, S, kv_dim).
  Tensor<T> q, k, v;
  /// The heads' outputs side by side (batch, L, embed_dim): out_proj's input.
  Tensor<T> attended;
  /// Each head's query rows' log-sum-exp (batch, num_heads, L).
  Tensor<T> logsumexp;
  /// The masks merged into one boolean mask (true = may attend) when forward built one
  /// from boolean masks; empty otherwise.
  Tensor<bool> bool_mask;
  /// The masks merged into one additive mask when forward built one (both masks given,
  /// one of them additive); empty otherwise.
  Tensor<T> additive_mask;
  /// The options the heads attended with: the mask (bool_mask, additive_mask or the
  /// caller's), causal and enable_gqa.
  AttentionOptions<T> attention;
  /// Whether the inputs were batched (batch, L, embed_dim) rather than (L, embed_dim).
  bool batched = true;
  /// The rotary embedding the queries and keys were rotated with, or null; it must
  /// outlive backward, which turns their gradients back with it.
  const RotaryEmbedding<T>* rope = nullptr;
  /// Position of the first query and key row for `rope`.
  Index position_offset = 0;
};

/// The output of MultiHeadAttention::forward_for_backward and what backward needs.
template <class T>
struct MultiHeadAttentionTrainingResult {
  /// (batch, L, embed_dim), or (L, embed_dim) for unbatched inputs: forward's output.
  Tensor<T> output;
  /// What backward needs, to pass to it with the gradient of the output.
  MultiHeadAttentionSaved<T> saved;
};

/// \brief The gradients MultiHeadAttention::backward returns, in PyTorch's layout: of the
/// three inputs (of their shapes; for self-attention, forward(x), the gradient of x is
/// grad_query + grad_key + grad_value, as autograd sums it), of each projection's weight
/// (out_features, in_features) and bias (empty without bias).
template <class T>
struct MultiHeadAttentionGradients {
  /// \var Tensor<T> grad_query
  /// The gradient of the query input, of its shape (batch, L, embed_dim) or (L, embed_dim).
  /// \var Tensor<T> grad_key
  /// The gradient of the key input, of its shape (batch, S, kdim) or (S, kdim).
  /// \var Tensor<T> grad_value
  /// The gradient of the value input, of its shape (batch, S, vdim) or (S, vdim).
  Tensor<T> grad_query, grad_key, grad_value;
  /// \var Tensor<T> grad_q_proj_weight
  /// PyTorch's q_proj_weight.grad (embed_dim, embed_dim).
  /// \var Tensor<T> grad_k_proj_weight
  /// PyTorch's k_proj_weight.grad (kv_dim, kdim).
  /// \var Tensor<T> grad_v_proj_weight
  /// PyTorch's v_proj_weight.grad (kv_dim, vdim).
  /// \var Tensor<T> grad_out_proj_weight
  /// PyTorch's out_proj.weight.grad (embed_dim, embed_dim).
  Tensor<T> grad_q_proj_weight, grad_k_proj_weight, grad_v_proj_weight, grad_out_proj_weight;
  /// \var Tensor<T> grad_q_proj_bias
  /// The gradient of the query bias (embed_dim), in_proj_bias.grad[:embed_dim]; empty
  /// without bias.
  /// \var Tensor<T> grad_k_proj_bias
  /// The gradient of the key bias (kv_dim); empty without bias.
  /// \var Tensor<T> grad_v_proj_bias
  /// The gradient of the value bias (kv_dim); empty without bias.
  /// \var Tensor<T> grad_out_proj_bias
  /// PyTorch's out_proj.bias.grad (embed_dim); empty without bias.
  Tensor<T> grad_q_proj_bias, grad_k_proj_bias, grad_v_proj_bias, grad_out_proj_bias;

  /// PyTorch's in_proj_weight.grad (embed_dim + 2 kv_dim, embed_dim): rows q, k, v.
  Tensor<T> grad_in_proj_weight() const { return stacked(grad_q_proj_weight, grad_k_proj_weight, grad_v_proj_weight); }
  /// PyTorch's in_proj_bias.grad (embed_dim + 2 kv_dim); empty without bias.
  Tensor<T> grad_in_proj_bias() const { return stacked(grad_q_proj_bias, grad_k_proj_bias, grad_v_proj_bias); }

 private:
  static Tensor<T> stacked(const Tensor<T>& a, const Tensor<T>& b, const Tensor<T>& c) {
    if (a.empty()) return Tensor<T>();
    Shape shape = a.shape();
    shape[0] = a.size(0) + b.size(0) + c.size(0);
    Tensor<T> out(shape);
    std::copy(c.begin(), c.end(), std::copy(b.begin(), b.end(), std::copy(a.begin(), a.end(), out.begin())));
    return out;
  }
};

namespace detail::mha {

// The gradients of y = x·weightᵀ + bias (x (rows, in), y (rows, out), contiguous) from
// grad_y: grad_x = grad_y·weight, grad_weight = grad_yᵀ·x, grad_bias = the column sums.
template <class T>
void linear_backward(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& grad_y, bool has_bias,
                     Tensor<T>& grad_x, Tensor<T>& grad_weight, Tensor<T>& grad_bias) {
  const Index in = weight.size(1), out = weight.size(0), rows = x.numel() / (in > 0 ? in : 1);
  const auto x_rows = TensorView<const T>(x.data(), Shape{rows, in}).matrix();
  const auto gy_rows = TensorView<const T>(grad_y.data(), Shape{rows, out}).matrix();
  grad_x = Tensor<T>(x.shape());
  TensorView<T>(grad_x.data(), Shape{rows, in}).matrix().noalias() = gy_rows * weight.matrix();
  grad_weight = Tensor<T>(weight.shape());
  grad_weight.matrix().noalias() = gy_rows.transpose() * x_rows;
  grad_bias = Tensor<T>();
  if (has_bias) {
    grad_bias = Tensor<T>(Shape{out});
    TensorView<T>(grad_bias.data(), Shape{1, out}).matrix() = gy_rows.colwise().sum();
  }
}

// split_heads for memory the caller only reads.
template <class T>
TensorView<const T> split_heads(const Tensor<T>& x, Index heads) {
  const Index batch = x.size(0), length = x.size(1), width = x.size(2), head_dim = width / heads;
  return TensorView<const T>(x.data(), Shape{batch, heads, length, head_dim},
                             Strides{length * width, head_dim, width, 1});
}

// x (..., in) · weightᵀ + bias for weight (out, in), as torch.nn.functional.linear. All
// leading dimensions go through one matrix product; x is copied only if its rows are not
// evenly strided.
template <class T>
Tensor<T> linear(TensorView<const T> x, const Tensor<T>& weight, const Tensor<T>& bias, bool has_bias) {
  const Index in = weight.size(1), out = weight.size(0), rows = x.numel() / (in > 0 ? in : 1);
  Index row_stride = in, span = -1;
  bool even = x.size(-1) <= 1 || x.stride(-1) == 1;
  for (int d = x.rank() - 2; even && d >= 0; --d) {
    if (x.size(d) == 1) continue;
    if (span < 0) row_stride = x.stride(d);
    else even = x.stride(d) == span;
    span = x.stride(d) * x.size(d);
  }
  Tensor<T> copy;
  if (!even || row_stride < in) {
    copy = Tensor<T>(x);
    x = copy.view();
    row_stride = in;
  }
  Shape shape = x.shape();
  shape[shape.rank() - 1] = out;
  Tensor<T> y(shape);
  auto y_rows = TensorView<T>(y.data(), Shape{rows, out}).matrix();
  y_rows.noalias() = TensorView<const T>(x.data(), Shape{rows, in}, Strides{row_stride, 1}).matrix() *
                     weight.matrix().transpose();
  if (has_bias) y_rows.rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias.data(), out);
  return y;
}

// (batch, L, heads * head_dim) memory seen as (batch, heads, L, head_dim), without copying.
template <class T>
TensorView<T> split_heads(Tensor<T>& x, Index heads) {
  const Index batch = x.size(0), length = x.size(1), width = x.size(2), head_dim = width / heads;
  return TensorView<T>(x.data(), Shape{batch, heads, length, head_dim},
                       Strides{length * width, head_dim, width, 1});
}

template <class T>
void copy_into(TensorView<T> to, TensorView<const T> from) {
  T* out = to.data();
  const T* in = from.data();
  for_each_offset(to.shape(), [&](Index o, Index i) { out[o] = in[i]; }, to.strides(), from.strides());
}

// A mask view with a different shape over the same elements: `shape` and `strides` replace
// the view's own.
template <class T>
AttentionMask<T> reshaped_mask(const AttentionMask<T>& mask, const Shape& shape, const Strides& strides) {
  if (mask.is_boolean()) return TensorView<const bool>(mask.boolean().data(), shape, strides);
  return TensorView<const T>(mask.additive().data(), shape, strides);
}

template <class T>
Strides expanded_strides(const AttentionMask<T>& mask, const Shape& shape) {
  return mask.is_boolean() ? mask.boolean().expand(shape).strides() : mask.additive().expand(shape).strides();
}

// The additive value of a mask in PyTorch's nn.MultiheadAttention convention.
template <class T>
T hiding_value(const AttentionMask<T>& mask, Index offset) {
  if (mask.is_additive()) return mask.additive().data()[offset];
  return mask.boolean().data()[offset] ? -std::numeric_limits<T>::infinity() : T(0);
}

// Masks `a` and, if it has a value, `b` in nn.MultiheadAttention's convention (true hides)
// merged over `shape` into one mask for scaled_dot_product_attention (true = may attend),
// written to the caller's storage: a boolean one when both are boolean, else the sum of
// their additive values with -inf for true, as PyTorch 2 merges them.
template <class T>
AttentionMask<T> merge_masks(const AttentionMask<T>& a, const AttentionMask<T>& b, const Shape& shape,
                                    Tensor<bool>& bool_storage, Tensor<T>& additive_storage) {
  const AttentionMask<T>& second = b.has_value() ? b : a;
  const Strides a_strides = expanded_strides(a, shape), b_strides = expanded_strides(second, shape);
  if (a.is_boolean() && second.is_boolean()) {
    bool_storage = Tensor<bool>(shape);
    bool* out = bool_storage.data();
    const bool *hide_a = a.boolean().data(), *hide_b = second.boolean().data();
    for_each_offset(shape, [&](Index i, Index j) { *out++ = !(hide_a[i] || hide_b[j]); }, a_strides, b_strides);
    return bool_storage;
  }
  additive_storage = Tensor<T>(shape);
  T* out = additive_storage.data();
  for_each_offset(
      shape, [&](Index i, Index j) { *out++ = hiding_value(a, i) + (b.has_value() ? hiding_value(b, j) : T(0)); },
      a_strides, b_strides);
  return additive_storage;
}

}  // namespace detail::mha

/// \brief Multi-head attention with its four projections, computing what
/// torch.nn.MultiheadAttention(embed_dim, num_heads, batch_first=True) computes (dropout 0,
/// no add_bias_kv or add_zero_attn), plus grouped-query attention and RoPE.
/// \tparam T float or double.
///
/// Queries, keys and values are projected as nn.Linear does, x·Wᵀ + b, with every weight in
/// PyTorch's (out_features, in_features) layout: pass `in_proj_weight`, `q_proj_weight`,
/// `out_proj.weight` etc. as they are. (qkv::ScaledDotProductAttention, the notebooks'
/// module, computes x·W instead and takes nn.Linear weights transposed.) The projected
/// queries are split into num_heads heads of head_dim = embed_dim / num_heads features,
/// each attends with qkv::scaled_dot_product_attention, and the heads' outputs,
/// concatenated, go through out_proj.
///
/// With config.num_kv_heads < num_heads, keys and values have num_kv_heads heads, each
/// shared by num_heads / num_kv_heads consecutive query heads (grouped-query attention,
/// which PyTorch's module lacks): k_proj and v_proj then have num_kv_heads * head_dim rows.
///
/// A query row whose keys are all masked out gets zero attention (its output is
/// out_proj's bias, its weights zeros), qkv's scaled_dot_product_attention semantics;
/// PyTorch 1.13 returns NaN for such a row.
///
/// A layer built without a generator has zero weights; reset_parameters draws them. For
/// autoregressive decoding, make_cache gives a KVCache for the layer and forward_cached
/// feeds it new tokens.
/// \code
/// qkv::NumpyRandom rng(0);
/// qkv::MultiHeadAttention<float> mha(64, 8, {}, rng);          // nn.MultiheadAttention(64, 8)
/// mha.set_in_proj(in_proj_weight, in_proj_bias);               // (192, 64), (192), as PyTorch
/// mha.set_out_proj(out_proj_weight, out_proj_bias);            // (64, 64), (64)
/// qkv::MultiHeadAttentionForward<float> options;
/// options.key_padding_mask = padding;                          // (batch, S) bool, true = pad
/// options.need_weights = true;
/// auto [output, weights] = mha.forward(x, options);            // (batch, L, 64), (batch, L, L)
/// \endcode
/// \see scaled_dot_product_attention, KVCache, RotaryEmbedding.
template <class T>
class MultiHeadAttention {
  static_assert(std::is_floating_point_v<T>, "qkv::MultiHeadAttention: float or double");

 public:
  /// A layer with zero weights and biases; see reset_parameters and the set_* functions.
  /// \throws std::invalid_argument when num_heads does not divide embed_dim, num_kv_heads
  /// does not divide num_heads, or a size is not positive.
  MultiHeadAttention(Index embed_dim, Index num_heads, MultiHeadAttentionConfig config = {})
      : embed_dim_(embed_dim),
        num_heads_(num_heads),
        num_kv_heads_(config.num_kv_heads ? config.num_kv_heads : num_heads),
        kdim_(config.kdim ? config.kdim : embed_dim),
        vdim_(config.vdim ? config.vdim : embed_dim),
        has_bias_(config.bias),
        window_(config.window),
        softcap_(config.softcap),
        sinks_(config.sinks),
        alibi_slopes_(config.alibi_slopes) {
    check_sizes(config);
    head_dim_ = embed_dim_ / num_heads_;
    q_weight_ = Tensor<T>(Shape{embed_dim_, embed_dim_});
    k_weight_ = Tensor<T>(Shape{kv_dim(), kdim_});
    v_weight_ = Tensor<T>(Shape{kv_dim(), vdim_});
    out_weight_ = Tensor<T>(Shape{embed_dim_, embed_dim_});
    if (has_bias_) {
      q_bias_ = Tensor<T>(Shape{embed_dim_});
      k_bias_ = Tensor<T>(Shape{kv_dim()});
      v_bias_ = Tensor<T>(Shape{kv_dim()});
      out_bias_ = Tensor<T>(Shape{embed_dim_});
    }
  }
  /// A layer whose weights reset_parameters(rng) draws.
  MultiHeadAttention(Index embed_dim, Index num_heads, MultiHeadAttentionConfig config, NumpyRandom& rng)
      : MultiHeadAttention(embed_dim, num_heads, config) {
    reset_parameters(rng);
  }

  /// Draws the weights from PyTorch's distributions (MultiheadAttention._reset_parameters)
  /// with NumPy's generator, so the values are not those torch.manual_seed would give:
  /// - the input projections xavier-uniform, U(±sqrt(6 / (fan_in + fan_out))): one
  ///   np.random.uniform draw over the packed (embed_dim + 2 kv_dim, embed_dim) in_proj
  ///   weight when kdim == vdim == embed_dim, else q_proj, k_proj, v_proj in turn;
  /// - then out_proj's weight as nn.Linear(embed_dim, embed_dim), U(±1/sqrt(embed_dim));
  /// - every bias zero.
  void reset_parameters(NumpyRandom& rng) {
    const auto xavier = [&rng](Index rows, Index cols) {
      const double bound = std::sqrt(6.0 / static_cast<double>(rows + cols));
      return rng.uniform<T>(-bound, bound, Shape{rows, cols});
    };
    if (packs_in_proj()) {
      const Tensor<T> packed = xavier(embed_dim_ + 2 * kv_dim(), embed_dim_);
      unpack_in_proj(packed.view());
    } else {
      q_weight_ = xavier(embed_dim_, embed_dim_);
      k_weight_ = xavier(kv_dim(), kdim_);
      v_weight_ = xavier(kv_dim(), vdim_);
    }
    const double bound = 1.0 / std::sqrt(static_cast<double>(embed_dim_));
    out_weight_ = rng.uniform<T>(-bound, bound, Shape{embed_dim_, embed_dim_});
    for (Tensor<T>* bias : {&q_bias_, &k_bias_, &v_bias_, &out_bias_}) std::fill(bias->begin(), bias->end(), T(0));
  }

  /// Width of the queries and of the output.
  Index embed_dim() const noexcept { return embed_dim_; }
  /// Number of query heads.
  Index num_heads() const noexcept { return num_heads_; }
  /// Number of key/value heads (num_heads without grouped-query attention).
  Index num_kv_heads() const noexcept { return num_kv_heads_; }
  /// embed_dim / num_heads.
  Index head_dim() const noexcept { return head_dim_; }
  /// Width of the key inputs (embed_dim unless config.kdim).
  Index kdim() const noexcept { return kdim_; }
  /// Width of the value inputs (embed_dim unless config.vdim).
  Index vdim() const noexcept { return vdim_; }
  /// Rows of k_proj and v_proj: num_kv_heads * head_dim (embed_dim without GQA).
  Index kv_dim() const noexcept { return num_kv_heads_ * head_dim_; }
  /// Whether the projections add biases (config.bias).
  bool has_bias() const noexcept { return has_bias_; }

  /// PyTorch's packed in_proj_weight (embed_dim + 2 kv_dim, embed_dim), rows q, k, v, and
  /// in_proj_bias (embed_dim + 2 kv_dim); 3 embed_dim rows without GQA. Needs kdim == vdim ==
  /// embed_dim. Pass no bias to a layer without bias.
  /// \throws std::invalid_argument naming the expected and actual shapes.
  void set_in_proj(TensorView<const T> weight, std::optional<TensorView<const T>> bias = std::nullopt) {
    const char* fn = "qkv::MultiHeadAttention::set_in_proj";
    if (!packs_in_proj())
      throw std::invalid_argument(std::string(fn) + ": needs kdim == vdim == embed_dim, got kdim " +
                                  std::to_string(kdim_) + ", vdim " + std::to_string(vdim_) + ", embed_dim " +
                                  std::to_string(embed_dim_) + "; use set_q_proj, set_k_proj and set_v_proj");
    const Index rows = embed_dim_ + 2 * kv_dim();
    check_weight(fn, weight, Shape{rows, embed_dim_}, "(embed_dim + 2 * num_kv_heads * head_dim, embed_dim)");
    check_bias(fn, bias, rows);
    unpack_in_proj(weight);
    if (has_bias_) {
      q_bias_ = Tensor<T>(bias->narrow(0, 0, embed_dim_));
      k_bias_ = Tensor<T>(bias->narrow(0, embed_dim_, kv_dim()));
      v_bias_ = Tensor<T>(bias->narrow(0, embed_dim_ + kv_dim(), kv_dim()));
    }
  }
  /// PyTorch's q_proj_weight (embed_dim, embed_dim) and its bias, in_proj_bias[:embed_dim].
  void set_q_proj(TensorView<const T> weight, std::optional<TensorView<const T>> bias = std::nullopt) {
    set_projection("qkv::MultiHeadAttention::set_q_proj", weight, bias, Shape{embed_dim_, embed_dim_},
                   "(embed_dim, embed_dim)", q_weight_, q_bias_);
  }
  /// PyTorch's k_proj_weight (kv_dim, kdim) and its bias (kv_dim), in_proj_bias[embed_dim:][:kv_dim];
  /// kv_dim = num_kv_heads * head_dim.
  void set_k_proj(TensorView<const T> weight, std::optional<TensorView<const T>> bias = std::nullopt) {
    set_projection("qkv::MultiHeadAttention::set_k_proj", weight, bias, Shape{kv_dim(), kdim_},
                   "(num_kv_heads * head_dim, kdim)", k_weight_, k_bias_);
  }
  /// PyTorch's v_proj_weight (kv_dim, vdim) and its bias (kv_dim), the last kv_dim of in_proj_bias.
  void set_v_proj(TensorView<const T> weight, std::optional<TensorView<const T>> bias = std::nullopt) {
    set_projection("qkv::MultiHeadAttention::set_v_proj", weight, bias, Shape{kv_dim(), vdim_},
                   "(num_kv_heads * head_dim, vdim)", v_weight_, v_bias_);
  }
  /// PyTorch's out_proj.weight (embed_dim, embed_dim) and out_proj.bias (embed_dim).
  void set_out_proj(TensorView<const T> weight, std::optional<TensorView<const T>> bias = std::nullopt) {
    set_projection("qkv::MultiHeadAttention::set_out_proj", weight, bias, Shape{embed_dim_, embed_dim_},
                   "(embed_dim, embed_dim)", out_weight_, out_bias_);
  }

  /// The weights in PyTorch's layout; biases are empty (shape [0]) without bias.
  const Tensor<T>& q_proj_weight() const noexcept { return q_weight_; }
  /// k_proj_weight (kv_dim, kdim).
  const Tensor<T>& k_proj_weight() const noexcept { return k_weight_; }
  /// v_proj_weight (kv_dim, vdim).
  const Tensor<T>& v_proj_weight() const noexcept { return v_weight_; }
  /// out_proj.weight (embed_dim, embed_dim).
  const Tensor<T>& out_proj_weight() const noexcept { return out_weight_; }
  /// The query bias (embed_dim), in_proj_bias[:embed_dim].
  const Tensor<T>& q_proj_bias() const noexcept { return q_bias_; }
  /// The key bias (kv_dim).
  const Tensor<T>& k_proj_bias() const noexcept { return k_bias_; }
  /// The value bias (kv_dim).
  const Tensor<T>& v_proj_bias() const noexcept { return v_bias_; }
  /// out_proj.bias (embed_dim).
  const Tensor<T>& out_proj_bias() const noexcept { return out_bias_; }
  /// The packed in_proj_weight (embed_dim + 2 kv_dim, embed_dim), a copy.
  /// \throws std::invalid_argument unless kdim == vdim == embed_dim.
  Tensor<T> in_proj_weight() const {
    return packed("qkv::MultiHeadAttention::in_proj_weight", q_weight_, k_weight_, v_weight_);
  }
  /// The packed in_proj_bias (embed_dim + 2 kv_dim), a copy; empty without bias.
  Tensor<T> in_proj_bias() const {
    if (!has_bias_) return Tensor<T>();
    return packed("qkv::MultiHeadAttention::in_proj_bias", q_bias_, k_bias_, v_bias_);
  }

  /// Attention of `query` (batch, L, embed_dim) to `key` (batch, S, kdim) and `value`
  /// (batch, S, vdim): output (batch, L, embed_dim) and, with options.need_weights, the
  /// weights (batch, L, S) averaged over heads or (batch, num_heads, L, S). Unbatched
  /// inputs (L, embed_dim), (S, kdim), (S, vdim) give (L, embed_dim) and (L, S) /
  /// (num_heads, L, S). Inputs may be strided views.
  /// \throws std::invalid_argument naming the shapes when inputs or masks do not fit.
  MultiHeadAttentionResult<T> forward(TensorView<const T> query, TensorView<const T> key, TensorView<const T> value,
                                      const MultiHeadAttentionForward<T>& options = {}) const {
    const char* fn = "qkv::MultiHeadAttention::forward";
    const bool batched = check_inputs(fn, query, key, value);
    check_rope(fn, options.rope);
    if (!batched) {  // as PyTorch: a batch of one, squeezed out of the results
      query = query.unsqueeze(0);
      key = key.unsqueeze(0);
      value = value.unsqueeze(0);
    }
    const Index batch = query.size(0), query_len = query.size(1), key_len = key.size(1);

    Tensor<bool> bool_mask;
    Tensor<T> additive_mask;
    AttentionOptions<T> attention;
    attention.attn_mask = attention_mask(fn, options, batched, batch, query_len, key_len, bool_mask, additive_mask);
    attention.causal = options.causal;
    attention.enable_gqa = num_kv_heads_ != num_heads_;
    set_variants(attention);

    Tensor<T> q = detail::mha::linear(query, q_weight_, q_bias_, has_bias_);
    Tensor<T> k = detail::mha::linear(key, k_weight_, k_bias_, has_bias_);
    Tensor<T> v = detail::mha::linear(value, v_weight_, v_bias_, has_bias_);
    const TensorView<T> q_heads = detail::mha::split_heads(q, num_heads_);
    const TensorView<T> k_heads = detail::mha::split_heads(k, num_kv_heads_);
    const TensorView<T> v_heads = detail::mha::split_heads(v, num_kv_heads_);
    if (options.rope) {
      options.rope->apply(q_heads, options.position_offset);
      options.rope->apply(k_heads, options.position_offset);
    }

    // Heads write side by side into (batch, L, num_heads * head_dim), out_proj's input.
    Tensor<T> attended(Shape{batch, query_len, embed_dim_});
    MultiHeadAttentionResult<T> result;
    if (options.need_weights) {
      // This path materialises the weights anyway; its head-major output is copied into place.
      AttentionResult<T> heads = scaled_dot_product_attention_with_weights(q_heads, k_heads, v_heads, attention);
      detail::mha::copy_into<T>(detail::mha::split_heads(attended, num_heads_), heads.output.view());
      result.weights = options.average_attn_weights ? mean_over_heads(heads.weights) : std::move(heads.weights);
      if (!batched) {
        const Shape unbatched = result.weights.shape().drop_front();
        result.weights = std::move(result.weights).reshape(unbatched);
      }
    } else {
      scaled_dot_product_attention_out(detail::mha::split_heads(attended, num_heads_), q_heads, k_heads, v_heads,
                                       attention);
    }
    result.output = detail::mha::linear<T>(attended.view(), out_weight_, out_bias_, has_bias_);
    if (!batched) result.output = std::move(result.output).reshape(Shape{query_len, embed_dim_});
    return result;
  }
  /// Self-attention: forward(x, x, x, options).
  MultiHeadAttentionResult<T> forward(TensorView<const T> x, const MultiHeadAttentionForward<T>& options = {}) const {
    return forward(x, x, x, options);
  }

  /// The forward pass of training: forward's output (no weights), and what backward needs
  /// (MultiHeadAttentionSaved: the inputs, their projections and each row's log-sum-exp,
  /// about 3× the activations of one forward call). The masks and the rotary embedding of
  /// `options` must outlive backward.
  /// \throws std::invalid_argument as forward.
  /// \code
  /// auto [output, saved] = mha.forward_for_backward(x, x, x, options);
  /// auto grads = mha.backward(saved, grad_output);   // grad_output: dLoss/dOutput
  /// \endcode
  MultiHeadAttentionTrainingResult<T> forward_for_backward(TensorView<const T> query, TensorView<const T> key,
                                                           TensorView<const T> value,
                                                           const MultiHeadAttentionForward<T>& options = {}) const {
    const char* fn = "qkv::MultiHeadAttention::forward_for_backward";
    MultiHeadAttentionTrainingResult<T> result;
    MultiHeadAttentionSaved<T>& s = result.saved;
    s.batched = check_inputs(fn, query, key, value);
    check_rope(fn, options.rope);
    if (has_variants())
      throw std::invalid_argument(std::string(fn) +
                                  ": the layer's window, softcap, sinks and alibi_slopes have no backward pass yet");
    s.rope = options.rope;
    s.position_offset = options.position_offset;
    if (!s.batched) {
      query = query.unsqueeze(0);
      key = key.unsqueeze(0);
      value = value.unsqueeze(0);
    }
    const Index batch = query.size(0), query_len = query.size(1), key_len = key.size(1);
    s.attention.attn_mask =
        attention_mask(fn, options, s.batched, batch, query_len, key_len, s.bool_mask, s.additive_mask);
    s.attention.causal = options.causal;
    s.attention.enable_gqa = num_kv_heads_ != num_heads_;
    s.query = Tensor<T>(query), s.key = Tensor<T>(key), s.value = Tensor<T>(value);
    s.q = detail::mha::linear<T>(s.query.view(), q_weight_, q_bias_, has_bias_);
    s.k = detail::mha::linear<T>(s.key.view(), k_weight_, k_bias_, has_bias_);
    s.v = detail::mha::linear<T>(s.value.view(), v_weight_, v_bias_, has_bias_);
    if (s.rope) {
      s.rope->apply(detail::mha::split_heads(s.q, num_heads_), s.position_offset);
      s.rope->apply(detail::mha::split_heads(s.k, num_kv_heads_), s.position_offset);
    }
    s.attended = Tensor<T>(Shape{batch, query_len, embed_dim_});
    auto heads = scaled_dot_product_attention_with_logsumexp(detail::mha::split_heads(s.q, num_heads_),
                                                             detail::mha::split_heads(s.k, num_kv_heads_),
                                                             detail::mha::split_heads(s.v, num_kv_heads_), s.attention);
    detail::mha::copy_into<T>(detail::mha::split_heads(s.attended, num_heads_), heads.output.view());
    s.logsumexp = std::move(heads.logsumexp);
    result.output = detail::mha::linear<T>(s.attended.view(), out_weight_, out_bias_, has_bias_);
    if (!s.batched) result.output = std::move(result.output).reshape(Shape{query_len, embed_dim_});
    return result;
  }
  /// Self-attention: forward_for_backward(x, x, x, options).
  MultiHeadAttentionTrainingResult<T> forward_for_backward(TensorView<const T> x,
                                                           const MultiHeadAttentionForward<T>& options = {}) const {
    return forward_for_backward(x, x, x, options);
  }

  /// The gradients of a loss with respect to the inputs, weights and biases of the
  /// forward_for_backward call that made `saved`, from grad_output = dLoss/dOutput (the
  /// output's shape), with this layer's current weights (those of that call).
  /// \throws std::invalid_argument when grad_output's shape is not the output's.
  MultiHeadAttentionGradients<T> backward(const MultiHeadAttentionSaved<T>& saved,
                                          TensorView<const T> grad_output) const {
    const Index batch = saved.query.size(0), query_len = saved.query.size(1);
    const Shape expected = saved.batched ? Shape{batch, query_len, embed_dim_} : Shape{query_len, embed_dim_};
    if (grad_output.shape() != expected)
      throw std::invalid_argument("qkv::MultiHeadAttention::backward: grad_output of shape " +
                                  grad_output.shape().str() + ", expected the output's " + expected.str());
    const Tensor<T> grad_y(saved.batched ? grad_output : grad_output.unsqueeze(0));
    MultiHeadAttentionGradients<T> g;
    Tensor<T> grad_attended, grad_q, grad_k, grad_v;
    detail::mha::linear_backward(saved.attended, out_weight_, grad_y, has_bias_, grad_attended, g.grad_out_proj_weight,
                                 g.grad_out_proj_bias);
    grad_q = Tensor<T>(saved.q.shape()), grad_k = Tensor<T>(saved.k.shape()), grad_v = Tensor<T>(saved.v.shape());
    scaled_dot_product_attention_backward_out(
        detail::mha::split_heads(grad_q, num_heads_), detail::mha::split_heads(grad_k, num_kv_heads_),
        detail::mha::split_heads(grad_v, num_kv_heads_), detail::mha::split_heads(std::as_const(grad_attended), num_heads_),
        detail::mha::split_heads(saved.q, num_heads_), detail::mha::split_heads(saved.k, num_kv_heads_),
        detail::mha::split_heads(saved.v, num_kv_heads_), detail::mha::split_heads(saved.attended, num_heads_),
        saved.logsumexp, saved.attention);
    if (saved.rope) {  // the gradients with respect to the queries and keys before rotation
      saved.rope->apply_inverse(detail::mha::split_heads(grad_q, num_heads_), saved.position_offset);
      saved.rope->apply_inverse(detail::mha::split_heads(grad_k, num_kv_heads_), saved.position_offset);
    }
    detail::mha::linear_backward(saved.query, q_weight_, grad_q, has_bias_, g.grad_query, g.grad_q_proj_weight,
                                 g.grad_q_proj_bias);
    detail::mha::linear_backward(saved.key, k_weight_, grad_k, has_bias_, g.grad_key, g.grad_k_proj_weight,
                                 g.grad_k_proj_bias);
    detail::mha::linear_backward(saved.value, v_weight_, grad_v, has_bias_, g.grad_value, g.grad_v_proj_weight,
                                 g.grad_v_proj_bias);
    if (!saved.batched)
      for (Tensor<T>* x : {&g.grad_query, &g.grad_key, &g.grad_value}) *x = std::move(*x).reshape(x->shape().drop_front());
    return g;
  }

  /// A cache for `batch` sequences of up to `capacity` tokens, sized for this layer's
  /// key/value heads: (batch, num_kv_heads, capacity, head_dim) keys and values, kept in
  /// Storage: T, or qkv::bfloat16 or qkv::half for a float layer (half the memory).
  /// \code
  /// auto cache = layer.make_cache<qkv::bfloat16>(/*batch=*/1, /*capacity=*/4096);
  /// \endcode
  template <class Storage = T>
  KVCache<T, Storage> make_cache(Index batch, Index capacity) const {
    return KVCache<T, Storage>(batch, num_kv_heads_, capacity, head_dim_, head_dim_);
  }

  /// Self-attention of n new tokens x (batch, n, embed_dim) that follow the cache's
  /// tokens: projects them, rotates queries and keys (with `rope`) at positions
  /// cache.size() onwards, appends their keys and values to the cache, attends causally
  /// (each new token sees every cached token and the new ones up to itself) and applies
  /// out_proj. Feeding a sequence in any chunks gives forward(x) with Causal::upper_left.
  /// \throws std::invalid_argument when x or the cache does not fit the layer;
  /// std::out_of_range, before changing anything, when the n tokens do not fit the cache.
  template <class Storage>
  Tensor<T> forward_cached(TensorView<const T> x, KVCache<T, Storage>& cache,
                           const RotaryEmbedding<T>* rope = nullptr) const {
    const char* fn = "qkv::MultiHeadAttention::forward_cached";
    check_cached_input(fn, x, cache);
    check_rope(fn, rope);
    const Index batch = x.size(0), new_len = x.size(1);
    if (new_len == 0) return Tensor<T>(Shape{batch, 0, embed_dim_});

    Tensor<T> q = detail::mha::linear(x, q_weight_, q_bias_, has_bias_);
    Tensor<T> k = detail::mha::linear(x, k_weight_, k_bias_, has_bias_);
    Tensor<T> v = detail::mha::linear(x, v_weight_, v_bias_, has_bias_);
    const TensorView<T> q_heads = detail::mha::split_heads(q, num_heads_);
    const TensorView<T> k_heads = detail::mha::split_heads(k, num_kv_heads_);
    if (rope) {
      rope->apply(q_heads, cache.size());
      rope->apply(k_heads, cache.size());
    }
    // cached_attention returns (batch, num_heads, n, head_dim): n * embed_dim values to put in place.
    AttentionOptions<T> attention;
    set_variants(attention);
    const Tensor<T> heads =
        cached_attention<T>(cache, q_heads, k_heads, detail::mha::split_heads(v, num_kv_heads_), attention);
    Tensor<T> attended(Shape{batch, new_len, embed_dim_});
    detail::mha::copy_into<T>(detail::mha::split_heads(attended, num_heads_), heads.view());
    return detail::mha::linear<T>(attended.view(), out_weight_, out_bias_, has_bias_);
  }

 private:
  void check_sizes(const MultiHeadAttentionConfig& config) const {
    const std::string fn = "qkv::MultiHeadAttention: ";
    if (embed_dim_ <= 0 || num_heads_ <= 0)
      throw std::invalid_argument(fn + "embed_dim " + std::to_string(embed_dim_) + " and num_heads " +
                                  std::to_string(num_heads_) + " must be positive");
    if (embed_dim_ % num_heads_ != 0)
      throw std::invalid_argument(fn + "embed_dim " + std::to_string(embed_dim_) + " is not divisible by num_heads " +
                                  std::to_string(num_heads_));
    if (config.kdim < 0 || config.vdim < 0 || config.num_kv_heads < 0)
      throw std::invalid_argument(fn + "kdim " + std::to_string(config.kdim) + ", vdim " +
                                  std::to_string(config.vdim) + " and num_kv_heads " +
                                  std::to_string(config.num_kv_heads) + " must not be negative (0 = default)");
    if (num_heads_ % num_kv_heads_ != 0)
      throw std::invalid_argument(fn + "num_heads " + std::to_string(num_heads_) +
                                  " is not divisible by num_kv_heads " + std::to_string(num_kv_heads_));
    if (config.window.left < -1 || config.window.right < -1)
      throw std::invalid_argument(fn + "window {" + std::to_string(config.window.left) + ", " +
                                  std::to_string(config.window.right) + "} has a negative side other than -1");
    if (!(config.softcap >= 0) || !std::isfinite(config.softcap))
      throw std::invalid_argument(fn + "softcap " + std::to_string(config.softcap) +
                                  " must be positive and finite (0 = off)");
    for (const auto& [name, values] : {std::pair<const char*, const std::vector<double>*>{"sinks", &config.sinks},
                                       {"alibi_slopes", &config.alibi_slopes}})
      if (!values->empty() && Index(values->size()) != num_heads_)
        throw std::invalid_argument(fn + name + " has " + std::to_string(values->size()) + " values != num_heads " +
                                    std::to_string(num_heads_));
  }

  bool has_variants() const noexcept {
    return window_.left >= 0 || window_.right >= 0 || softcap_ > 0 || !sinks_.empty() || !alibi_slopes_.empty();
  }
  void set_variants(AttentionOptions<T>& o) const {
    o.window = window_;
    o.softcap = softcap_;
    o.sinks = sinks_;
    o.alibi_slopes = alibi_slopes_;
  }

  bool packs_in_proj() const noexcept { return kdim_ == embed_dim_ && vdim_ == embed_dim_; }

  void unpack_in_proj(TensorView<const T> weight) {
    q_weight_ = Tensor<T>(weight.narrow(0, 0, embed_dim_));
    k_weight_ = Tensor<T>(weight.narrow(0, embed_dim_, kv_dim()));
    v_weight_ = Tensor<T>(weight.narrow(0, embed_dim_ + kv_dim(), kv_dim()));
  }

  Tensor<T> packed(const char* fn, const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v) const {
    if (!packs_in_proj())
      throw std::invalid_argument(std::string(fn) + ": no packed in_proj with kdim " + std::to_string(kdim_) +
                                  ", vdim " + std::to_string(vdim_) + " != embed_dim " + std::to_string(embed_dim_) +
                                  "; use the q_proj, k_proj and v_proj getters");
    Shape shape = q.shape();
    shape[0] = q.size(0) + k.size(0) + v.size(0);
    Tensor<T> out(shape);
    T* end = std::copy(q.begin(), q.end(), out.begin());
    end = std::copy(k.begin(), k.end(), end);
    std::copy(v.begin(), v.end(), end);
    return out;
  }

  static void check_weight(const char* fn, TensorView<const T> weight, const Shape& expected, const char* what) {
    if (weight.shape() != expected)
      throw std::invalid_argument(std::string(fn) + ": weight of shape " + weight.shape().str() + ", expected " +
                                  expected.str() + " " + what);
  }

  void check_bias(const char* fn, const std::optional<TensorView<const T>>& bias, Index size) const {
    const Shape expected{size};
    if (!has_bias_ && bias)
      throw std::invalid_argument(std::string(fn) + ": bias of shape " + bias->shape().str() +
                                  " given to a layer without bias (config.bias = false)");
    if (has_bias_ && !bias)
      throw std::invalid_argument(std::string(fn) + ": missing bias of shape " + expected.str() +
                                  " (the layer has config.bias = true)");
    if (has_bias_ && bias->shape() != expected)
      throw std::invalid_argument(std::string(fn) + ": bias of shape " + bias->shape().str() + ", expected " +
                                  expected.str());
  }

  void set_projection(const char* fn, TensorView<const T> weight, const std::optional<TensorView<const T>>& bias,
                      const Shape& expected, const char* what, Tensor<T>& weight_to, Tensor<T>& bias_to) const {
    check_weight(fn, weight, expected, what);
    check_bias(fn, bias, expected[0]);
    weight_to = Tensor<T>(weight);
    if (has_bias_) bias_to = Tensor<T>(*bias);
  }

  // Checks query (batch, L, embed_dim), key (batch, S, kdim), value (batch, S, vdim), or
  // all three unbatched; returns whether they are batched.
  bool check_inputs(const char* fn, const TensorView<const T>& query, const TensorView<const T>& key,
                    const TensorView<const T>& value) const {
    const std::string e = std::to_string(embed_dim_);
    if ((query.rank() != 2 && query.rank() != 3) || query.size(-1) != embed_dim_)
      throw std::invalid_argument(std::string(fn) + ": query of shape " + query.shape().str() +
                                  ", expected (batch, L, embed_dim " + e + ") or unbatched (L, " + e + ")");
    const bool batched = query.rank() == 3;
    const std::string batch = batched ? "batch " + std::to_string(query.size(0)) + ", " : "";
    const auto fits = [&](const TensorView<const T>& x, Index features) {
      return x.rank() == query.rank() && x.size(-1) == features && (!batched || x.size(0) == query.size(0));
    };
    if (!fits(key, kdim_))
      throw std::invalid_argument(std::string(fn) + ": key of shape " + key.shape().str() + ", expected (" + batch +
                                  "S, kdim " + std::to_string(kdim_) + ") for query " + query.shape().str());
    if (!fits(value, vdim_) || value.size(-2) != key.size(-2))
      throw std::invalid_argument(std::string(fn) + ": value of shape " + value.shape().str() + ", expected (" +
                                  batch + "S " + std::to_string(key.size(-2)) + ", vdim " + std::to_string(vdim_) +
                                  ") for key " + key.shape().str());
    return batched;
  }

  void check_rope(const char* fn, const RotaryEmbedding<T>* rope) const {
    if (rope && rope->head_dim() != head_dim_)
      throw std::invalid_argument(std::string(fn) + ": rope of head_dim " + std::to_string(rope->head_dim()) +
                                  " for heads of head_dim " + std::to_string(head_dim_));
  }

  template <class Storage>
  void check_cached_input(const char* fn, const TensorView<const T>& x, const KVCache<T, Storage>& cache) const {
    if (x.rank() != 3 || x.size(-1) != embed_dim_)
      throw std::invalid_argument(std::string(fn) + ": input of shape " + x.shape().str() +
                                  ", expected (batch, n, embed_dim " + std::to_string(embed_dim_) + ")");
    const auto describe = [](Index batch, Index heads, Index head_dim, Index value_dim) {
      return "(batch " + std::to_string(batch) + ", num_kv_heads " + std::to_string(heads) + ", head_dim " +
             std::to_string(head_dim) + ", value_dim " + std::to_string(value_dim) + ")";
    };
    if (cache.batch() != x.size(0) || cache.num_kv_heads() != num_kv_heads_ || cache.head_dim() != head_dim_ ||
        cache.value_dim() != head_dim_)
      throw std::invalid_argument(std::string(fn) + ": cache " +
                                  describe(cache.batch(), cache.num_kv_heads(), cache.head_dim(), cache.value_dim()) +
                                  " does not fit the layer and input " + x.shape().str() + ", expected " +
                                  describe(x.size(0), num_kv_heads_, head_dim_, head_dim_));
    if (x.size(1) > cache.remaining())
      throw std::out_of_range(std::string(fn) + ": " + std::to_string(x.size(1)) +
                              " new tokens do not fit the cache: " + std::to_string(cache.size()) + " of " +
                              std::to_string(cache.capacity()) + " positions used");
  }

  // The key padding and attention masks, checked against PyTorch's shapes and merged into
  // one scaled_dot_product_attention mask broadcasting to (batch, num_heads, L, S). An
  // additive mask alone is passed as a view; otherwise the merged mask is (batch, 1, 1, S)
  // for the padding mask alone, (L, S) for a 2-D attn_mask alone, (batch, 1, L, S) for both,
  // and (batch, num_heads, L, S) only when attn_mask has that shape already.
  AttentionMask<T> attention_mask(const char* fn, const MultiHeadAttentionForward<T>& options, bool batched,
                                  Index batch, Index query_len, Index key_len, Tensor<bool>& bool_storage,
                                  Tensor<T>& additive_storage) const {
    AttentionMask<T> padding, attn;
    if (options.key_padding_mask.has_value()) {
      const AttentionMask<T>& m = options.key_padding_mask;
      const Shape expected = batched ? Shape{batch, key_len} : Shape{key_len};
      if (m.shape() != expected)
        throw std::invalid_argument(std::string(fn) + ": key_padding_mask of shape " + m.shape().str() +
                                    ", expected " + expected.str() + (batched ? " (batch, S)" : " (S)"));
      const Strides s = m.is_boolean() ? m.boolean().strides() : m.additive().strides();
      padding = detail::mha::reshaped_mask(m, Shape{batch, 1, 1, key_len}, Strides{batched ? s[0] : 0, 0, 0, s.back()});
    }
    if (options.attn_mask.has_value()) {
      const AttentionMask<T>& m = options.attn_mask;
      const Shape expected2{query_len, key_len}, expected3{batch * num_heads_, query_len, key_len};
      if (m.shape() != expected2 && m.shape() != expected3)
        throw std::invalid_argument(std::string(fn) + ": attn_mask of shape " + m.shape().str() + ", expected " +
                                    expected2.str() + " (L, S) or " + expected3.str() +
                                    (batched ? " (batch * num_heads, L, S)" : " (num_heads, L, S)"));
      const Strides s = m.is_boolean() ? m.boolean().strides() : m.additive().strides();
      attn = m.shape().rank() == 2
                 ? m
                 : detail::mha::reshaped_mask(m, Shape{batch, num_heads_, query_len, key_len},
                                         Strides{num_heads_ * s[0], s[0], s[1], s[2]});
    }
    if (padding.has_value() && attn.has_value()) {
      const Index heads = attn.shape().rank() == 2 ? 1 : num_heads_;
      return detail::mha::merge_masks(attn, padding, Shape{batch, heads, query_len, key_len}, bool_storage,
                                        additive_storage);
    }
    const AttentionMask<T>& only = padding.has_value() ? padding : attn;
    if (!only.has_value() || only.is_additive()) return only;
    return detail::mha::merge_masks(only, AttentionMask<T>(), only.shape(), bool_storage, additive_storage);
  }

  static Tensor<T> mean_over_heads(const Tensor<T>& weights) {
    const Index batch = weights.size(0), heads = weights.size(1), plane = weights.size(2) * weights.size(3);
    Tensor<T> mean(Shape{batch, weights.size(2), weights.size(3)});
    for (Index b = 0; b < batch; ++b) {
      T* out = mean.data() + b * plane;
      for (Index h = 0; h < heads; ++h) {
        const T* in = weights.data() + (b * heads + h) * plane;
        for (Index i = 0; i < plane; ++i) out[i] += in[i];
      }
      for (Index i = 0; i < plane; ++i) out[i] /= static_cast<T>(heads);
    }
    return mean;
  }

  Index embed_dim_, num_heads_, num_kv_heads_, kdim_, vdim_;
  Index head_dim_ = 0;
  bool has_bias_;
  AttentionWindow window_;
  double softcap_;
  std::vector<double> sinks_, alibi_slopes_;
  // (out_features, in_features) as nn.Linear; biases empty without bias.
  Tensor<T> q_weight_, k_weight_, v_weight_, out_weight_;
  Tensor<T> q_bias_, k_bias_, v_bias_, out_bias_;
};

}  // namespace qkv
