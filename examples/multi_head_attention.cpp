// torch.nn.MultiheadAttention's computation in C++: a layer of embed_dim 4 and 2 heads gets its
// weights in PyTorch's own layout (in_proj_weight (12, 4), out_proj.weight (4, 4), biases),
// then runs self-attention over a batch of two 3-token sequences whose first one ends in a
// padding token, and prints what PyTorch prints: the output and the head-averaged weights.
//
// The same in PyTorch 1.13, which prints the same numbers:
//   import numpy as np, torch
//   np.random.seed(0)
//   draw = lambda *shape: torch.tensor(np.random.uniform(-0.5, 0.5, shape), dtype=torch.float32)
//   mha = torch.nn.MultiheadAttention(4, 2, batch_first=True)
//   with torch.no_grad():
//       mha.in_proj_weight.copy_(draw(12, 4)); mha.in_proj_bias.copy_(draw(12))
//       mha.out_proj.weight.copy_(draw(4, 4)); mha.out_proj.bias.copy_(draw(4))
//       x = torch.tensor(np.random.randn(2, 3, 4), dtype=torch.float32)
//       padding = torch.tensor([[False, False, True], [False, False, False]])
//       output, weights = mha(x, x, x, key_padding_mask=padding)
//   print(output); print(weights)
#include <qkv/qkv.hpp>

#include <iostream>

int main() {
  qkv::NumpyRandom rng(0);  // np.random.seed(0); the draws below are in the Python order
  const auto in_proj_weight = rng.uniform<float>(-0.5, 0.5, {12, 4});  // rows: W_q, W_k, W_v
  const auto in_proj_bias = rng.uniform<float>(-0.5, 0.5, {12});
  const auto out_proj_weight = rng.uniform<float>(-0.5, 0.5, {4, 4});
  const auto out_proj_bias = rng.uniform<float>(-0.5, 0.5, {4});
  const auto x = rng.randn<float>({2, 3, 4});  // (batch, L, embed_dim)

  // Weights as nn.Linear stores them, (out_features, in_features): the layer computes x·Wᵀ + b.
  qkv::MultiHeadAttention<float> mha(/*embed_dim=*/4, /*num_heads=*/2);
  mha.set_in_proj(in_proj_weight, in_proj_bias);
  mha.set_out_proj(out_proj_weight, out_proj_bias);

  // PyTorch's mask convention: true marks a padding key, which no query attends to.
  const qkv::Tensor<bool> padding = {{false, false, true}, {false, false, false}};
  qkv::MultiHeadAttentionForward<float> options;
  options.key_padding_mask = padding;
  options.need_weights = true;  // PyTorch's default; qkv's default skips the weights
  const auto [output, weights] = mha.forward(x, options);

  std::cout << "output (batch, L, embed_dim):\n" << output << "\n\n"
            << "weights averaged over the 2 heads (batch, L, S); the padding key gets none:\n"
            << weights << '\n';
}
