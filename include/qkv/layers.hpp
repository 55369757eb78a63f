// SPDX-License-Identifier: MIT
// Attention layers that own their weights. qkv::ScaledDotProductAttention is the
// single-head module the notebooks build: project x into queries, keys and values with
// x·W (+ b), then attend.
#pragma once

#include <Eigen/Core>

#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "attention.hpp"
#include "attention_backward.hpp"
#include "ops.hpp"
#include "random.hpp"
#include "tensor.hpp"

namespace qkv {

/// \brief What ScaledDotProductAttention::forward_for_backward keeps for backward: the
/// inputs (contiguous), their projections, the output and each row's log-sum-exp.
template <class T>
struct ScaledDotProductAttentionSaved {
  /// \var Tensor<T> x_q
  /// The input the queries were projected from (x, or x_q for cross-attention),
  /// (..., L, d_model), contiguous.
  /// \var Tensor<T> x_kv
  /// The cross-attention input of the keys and values (..., S, d_model), contiguous; empty
  /// for self-attention, whose keys and values come from x_q.
  Tensor<T> x_q, x_kv;
  /// \var Tensor<T> q
  /// The queries x_q·W_q (+ b_q), (..., L, d_k).
  /// \var Tensor<T> k
  /// The keys (..., S, d_k).
  /// \var Tensor<T> v
  /// The values (..., S, d_v).
  /// \var Tensor<T> output
  /// The attention output (..., L, d_v).
  /// \var Tensor<T> logsumexp
  /// Each query row's log-sum-exp (..., L), as scaled_dot_product_attention_with_logsumexp
  /// returns it.
  Tensor<T> q, k, v, output, logsumexp;
  /// The causal masking of the forward call.
  Causal causal = Causal::none;
  /// Whether the forward call was self-attention (one input) rather than cross-attention.
  bool self_attention = true;
};

/// The output of ScaledDotProductAttention::forward_for_backward and what backward needs.
template <class T>
struct ScaledDotProductAttentionTrainingResult {
  /// (..., L, d_v): the attention output, as forward's.
  Tensor<T> output;
  /// What backward needs, to pass to it with the gradient of the output.
  ScaledDotProductAttentionSaved<T> saved;
};

/// \brief The gradients ScaledDotProductAttention::backward returns: of the input(s) —
/// for self-attention grad_x is that of x and grad_x_kv is empty; for cross-attention
/// grad_x is that of x_q and grad_x_kv that of x_kv — and of W_q, W_k, W_v (d_model, d_k or
/// d_v, the layer's layout) and the biases (empty without biases).
template <class T>
struct ScaledDotProductAttentionGradients {
  /// \var Tensor<T> grad_x
  /// The gradient of x (through the queries, keys and values) for self-attention, of x_q
  /// for cross-attention: (..., L, d_model), the input's shape.
  /// \var Tensor<T> grad_x_kv
  /// The gradient of x_kv (..., S, d_model) for cross-attention; empty for self-attention.
  Tensor<T> grad_x, grad_x_kv;
  /// \var Tensor<T> grad_w_q
  /// The gradient of W_q (d_model, d_k).
  /// \var Tensor<T> grad_w_k
  /// The gradient of W_k (d_model, d_k).
  /// \var Tensor<T> grad_w_v
  /// The gradient of W_v (d_model, d_v).
  Tensor<T> grad_w_q, grad_w_k, grad_w_v;
  /// \var Tensor<T> grad_b_q
  /// The gradient of b_q (d_k); empty without biases.
  /// \var Tensor<T> grad_b_k
  /// The gradient of b_k (d_k); empty without biases.
  /// \var Tensor<T> grad_b_v
  /// The gradient of b_v (d_v); empty without biases.
  Tensor<T> grad_b_q, grad_b_k, grad_b_v;
};

/// \brief Single-head self- or cross-attention with its own projections, as the notebooks'
/// `SelfAttention` module.
/// \tparam T float or double.
///
/// Queries, keys and values are x·W_q, x·W_k, x·W_v (plus optional biases), with W_q and
/// W_k of shape (d_model, d_k) and W_v of shape (d_model, d_v): the notebooks' x @ W.
/// (PyTorch's nn.Linear stores the transpose and computes x·Wᵀ; pass `linear.weight.T`.)
/// Inputs are (L, d_model) or batched (B, L, d_model); the output is (..., L, d_v) and the
/// weights (..., L, S).
/// \code
/// qkv::NumpyRandom rng(0);
/// auto attention = qkv::ScaledDotProductAttention<float>::linear_init(8, 8, 8, rng);
/// auto [output, weights] = attention.forward(x);   // x: (1, 5, 8) -> (1, 5, 8), (1, 5, 5)
/// \endcode
/// \see scaled_dot_product_attention, which it calls.
template <class T>
class ScaledDotProductAttention {
 public:
  /// From projection matrices W_q, W_k (d_model, d_k) and W_v (d_model, d_v), no biases.
  ScaledDotProductAttention(Tensor<T> w_q, Tensor<T> w_k, Tensor<T> w_v)
      : w_q_(std::move(w_q)), w_k_(std::move(w_k)), w_v_(std::move(w_v)) {
    check_weights();
  }
  /// With biases b_q, b_k (d_k) and b_v (d_v).
  ScaledDotProductAttention(Tensor<T> w_q, Tensor<T> w_k, Tensor<T> w_v, Tensor<T> b_q, Tensor<T> b_k, Tensor<T> b_v)
      : w_q_(std::move(w_q)), w_k_(std::move(w_k)), w_v_(std::move(w_v)),
        b_q_(std::move(b_q)), b_k_(std::move(b_k)), b_v_(std::move(b_v)), has_bias_(true) {
    check_weights();
  }

