// SPDX-License-Identifier: MIT
// A direct long-double reference of attention's backward pass for the tests, written from
// the formulas with the L×S matrices materialised, independently of qkv's kernel:
//   S = scale·Q·Kᵀ + mask, P = softmax(S), dV = Pᵀ·dO, dP = dO·Vᵀ,
//   dS = P ∘ (dP − rowsum(P ∘ dP)), dQ = scale·dS·K, dK = scale·dSᵀ·Q.
// Broadcast and grouped k, v receive the sum over the query heads that read them.
#pragma once

#include "reference.hpp"

#include <cmath>
#include <limits>
#include <vector>

namespace qkv::test {

struct ReferenceGradients {
  Tensor<double> grad_q, grad_k, grad_v;
};

/// The gradients of Σ out ∘ grad_out with respect to q, k and v, in long double (returned
/// as double, of the shapes of q, k and v).
template <class T>
ReferenceGradients reference_attention_backward(TensorView<const T> grad_out, TensorView<const T> q,
                                                TensorView<const T> k, TensorView<const T> v,
                                                const AttentionOptions<T>& options = {}) {
  const Index L = q.size(-2), S = k.size(-2), E = q.size(-1), Ev = v.size(-1);
  const long double scale = options.scale ? static_cast<long double>(*options.scale)
                                          : (E > 0 ? 1.0L / std::sqrt(static_cast<long double>(E)) : 1.0L);
  Index group = 1;
  if (options.enable_gqa) group = q.size(-3) / (k.rank() >= 3 ? k.size(-3) : 1);
  const Index offset = options.causal == Causal::lower_right ? S - L : 0;
  constexpr long double inf = std::numeric_limits<long double>::infinity();

  const Shape batch = q.shape().front(q.rank() - 2);
  // Sums in long double, of the inputs' shapes, contiguous.
  std::vector<long double> dq(static_cast<std::size_t>(q.numel())), dk(static_cast<std::size_t>(k.numel())),
      dv(static_cast<std::size_t>(v.numel()));
  const Tensor<T> q_shape(q.shape()), k_shape(k.shape()), v_shape(v.shape());  // contiguous twins for the offsets
  const auto at = [](std::vector<long double>& x, Index i) -> long double& { return x[static_cast<std::size_t>(i)]; };

  std::vector<Index> index(static_cast<std::size_t>(batch.rank()));
  std::vector<long double> p(static_cast<std::size_t>(L * S)), dp(static_cast<std::size_t>(L * S));
  for (Index b = 0; b < batch.numel(); ++b) {
    Index rest = b;
    for (int d = batch.rank() - 1; d >= 0; --d) {
      index[static_cast<std::size_t>(d)] = rest % batch[d];
      rest /= batch[d];
    }
    for (Index i = 0; i < L; ++i) {
      long double m = -inf;
      for (Index j = 0; j < S; ++j) {
        long double s = 0;
        for (Index e = 0; e < E; ++e) s += at_broadcast(q, index, i, e) * at_broadcast(k, index, j, e, group);
        s *= scale;
        if (options.attn_mask.has_value()) s += mask_at(options.attn_mask, index, i, j);
        if (options.causal != Causal::none && j > i + offset) s = -inf;
        at(p, i * S + j) = s;
        m = std::max(m, s);
      }
      long double sum = 0;
      for (Index j = 0; j < S; ++j) sum += at(p, i * S + j) = std::isinf(m) ? 0.0L : std::exp(at(p, i * S + j) - m);
      for (Index j = 0; j < S; ++j) at(p, i * S + j) = sum > 0 ? at(p, i * S + j) / sum : 0.0L;
      long double d = 0;
      for (Index j = 0; j < S; ++j) {
        long double x = 0;
        for (Index e = 0; e < Ev; ++e) x += at_broadcast(grad_out, index, i, e) * at_broadcast(v, index, j, e, group);
        at(dp, i * S + j) = x;
        d += at(p, i * S + j) * x;
      }
      for (Index j = 0; j < S; ++j) at(dp, i * S + j) = at(p, i * S + j) * (at(dp, i * S + j) - d);  // dS
    }
    for (Index i = 0; i < L; ++i)
      for (Index j = 0; j < S; ++j) {
        const long double pij = at(p, i * S + j), ds = at(dp, i * S + j);
        for (Index e = 0; e < E; ++e) {
          at(dq, broadcast_offset(q_shape.view(), index, i, e)) += scale * ds * at_broadcast(k, index, j, e, group);
          at(dk, broadcast_offset(k_shape.view(), index, j, e, group)) += scale * ds * at_broadcast(q, index, i, e);
        }
        for (Index e = 0; e < Ev; ++e)
          at(dv, broadcast_offset(v_shape.view(), index, j, e, group)) += pij * at_broadcast(grad_out, index, i, e);
      }
  }
  ReferenceGradients g{Tensor<double>(q.shape()), Tensor<double>(k.shape()), Tensor<double>(v.shape())};
  for (Index i = 0; i < q.numel(); ++i) g.grad_q.data()[i] = static_cast<double>(at(dq, i));
  for (Index i = 0; i < k.numel(); ++i) g.grad_k.data()[i] = static_cast<double>(at(dk, i));
  for (Index i = 0; i < v.numel(); ++i) g.grad_v.data()[i] = static_cast<double>(at(dv, i));
  return g;
}

}  // namespace qkv::test
