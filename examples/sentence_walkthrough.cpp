// A first walk through attention, step by step, on the sentence "the cat sat on the mat":
// word embeddings, the query/key/value projections of a qkv::ScaledDotProductAttention, the
// scores, their scaling, the causal mask, the softmax weights and the output, each printed
// with one line saying what it is. It ends with the word each word attends to most, and
// checks the steps against the layer's own forward(). Not tied to a notebook; it follows the
// steps of notebooks 000 and 004 (000_46db5614e58601d5.txt, 004_e8544f71f0ce4f10.txt).
#include <qkv/qkv.hpp>

#include <cmath>
#include <iomanip>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

int main() {
  const std::vector<std::string> words = {"the", "cat", "sat", "on", "the", "mat"};
  const std::vector<std::string> vocabulary = {"the", "cat", "sat", "on", "mat"};
  const std::vector<qkv::Index> ids = {0, 1, 2, 3, 0, 4};  // each word's row in the vocabulary
  const qkv::Index d_model = 4, d_k = 4, seq_len = static_cast<qkv::Index>(words.size());
  qkv::NumpyRandom rng(0);  // NumPy's generator: np.random.seed(0)

  std::cout << "Sentence: the cat sat on the mat (" << seq_len << " words)\n";

  // 1. Embeddings: a model looks each word up in a table of learned vectors. These are random
  // (np.random.randn(5, 4)); both "the" get the same row.
  const auto table = rng.randn<float>({static_cast<qkv::Index>(vocabulary.size()), d_model});
  std::vector<qkv::Tensor<float>> rows;
  for (qkv::Index id : ids) rows.emplace_back(table[id]);
  const auto x = qkv::stack(rows);
  std::cout << "\n1. Embeddings x: one row of " << d_model << " numbers per word\n" << x << '\n';

  // 2. Projections: three learned matrices turn each embedding into a query (what the word
  // looks for), a key (what it offers to be found by) and a value (what it passes on).
  const auto attention = qkv::ScaledDotProductAttention<float>::linear_init(d_model, d_k, d_k, rng);
  const auto Q = attention.queries(x), K = attention.keys(x), V = attention.values(x);
  std::cout << "\n2. Queries Q = x @ W_q: what each word is looking for\n" << Q << '\n'
            << "   Keys K = x @ W_k: what each word can be found by\n" << K << '\n'
            << "   Values V = x @ W_v: what each word passes on\n" << V << '\n';

  // 3. Scores: row i, column j is how well word i's query matches word j's key.
  const auto scores = qkv::matmul(Q, qkv::transpose(K));
  std::cout << "\n3. Scores Q @ K.T: row i, column j = how well word i's query matches word j's key\n"
            << scores << '\n';

  // 4. Scaling keeps the scores from growing with d_k, so softmax does not saturate.
  const auto scaled = scores / std::sqrt(static_cast<float>(d_k));
  std::cout << "\n4. Scaled scores = scores / sqrt(d_k): keeps the softmax from saturating as d_k grows\n"
            << scaled << '\n';

  // 5. Causal mask: a word may look at itself and the words before it, not after (as when
  // a model writes text one word at a time). Hidden scores become -inf. (masked_fill fills
  // where the mask is true; a boolean attn_mask of scaled_dot_product_attention is the
  // opposite, true where a word may attend, as in PyTorch.)
  const auto future = qkv::triu(qkv::Tensor<bool>::ones({seq_len, seq_len}), 1);
  const auto masked = qkv::masked_fill(scaled, future, -std::numeric_limits<float>::infinity());
  std::cout << "\n5. Causal mask: True where word i would look ahead at word j\n" << future << '\n'
            << "   Masked scores: the future set to -inf\n" << masked << '\n';

  // 6. Softmax along each row turns scores into weights: positive, summing to 1, and 0 where -inf.
  const auto weights = qkv::softmax(masked, -1);
  std::cout << "\n6. Weights softmax(masked, dim=-1): each row sums to 1\n" << weights << '\n';

  // 7. The output: each word's new vector is the weighted average of the values it sees.
  const auto output = qkv::matmul(weights, V);
  std::cout << "\n7. Output weights @ V: each word's values mixed by its weights\n" << output << '\n';

  // The layer does steps 2 to 7 in one call.
  const auto [layer_output, layer_weights] = attention.forward(x, qkv::Causal::upper_left);
  std::cout << "\nattention.forward(x, qkv::Causal::upper_left) gives the same: " << std::boolalpha
            << (qkv::allclose(layer_output, output, 1e-5, 1e-6) && qkv::allclose(layer_weights, weights, 1e-5, 1e-6))
            << '\n';

  std::cout << "\nThe word each word attends to most:\n";
  for (qkv::Index i = 0; i < seq_len; ++i) {
    qkv::Index most = 0;
    for (qkv::Index j = 1; j < seq_len; ++j)
      if (weights(i, j) > weights(i, most)) most = j;
    std::cout << "  " << std::left << std::setw(4) << words[std::size_t(i)] << "-> " << std::setw(4) << words[std::size_t(most)]
              << "(word " << most << ")  " << weights[i] << '\n';
  }
  std::cout << "Both \"the\" have the same embedding and query, but the first sees only itself.\n";
}