  /// Weights uniform in [0, 1), as `torch.rand(d_model, d_k)` draws them (in NumPy's
  /// stream: np.random.rand(d_model, d_k) for W_q, then W_k, then W_v).
  static ScaledDotProductAttention uniform(Index d_model, Index d_k, Index d_v, NumpyRandom& rng) {
    check_sizes("qkv::ScaledDotProductAttention::uniform", d_model, d_k, d_v);
    auto w_q = rng.rand<T>({d_model, d_k});
    auto w_k = rng.rand<T>({d_model, d_k});
    auto w_v = rng.rand<T>({d_model, d_v});
    return ScaledDotProductAttention(std::move(w_q), std::move(w_k), std::move(w_v));
  }
  /// Weights (and biases) uniform in ±1/sqrt(d_model), the distribution nn.Linear(d_model,
  /// d_k) initialises with, drawn in order W_q, W_k, W_v, then b_q, b_k, b_v.
  static ScaledDotProductAttention linear_init(Index d_model, Index d_k, Index d_v, NumpyRandom& rng,
                                               bool bias = false) {
    check_sizes("qkv::ScaledDotProductAttention::linear_init", d_model, d_k, d_v);
    const double bound = 1.0 / std::sqrt(static_cast<double>(d_model));
    auto w_q = rng.uniform<T>(-bound, bound, {d_model, d_k});
    auto w_k = rng.uniform<T>(-bound, bound, {d_model, d_k});
    auto w_v = rng.uniform<T>(-bound, bound, {d_model, d_v});
    if (!bias) return ScaledDotProductAttention(std::move(w_q), std::move(w_k), std::move(w_v));
    auto b_q = rng.uniform<T>(-bound, bound, {d_k});
    auto b_k = rng.uniform<T>(-bound, bound, {d_k});
    auto b_v = rng.uniform<T>(-bound, bound, {d_v});
    return ScaledDotProductAttention(std::move(w_q), std::move(w_k), std::move(w_v), std::move(b_q),
                                     std::move(b_k), std::move(b_v));
  }

