// Mirrors notebook 000_46db5614e58601d5.txt, "self-attention mechanism in the context of a
// transformer model". Part 1 projects 10 random 64-d inputs into queries, keys and values
// and prints the shape of every step. Part 2 runs self-attention on the sentence "The cat
// chased the mouse" with 4-d word embeddings from np.random.seed(0), printing the
// embeddings, each word's query, key and value, its attention weights and its output.
#include <qkv/qkv.hpp>

#include <cmath>
#include <iostream>
#include <string>
#include <vector>

int main() {
  // What print(t.shape) shows in PyTorch.
  const auto torch_size = [](const qkv::Shape& shape) {
    std::string s = "torch.Size([";
    for (int i = 0; i < shape.rank(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "])";
  };
  // The notebook's torch.rand draws were not seeded; here every random number comes from
  // NumPy's generator (np.random.rand), seeded with 0.
  qkv::NumpyRandom rng(0);

  {  // ---- Part 1: the shapes of each step.
    const qkv::Index d_k = 64, d_v = 64, seq_len = 10, embedding_dim = 64;
    const auto x = rng.rand<float>({seq_len, embedding_dim});  // input embeddings
    const auto W_q = rng.rand<float>({embedding_dim, d_k});
    const auto W_k = rng.rand<float>({embedding_dim, d_k});
    const auto W_v = rng.rand<float>({embedding_dim, d_v});

    const auto queries = qkv::matmul(x, W_q);  // (seq_len, d_k)
    const auto keys = qkv::matmul(x, W_k);     // (seq_len, d_k)
    const auto values = qkv::matmul(x, W_v);   // (seq_len, d_v)
    const auto scores = qkv::matmul(queries, qkv::transpose(keys));         // (seq_len, seq_len)
    const auto scaled_scores = scores / std::sqrt(static_cast<float>(d_k));  // for stability
    const auto attention_weights = qkv::softmax(scaled_scores, -1);         // (seq_len, seq_len)
    const auto output = qkv::matmul(attention_weights, values);             // (seq_len, d_v)

    std::cout << "Queries shape: " << torch_size(queries.shape()) << '\n'
              << "Keys shape: " << torch_size(keys.shape()) << '\n'
              << "Values shape: " << torch_size(values.shape()) << '\n'
              << "Attention scores shape: " << torch_size(scaled_scores.shape()) << '\n'
              << "Attention weights shape: " << torch_size(attention_weights.shape()) << '\n'
              << "Output shape: " << torch_size(output.shape()) << '\n';
  }

  // ---- Part 2: self-attention on a simple sentence.
  // 1. Word embeddings: np.random.seed(0), then np.random.rand(4) per word, as float32.
  const std::vector<std::string> words = {"The", "cat", "chased", "the", "mouse"};
  const qkv::Index embedding_dim = 4, d_k = embedding_dim, d_v = embedding_dim;
  rng.seed(0);
  std::vector<qkv::Tensor<float>> embeddings;
  std::cout << "\nWord Embeddings:\n";
  for (const auto& word : words) {
    embeddings.push_back(rng.rand<float>({embedding_dim}));
    std::cout << word << ": " << embeddings.back() << '\n';
  }
  const auto x = qkv::stack(embeddings);  // (5, embedding_dim)

  // 2. Project to queries, keys and values. The notebook's W came from unseeded torch.rand
  // and were never printed, so from here on its numbers cannot be reproduced: these W
  // continue the seeded NumPy stream after the embeddings.
  const auto W_q = rng.rand<float>({embedding_dim, d_k});
  const auto W_k = rng.rand<float>({embedding_dim, d_k});
  const auto W_v = rng.rand<float>({embedding_dim, d_v});
  std::cout << "\n(W_q, W_k, W_v: seeded np.random.rand(4, 4); the notebook's were unseeded,"
               " so the numbers below differ)\n";
  const auto queries = qkv::matmul(x, W_q);
  const auto keys = qkv::matmul(x, W_k);
  const auto values = qkv::matmul(x, W_v);
  std::cout << "\nQueries, Keys, and Values:\n";
  for (qkv::Index i = 0; i < x.size(0); ++i)
    std::cout << words[std::size_t(i)] << " - Query: " << queries[i] << ", Key: " << keys[i]
              << ", Value: " << values[i] << '\n';

  // 3. Scores: every query against every key, scaled by sqrt(d_k).
  // 4. Softmax along each row: how much each word focuses on every word.
  const auto scores = qkv::matmul(queries, qkv::transpose(keys));
  const auto scaled_scores = scores / std::sqrt(static_cast<float>(d_k));
  const auto attention_weights = qkv::softmax(scaled_scores, -1);
  std::cout << "\nAttention Weights (focus on each word):\n";
  for (qkv::Index i = 0; i < x.size(0); ++i) std::cout << words[std::size_t(i)] << ": " << attention_weights[i] << '\n';

  // 5. Each word's output: the values weighted by its attention weights.
  const auto output = qkv::matmul(attention_weights, values);
  std::cout << "\nOutput Embeddings (contextualized representation of each word):\n";
  for (qkv::Index i = 0; i < x.size(0); ++i) std::cout << words[std::size_t(i)] << ": " << output[i] << '\n';
}
