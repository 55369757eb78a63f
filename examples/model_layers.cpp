// One attention layer configured as three current models configure theirs, each a
// qkv::MultiHeadAttentionConfig: Gemma 2's local layer (a sliding window of 4 tokens and
// logit soft-capping at 50), Mistral's (a sliding window, grouped-query heads) and
// gpt-oss's (a learned sink logit per head). Each runs causal self-attention over the same
// 6 tokens and prints its output and head-averaged weights: the windowed layers give no
// weight to keys more than 3 tokens back, and gpt-oss's rows sum to less than 1, the rest
// going to the sink.
#include <qkv/qkv.hpp>

#include <cmath>
#include <iostream>

int main() {
  qkv::NumpyRandom rng(0);
  const auto x = rng.randn<float>({1, 6, 8});  // (batch, L, embed_dim)

  qkv::MultiHeadAttentionConfig gemma2;
  gemma2.window = {3, 0};  // each token sees itself and the 3 before it (Gemma 2: 4096)
  gemma2.softcap = 50.0;   // Gemma 2's attn_logit_softcapping

  qkv::MultiHeadAttentionConfig mistral;
  mistral.window = {3, 0};
  mistral.num_kv_heads = 1;  // grouped-query attention: both heads share one key/value head

  qkv::MultiHeadAttentionConfig gpt_oss;
  gpt_oss.sinks = {0.5, 1.5};  // one learned logit per head

  qkv::MultiHeadAttentionForward<float> options;
  options.causal = qkv::Causal::upper_left;
  options.need_weights = true;
  // Rounded to 4 places, as the weights print: an exact 1 prints "1." and 0.99999994 "1.0000",
  // and which of the two a row gives depends on the compiler's order of additions.
  const auto rounded = [](float s) { return std::round(s * 1e4f) / 1e4f; };
  for (const auto& [name, config] : {std::pair{"Gemma 2 (local layer)", gemma2}, std::pair{"Mistral", mistral},
                                     std::pair{"gpt-oss", gpt_oss}}) {
    const qkv::MultiHeadAttention<float> layer(/*embed_dim=*/8, /*num_heads=*/2, config, rng);
    const auto [output, weights] = layer.forward(x, options);
    std::cout << name << "\noutput (batch, L, embed_dim):\n" << output << "\nweights averaged over the heads:\n"
              << weights << "\nrow sums: " << qkv::map(qkv::sum(weights, -1), rounded) << "\n\n";
  }
}