  /// Width of the inputs x (the rows of W_q, W_k, W_v).
  Index d_model() const noexcept { return w_q_.size(0); }
  /// Width of the queries and keys.
  Index d_k() const noexcept { return w_q_.size(1); }
  /// Width of the values and of the output.
  Index d_v() const noexcept { return w_v_.size(1); }
  /// Whether the projections add biases.
  bool has_bias() const noexcept { return has_bias_; }
  /// W_q (d_model, d_k), as the notebooks write it: x·W_q.
  const Tensor<T>& w_q() const noexcept { return w_q_; }
  /// W_k (d_model, d_k).
  const Tensor<T>& w_k() const noexcept { return w_k_; }
  /// W_v (d_model, d_v).
  const Tensor<T>& w_v() const noexcept { return w_v_; }
  /// b_q (d_k), empty without bias.
  const Tensor<T>& b_q() const noexcept { return b_q_; }
  /// b_k (d_k), empty without bias.
  const Tensor<T>& b_k() const noexcept { return b_k_; }
  /// b_v (d_v), empty without bias.
  const Tensor<T>& b_v() const noexcept { return b_v_; }

  /// x·W_q (+ b_q), and likewise for keys and values: the projections the notebooks print.
  template <class X, class = detail::enable_if_tensor_t<X>>
  Tensor<T> queries(const X& x) const { return project(checked("queries", x), w_q_, b_q_); }
  /// x·W_k (+ b_k).
  template <class X, class = detail::enable_if_tensor_t<X>>
  Tensor<T> keys(const X& x) const { return project(checked("keys", x), w_k_, b_k_); }
  /// x·W_v (+ b_v).
  template <class X, class = detail::enable_if_tensor_t<X>>
  Tensor<T> values(const X& x) const { return project(checked("values", x), w_v_, b_v_); }

  /// Self-attention of x (..., L, d_model): output (..., L, d_v) and weights (..., L, L).
  /// Without `need_weights` the weights are left empty and the fast path runs.
  template <class X, class = detail::enable_if_tensor_t<X>>
  AttentionResult<T> forward(const X& x, Causal causal = Causal::none, bool need_weights = true) const {
    const TensorView<const T> xv = checked("forward", x);
    return attend(project(xv, w_q_, b_q_), project(xv, w_k_, b_k_), project(xv, w_v_, b_v_), causal, need_weights);
  }
  /// Cross-attention: queries from x_q (..., L, d_model), keys and values from
  /// x_kv (..., S, d_model).
  template <class Xq, class Xkv, class = std::enable_if_t<detail::is_tensor_v<Xq> && detail::is_tensor_v<Xkv>>>
  AttentionResult<T> forward(const Xq& x_q, const Xkv& x_kv, Causal causal = Causal::none,
                             bool need_weights = true) const {
    const TensorView<const T> xq = checked("forward", x_q), xkv = checked("forward", x_kv);
    return attend(project(xq, w_q_, b_q_), project(xkv, w_k_, b_k_), project(xkv, w_v_, b_v_), causal,
                  need_weights);
  }

  /// The forward pass of training: forward's output (without weights) and what backward
  /// needs. Self-attention of x, as forward(x, causal).
  /// \code
  /// auto [output, saved] = attention.forward_for_backward(x);
  /// auto grads = attention.backward(saved, grad_output);   // grads.grad_w_q, grads.grad_x, ...
  /// \endcode
  template <class X, class = detail::enable_if_tensor_t<X>>
  ScaledDotProductAttentionTrainingResult<T> forward_for_backward(const X& x, Causal causal = Causal::none) const {
    const TensorView<const T> xv = checked("forward_for_backward", x);
    return train(Tensor<T>(xv), Tensor<T>(), true, causal);
  }
  /// Cross-attention, as forward(x_q, x_kv, causal).
  template <class Xq, class Xkv, class = std::enable_if_t<detail::is_tensor_v<Xq> && detail::is_tensor_v<Xkv>>>
  ScaledDotProductAttentionTrainingResult<T> forward_for_backward(const Xq& x_q, const Xkv& x_kv,
                                                                  Causal causal = Causal::none) const {
    const TensorView<const T> xq = checked("forward_for_backward", x_q), xkv = checked("forward_for_backward", x_kv);
    return train(Tensor<T>(xq), Tensor<T>(xkv), false, causal);
  }

