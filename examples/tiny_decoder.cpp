// A tiny decoder-only language model with random weights, decoding greedily the way LLM
// inference engines do: 3 layers of grouped-query attention (embed_dim 64, 8 query heads
// sharing 2 key/value heads) with rotary position embeddings, RMS-normalised inputs and
// residual connections (h += attention(rms_norm(h)), as Llama without its MLPs), one KVCache
// per layer, tied input/output embeddings (logits = rms_norm(h) · embeddingᵀ) over a
// vocabulary of 64 tokens. The prompt goes through in one forward_cached call per layer, then each new
// token is one call per layer that attends to everything cached so far.
//
// It prints the generated token ids, the caches' memory, and checks that decoding with the
// caches gave the same hidden states as one causal forward pass over the whole sequence (it
// exits with status 1 if not). Tokens per second go to stderr: they vary from run to run.
#include <qkv/qkv.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <limits>
#include <vector>

using qkv::Index;
using qkv::Tensor;

class TinyDecoder {
 public:
  static constexpr Index vocab = 64, embed_dim = 64, num_heads = 8, num_kv_heads = 2, num_layers = 3;

  explicit TinyDecoder(qkv::NumpyRandom& rng)
      : embedding_(rng.randn<float>({vocab, embed_dim})), rope_(embed_dim / num_heads) {
    qkv::MultiHeadAttentionConfig config;
    config.num_kv_heads = num_kv_heads;
    config.bias = false;
    // Weights from nn.MultiheadAttention's initial distributions, drawn from NumPy's stream.
    for (Index l = 0; l < num_layers; ++l) layers_.emplace_back(embed_dim, num_heads, config, rng);
  }

  std::vector<qkv::KVCache<float>> make_caches(Index capacity) const {
    std::vector<qkv::KVCache<float>> caches;
    for (const auto& layer : layers_) caches.push_back(layer.make_cache(/*batch=*/1, capacity));
    return caches;
  }

  /// Hidden states (1, n, embed_dim) of n new tokens that follow the cached ones.
  Tensor<float> decode(const std::vector<Index>& tokens, std::vector<qkv::KVCache<float>>& caches) const {
    Tensor<float> h = embed(tokens);
    for (std::size_t l = 0; l < layers_.size(); ++l) h += layers_[l].forward_cached(rms_norm(h), caches[l], &rope_);
    return h;
  }

  /// The same hidden states from scratch: one causal pass over the whole sequence per layer.
  Tensor<float> forward(const std::vector<Index>& tokens) const {
    qkv::MultiHeadAttentionForward<float> options;
    options.causal = qkv::Causal::upper_left;
    options.rope = &rope_;
    Tensor<float> h = embed(tokens);
    for (const auto& layer : layers_) h += layer.forward(rms_norm(h), options).output;
    return h;
  }

  /// Greedy choice from the last position's logits rms_norm(h) · embeddingᵀ, among the tokens not in
  /// `seen` (Hugging Face's no_repeat_ngram_size=1): with random weights, plain greedy
  /// decoding soon repeats one token forever.
  Index next_token(const Tensor<float>& h, const std::vector<Index>& seen) const {
    const Tensor<float> normed = rms_norm(h);
    const auto last = normed[0][h.size(1) - 1];
    Index best = 0;
    float best_logit = -std::numeric_limits<float>::infinity();
    for (Index token = 0; token < vocab; ++token) {
      if (std::find(seen.begin(), seen.end(), token) != seen.end()) continue;
      float logit = 0;
      for (Index e = 0; e < embed_dim; ++e) logit += last(e) * embedding_(token, e);
      if (logit > best_logit) {
        best = token;
        best_logit = logit;
      }
    }
    return best;
  }

 private:
  // x / sqrt(mean(x²) + 1e-6) per position, as Llama's RMSNorm without its gain.
  static Tensor<float> rms_norm(const Tensor<float>& x) {
    Tensor<float> y = x;
    auto rows = y.view().reshape({y.numel() / embed_dim, embed_dim}).matrix();
    for (Index i = 0; i < rows.rows(); ++i) rows.row(i) /= std::sqrt(rows.row(i).squaredNorm() / embed_dim + 1e-6f);
    return y;
  }

  Tensor<float> embed(const std::vector<Index>& tokens) const {
    Tensor<float> x(qkv::Shape{1, static_cast<Index>(tokens.size()), embed_dim});
    for (std::size_t i = 0; i < tokens.size(); ++i)
      std::copy_n(embedding_[tokens[i]].data(), embed_dim, x[0][static_cast<Index>(i)].data());
    return x;
  }

  Tensor<float> embedding_;  // (vocab, embed_dim)
  qkv::RotaryEmbedding<float> rope_;
  std::vector<qkv::MultiHeadAttention<float>> layers_;
};

int main() {
  qkv::NumpyRandom rng(3);
  const TinyDecoder model(rng);
  const std::vector<Index> prompt = {1, 2, 3, 4, 5};
  const Index new_tokens = 24, capacity = 32;
  auto caches = model.make_caches(capacity);

  const auto start = std::chrono::steady_clock::now();
  std::vector<Index> sequence = prompt;  // every token fed to the model
  std::vector<Index> generated;
  Tensor<float> h = model.decode(prompt, caches);  // the prompt in one call per layer
  std::vector<Tensor<float>> hidden = {h};
  for (;;) {
    generated.push_back(model.next_token(h, sequence));
    if (static_cast<Index>(generated.size()) == new_tokens) break;
    sequence.push_back(generated.back());
    h = model.decode({generated.back()}, caches);  // one token, one call per layer
    hidden.push_back(h);
  }
  const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
  std::cerr << static_cast<double>(new_tokens) / seconds.count() << " tokens/s\n";

  std::cout << "prompt:   ";
  for (Index token : prompt) std::cout << ' ' << token;
  std::cout << "\ngenerated:";
  for (Index token : generated) std::cout << ' ' << token;

  const qkv::KVCache<float>& cache = caches.front();
  const std::size_t total = caches.size() * cache.memory_bytes();
  std::cout << "\n\nKV cache per layer: " << cache.size() << " of " << cache.capacity() << " positions used, "
            << cache.memory_bytes() << " bytes for keys and values of " << cache.num_kv_heads() << " heads x "
            << cache.head_dim() << " floats\n"
            << "KV caches of the " << caches.size() << " layers: " << total << " bytes ("
            << total * TinyDecoder::num_heads / TinyDecoder::num_kv_heads
            << " with one key/value head per query head)\n";

  // The caches are exact: every hidden state equals the full causal pass's, to float rounding.
  const Tensor<float> full = model.forward(sequence);
  float largest = 0, difference = 0;
  Index position = 0;
  for (const Tensor<float>& step : hidden)
    for (Index i = 0; i < step.size(1); ++i, ++position)
      for (Index e = 0; e < TinyDecoder::embed_dim; ++e) {
        largest = std::max(largest, std::abs(full(0, position, e)));
        difference = std::max(difference, std::abs(step(0, i, e) - full(0, position, e)));
      }
  std::cerr << "largest |hidden state| " << largest << ", largest difference " << difference << '\n';
  const bool same = position == static_cast<Index>(sequence.size()) && difference <= 1e-5f * largest;
  std::cout << "hidden states of all " << sequence.size()
            << " positions equal one causal forward pass over the sequence (to 1e-5 relative): "
            << (same ? "yes" : "NO") << '\n';
  return same ? 0 : 1;
}
