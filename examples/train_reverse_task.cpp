// Training a small attention model in plain C++: it learns to reverse a sequence of 8
// digits. The model is token embeddings plus learned position embeddings, one
// MultiHeadAttention layer (4 heads, embed_dim 32) and a linear read-out to the 10 digits,
// trained with Adam on the cross-entropy of every output position. The gradients come from
// qkv's backward passes: MultiHeadAttention::backward (through the fused attention
// backward), the rest written out below.
//
// Reversing needs attention: output position i must read input position 7 − i, which the
// position embeddings let the queries and keys find. It prints the loss falling and the
// accuracy on 256 held-out sequences, and exits with status 1 unless every held-out digit
// comes out right. Seeded, in double (so that the printed digits are the same on every
// machine); on one thread, in well under a second.
#include <qkv/qkv.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstdio>
#include <vector>

using qkv::Index;
using qkv::Shape;
using qkv::Tensor;

constexpr Index vocab = 10, length = 8, embed_dim = 32, num_heads = 4, batch = 32;

/// Adam (β1 = 0.9, β2 = 0.999, ε = 1e-8) on one parameter tensor.
struct Adam {
  Tensor<double> m, v;
  void step(Tensor<double>& parameter, const Tensor<double>& grad, double lr, int t) {
    if (m.empty()) m = Tensor<double>(parameter.shape()), v = Tensor<double>(parameter.shape());
    const double c1 = 1 - std::pow(0.9, t), c2 = 1 - std::pow(0.999, t);
    for (Index i = 0; i < parameter.numel(); ++i) {
      const double g = grad.data()[i];
      m.data()[i] = 0.9 * m.data()[i] + 0.1 * g;
      v.data()[i] = 0.999 * v.data()[i] + 0.001 * g * g;
      parameter.data()[i] -= lr * (m.data()[i] / c1) / (std::sqrt(v.data()[i] / c2) + 1e-8);
    }
  }
};

struct Model {
  Tensor<double> token_embedding, position_embedding, head_weight, head_bias;
  qkv::MultiHeadAttention<double> attention;

  explicit Model(qkv::NumpyRandom& rng)
      : token_embedding(rng.randn<double>({vocab, embed_dim})),
        position_embedding(rng.randn<double>({length, embed_dim})),
        head_weight(rng.uniform<double>(-0.2, 0.2, {vocab, embed_dim})),
        head_bias(Tensor<double>::zeros({vocab})),
        attention(embed_dim, num_heads, {}, rng) {}
};

/// Random sequences of digits (n, length), and their reversals.
std::vector<std::vector<Index>> random_sequences(qkv::NumpyRandom& rng, Index n) {
  const Tensor<double> u = rng.rand<double>({n, length});
  std::vector<std::vector<Index>> s(static_cast<std::size_t>(n), std::vector<Index>(length));
  for (Index b = 0; b < n; ++b)
    for (Index i = 0; i < length; ++i) s[std::size_t(b)][std::size_t(i)] = static_cast<Index>(u(b, i) * vocab);
  return s;
}

Index target(const std::vector<Index>& sequence, Index i) { return sequence[std::size_t(length - 1 - i)]; }

/// Embeddings of a batch: h = token_embedding[x] + position_embedding, (n, length, embed_dim).
Tensor<double> embed(const Model& model, const std::vector<std::vector<Index>>& x) {
  Tensor<double> h(Shape{Index(x.size()), length, embed_dim});
  for (Index b = 0; b < Index(x.size()); ++b)
    for (Index i = 0; i < length; ++i)
      for (Index e = 0; e < embed_dim; ++e)
        h(b, i, e) = model.token_embedding(x[std::size_t(b)][std::size_t(i)], e) + model.position_embedding(i, e);
  return h;
}

/// logits = attended · head_weightᵀ + head_bias, (n, length, vocab).
Tensor<double> read_out(const Model& model, const Tensor<double>& attended) {
  Tensor<double> logits = qkv::matmul(attended, qkv::transpose(model.head_weight));
  logits += model.head_bias;
  return logits;
}

/// Share of held-out digits put in the right place.
double accuracy(const Model& model, const std::vector<std::vector<Index>>& x) {
  const Tensor<double> logits = read_out(model, model.attention.forward(embed(model, x)).output);
  Index right = 0;
  for (Index b = 0; b < Index(x.size()); ++b)
    for (Index i = 0; i < length; ++i) {
      Index best = 0;
      for (Index c = 1; c < vocab; ++c)
        if (logits(b, i, c) > logits(b, i, best)) best = c;
      right += best == target(x[std::size_t(b)], i);
    }
  return double(right) / double(Index(x.size()) * length);
}