  /// The gradients of a loss with respect to the input(s), weights and biases of the
  /// forward_for_backward call that made `saved`, from grad_output = dLoss/dOutput (the
  /// output's shape), with this module's current weights (those of that call).
  /// \throws std::invalid_argument when grad_output's shape is not the output's.
  template <class G, class = detail::enable_if_tensor_t<G>>
  ScaledDotProductAttentionGradients<T> backward(const ScaledDotProductAttentionSaved<T>& saved,
                                                 const G& grad_output) const {
    const TensorView<const T> go = detail::const_view(grad_output);
    if (go.shape() != saved.output.shape())
      throw std::invalid_argument("qkv::ScaledDotProductAttention::backward: grad_output of shape " + go.shape().str() +
                                  ", expected the output's " + saved.output.shape().str());
    AttentionOptions<T> options;
    options.causal = saved.causal;
    const auto g = scaled_dot_product_attention_backward(go, saved.q, saved.k, saved.v, saved.output,
                                                         saved.logsumexp, options);
    // q = x·W_q + b_q: dW_q = xᵀ·dq (summed over the rows of every batch element),
    // db_q = Σ_rows dq, dx = dq·W_qᵀ; likewise for k and v from x_kv.
    const bool self = saved.self_attention;
    const Tensor<T>& x_kv = self ? saved.x_q : saved.x_kv;
    ScaledDotProductAttentionGradients<T> r;
    r.grad_w_q = weight_gradient(saved.x_q, g.grad_q);
    r.grad_w_k = weight_gradient(x_kv, g.grad_k);
    r.grad_w_v = weight_gradient(x_kv, g.grad_v);
    if (has_bias_) {
      r.grad_b_q = bias_gradient(g.grad_q), r.grad_b_k = bias_gradient(g.grad_k), r.grad_b_v = bias_gradient(g.grad_v);
    }
    r.grad_x = input_gradient(g.grad_q, w_q_);
    Tensor<T> grad_kv = input_gradient(g.grad_k, w_k_);
    rows_of(grad_kv).noalias() += rows_of(g.grad_v) * w_v_.matrix().transpose();
    if (self) r.grad_x += grad_kv;
    else r.grad_x_kv = std::move(grad_kv);
    return r;
  }

 private:
  using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  // A contiguous (..., rows, cols) tensor as one (numel / cols, cols) matrix.
  static Eigen::Map<RowMatrix> rows_of(Tensor<T>& x) {
    return Eigen::Map<RowMatrix>(x.data(), x.numel() / x.size(-1), x.size(-1));
  }
  static Eigen::Map<const RowMatrix> rows_of(const Tensor<T>& x) {
    return Eigen::Map<const RowMatrix>(x.data(), x.numel() / x.size(-1), x.size(-1));
  }
  static Tensor<T> weight_gradient(const Tensor<T>& x, const Tensor<T>& grad) {
    Tensor<T> w(Shape{x.size(-1), grad.size(-1)});
    rows_of(w).noalias() = rows_of(x).transpose() * rows_of(grad);
    return w;
  }
  static Tensor<T> bias_gradient(const Tensor<T>& grad) {
    Tensor<T> b(Shape{grad.size(-1)});
    Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(b.data(), grad.size(-1)) = rows_of(grad).colwise().sum();
    return b;
  }
  static Tensor<T> input_gradient(const Tensor<T>& grad, const Tensor<T>& w) {
    Shape shape = grad.shape();
    shape[shape.rank() - 1] = w.size(0);
    Tensor<T> x(shape);
    rows_of(x).noalias() = rows_of(grad) * w.matrix().transpose();
    return x;
  }

