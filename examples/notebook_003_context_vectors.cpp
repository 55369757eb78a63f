// Mirrors notebook 003_64c5110f46e13351.txt, "Token Embeddings to Context Vectors": six
// tokens ("Your journey starts with one step") with fixed 3-d embeddings attend to each
// other without projections. It prints what the notebook prints, in order and with the same
// numbers: the scores and weights of the query "journey" (x^2), its context vector built
// term by term, then the 6x6 scores, weights and context vectors of all tokens, and at the
// end the same context vectors from a single qkv::scaled_dot_product_attention call.
#include <qkv/qkv.hpp>

#include <iostream>

int main() {
  const qkv::Tensor<float> inputs = {{0.43f, 0.15f, 0.89f},   // Your    (x^1)
                                     {0.55f, 0.87f, 0.66f},   // journey (x^2)
                                     {0.57f, 0.85f, 0.64f},   // starts  (x^3)
                                     {0.22f, 0.58f, 0.33f},   // with    (x^4)
                                     {0.77f, 0.25f, 0.10f},   // one     (x^5)
                                     {0.05f, 0.80f, 0.55f}};  // step    (x^6)
  const qkv::Index num_tokens = inputs.size(0);

  // Attention scores of the query x^2 ("journey"): its dot product with every token.
  const auto query = inputs[1];
  auto attn_scores_2 = qkv::Tensor<float>::zeros({num_tokens});
  for (qkv::Index i = 0; i < num_tokens; ++i) attn_scores_2(i) = qkv::dot(inputs[i], query);
  std::cout << "# scores of \"journey\" (x^2): dot(x^i, x^2)\n" << attn_scores_2 << '\n';

  // Normalised by their sum, then by softmax. qkv::sum(x, 0) is a 0-d tensor, as
  // x.sum() in PyTorch, and prints "tensor(1.0000)" when the float sum is just off 1 and
  // "tensor(1.)" when it is exactly 1; for both sums qkv gives what the notebook printed.
  const auto attn_weights_2_tmp = attn_scores_2 / qkv::sum(attn_scores_2, 0);
  std::cout << "# divided by their sum\n"
            << "Attention weights:  " << attn_weights_2_tmp << '\n'
            << "Sum:  " << qkv::sum(attn_weights_2_tmp, 0) << '\n';
  const auto attn_weights_2 = qkv::softmax(attn_scores_2, 0);
  std::cout << "# softmax\n"
            << "Attention weights: " << attn_weights_2 << '\n'
            << "Sum: " << qkv::sum(attn_weights_2, 0) << '\n';

  // The context vector z^2 = sum_i a_2i x^i, accumulated term by term: each line is
  // the running sum, then the next term.
  auto context_vec_2 = qkv::Tensor<float>::zeros(query.shape());
  std::cout << "# context vector of \"journey\": running sum, next term a_2i * x^i\n";
  for (qkv::Index i = 0; i < num_tokens; ++i) {
    const auto res = inputs[i] * attn_weights_2(i);
    std::cout << context_vec_2 << ' ' << res << '\n';
    context_vec_2 += res;
  }
  std::cout << "# context_vec_2\n" << context_vec_2 << '\n';

  // All tokens at once: every pairwise dot product in one matrix product.
  const auto attn_scores = qkv::matmul(inputs, qkv::transpose(inputs));
  std::cout << "# attn_scores = inputs @ inputs.T\n" << attn_scores << '\n';
  const auto attn_weights = qkv::softmax(attn_scores, -1);
  std::cout << "# attn_weights = softmax(attn_scores, dim=-1): each row sums to 1\n"
            << attn_weights << '\n';

  // The notebook adds the printed (rounded) weights of row 2 as Python floats.
  double row_2_sum = 0;
  for (double w : {0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581}) row_2_sum += w;
  std::cout << "Row 2 sum: " << qkv::numpy_str(qkv::Tensor<double>::scalar(row_2_sum)) << '\n'
            << "All row sums: " << qkv::sum(attn_weights, -1) << '\n';

  const auto all_context_vectors = qkv::matmul(attn_weights, inputs);
  std::cout << "# context vectors = attn_weights @ inputs\n" << all_context_vectors << '\n';

  // The same in one call. Scaled dot-product attention divides the scores by sqrt(3)
  // unless told otherwise; the notebook does not scale, so scale = 1.
  qkv::AttentionOptions<float> options;
  options.scale = 1.0;
  std::cout << "# qkv::scaled_dot_product_attention(inputs, inputs, inputs), scale 1\n"
            << qkv::scaled_dot_product_attention(inputs, inputs, inputs, options) << '\n';
}