int main() {
  // One thread: this model is far too small for threads to pay for waking them.
  qkv::set_num_threads(1);
  Eigen::setNbThreads(1);
  qkv::NumpyRandom rng(0);
  Model model(rng);
  const auto held_out = random_sequences(rng, 256);
  Tensor<double> in_proj_weight = model.attention.in_proj_weight(), in_proj_bias = model.attention.in_proj_bias();
  Tensor<double> out_proj_weight(model.attention.out_proj_weight()), out_proj_bias(model.attention.out_proj_bias());
  Adam adam[8];
  const double lr = 0.002;

  std::printf("step   loss    held-out accuracy\n");
  for (int step = 1; step <= 200; ++step) {
    const auto x = random_sequences(rng, batch);
    // Forward.
    const Tensor<double> h = embed(model, x);
    const auto [attended, saved] = model.attention.forward_for_backward(h);
    const Tensor<double> logits = read_out(model, attended);
    // Cross-entropy, averaged over the batch's positions; its gradient (softmax − one-hot) / n.
    Tensor<double> grad_logits(logits.shape());
    double loss = 0;
    const double n = double(batch * length);
    for (Index b = 0; b < batch; ++b)
      for (Index i = 0; i < length; ++i) {
        double max = logits(b, i, Index(0)), sum = 0;
        for (Index c = 1; c < vocab; ++c) max = std::max(max, logits(b, i, c));
        for (Index c = 0; c < vocab; ++c) sum += std::exp(logits(b, i, c) - max);
        const Index t = target(x[std::size_t(b)], i);
        loss -= (logits(b, i, t) - max - std::log(sum)) / n;
        for (Index c = 0; c < vocab; ++c)
          grad_logits(b, i, c) = (std::exp(logits(b, i, c) - max) / sum - (c == t ? 1.0 : 0.0)) / n;
      }
    // Backward: the read-out, the attention layer, the embeddings.
    const Tensor<double> grad_head_weight =
        qkv::sum(qkv::matmul(qkv::transpose(grad_logits), attended), 0);  // Σ_b (vocab, embed_dim)
    Tensor<double> grad_head_bias(Shape{vocab});
    for (Index i = 0; i < grad_logits.numel(); ++i) grad_head_bias.data()[i % vocab] += grad_logits.data()[i];
    const Tensor<double> grad_attended = qkv::matmul(grad_logits, model.head_weight);
    const auto g = model.attention.backward(saved, grad_attended);
    const Tensor<double> grad_h = g.grad_query + g.grad_key + g.grad_value;  // h is query, key and value
    Tensor<double> grad_tokens(model.token_embedding.shape()), grad_positions(model.position_embedding.shape());
    for (Index b = 0; b < batch; ++b)
      for (Index i = 0; i < length; ++i)
        for (Index e = 0; e < embed_dim; ++e) {
          grad_tokens(x[std::size_t(b)][std::size_t(i)], e) += grad_h(b, i, e);
          grad_positions(i, e) += grad_h(b, i, e);
        }
    // Adam.
    adam[0].step(model.token_embedding, grad_tokens, lr, step);
    adam[1].step(model.position_embedding, grad_positions, lr, step);
    adam[2].step(model.head_weight, grad_head_weight, lr, step);
    adam[3].step(model.head_bias, grad_head_bias, lr, step);
    adam[4].step(in_proj_weight, g.grad_in_proj_weight(), lr, step);
    adam[5].step(in_proj_bias, g.grad_in_proj_bias(), lr, step);
    adam[6].step(out_proj_weight, g.grad_out_proj_weight, lr, step);
    adam[7].step(out_proj_bias, g.grad_out_proj_bias, lr, step);
    model.attention.set_in_proj(in_proj_weight, in_proj_bias.view());
    model.attention.set_out_proj(out_proj_weight, out_proj_bias.view());
    if (step == 1 || step % 20 == 0) std::printf("%4d   %.3f   %5.1f %%\n", step, loss, 100 * accuracy(model, held_out));
  }
  const double final_accuracy = accuracy(model, held_out);
  std::printf("reversed %s of the 2048 held-out digits correctly\n", final_accuracy == 1.0 ? "all" : "not all");
  return final_accuracy == 1.0 ? 0 : 1;
}