  ScaledDotProductAttentionTrainingResult<T> train(Tensor<T> x_q, Tensor<T> x_kv, bool self, Causal causal) const {
    ScaledDotProductAttentionTrainingResult<T> r;
    ScaledDotProductAttentionSaved<T>& s = r.saved;
    s.self_attention = self;
    const Tensor<T>& kv_input = self ? x_q : x_kv;
    s.q = project(x_q.view(), w_q_, b_q_);
    s.k = project(kv_input.view(), w_k_, b_k_);
    s.v = project(kv_input.view(), w_v_, b_v_);
    s.causal = causal;
    AttentionOptions<T> options;
    options.causal = causal;
    auto forward = scaled_dot_product_attention_with_logsumexp(s.q, s.k, s.v, options);
    s.output = std::move(forward.output);
    s.logsumexp = std::move(forward.logsumexp);
    s.x_q = std::move(x_q), s.x_kv = std::move(x_kv);
    r.output = s.output;
    return r;
  }

  static void check_sizes(const char* fn, Index d_model, Index d_k, Index d_v) {
    if (d_model <= 0 || d_k <= 0 || d_v <= 0)
      throw std::invalid_argument(std::string(fn) + ": sizes must be positive, got d_model " +
                                  std::to_string(d_model) + ", d_k " + std::to_string(d_k) + ", d_v " +
                                  std::to_string(d_v));
  }

  void check_weights() const {
    const char* fn = "qkv::ScaledDotProductAttention";
    const std::string shapes = " (W_q " + w_q_.shape().str() + ", W_k " + w_k_.shape().str() + ", W_v " +
                               w_v_.shape().str() + ")";
    if (w_q_.rank() != 2 || w_k_.rank() != 2 || w_v_.rank() != 2)
      throw std::invalid_argument(std::string(fn) + ": projections must be matrices" + shapes);
    if (w_k_.shape() != w_q_.shape())
      throw std::invalid_argument(std::string(fn) + ": W_k must have W_q's shape (d_model, d_k)" + shapes);
    if (w_v_.size(0) != w_q_.size(0))
      throw std::invalid_argument(std::string(fn) + ": W_v must have d_model = " + std::to_string(w_q_.size(0)) +
                                  " rows" + shapes);
    if (!has_bias_) return;
    const auto check_bias = [&](const char* name, const Tensor<T>& b, Index size) {
      if (b.shape() != Shape{size})
        throw std::invalid_argument(std::string(fn) + ": bias " + name + " of shape " + b.shape().str() +
                                    ", expected [" + std::to_string(size) + "]" + shapes);
    };
    check_bias("b_q", b_q_, d_k());
    check_bias("b_k", b_k_, d_k());
    check_bias("b_v", b_v_, d_v());
  }

  template <class X>
  TensorView<const T> checked(const char* fn, const X& x) const {
    const TensorView<const T> xv = detail::const_view(x);
    if (xv.rank() < 2 || xv.size(-1) != d_model())
      throw std::invalid_argument(std::string("qkv::ScaledDotProductAttention::") + fn + ": input of shape " +
                                  xv.shape().str() + ", expected (..., L, d_model = " + std::to_string(d_model()) +
                                  ")");
    return xv;
  }

  Tensor<T> project(TensorView<const T> x, const Tensor<T>& w, const Tensor<T>& b) const {
    Tensor<T> projected = matmul(x, w);
    if (has_bias_) projected += b;
    return projected;
  }

  static AttentionResult<T> attend(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v, Causal causal,
                                   bool need_weights) {
    AttentionOptions<T> options;
    options.causal = causal;
    if (need_weights) return scaled_dot_product_attention_with_weights(q, k, v, options);
    return {scaled_dot_product_attention(q, k, v, options), Tensor<T>()};
  }

  Tensor<T> w_q_, w_k_, w_v_;
  Tensor<T> b_q_, b_k_, b_v_;
  bool has_bias_ = false;
};

}  // namespace qkv
