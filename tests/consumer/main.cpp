// A consumer's program: it includes each public header of the installed or embedded qkv
// and calls its main functions, in float and double. tests/CMakeLists.txt builds it with
// users' strict warnings (-Wshadow -Wconversion -Wsign-conversion -Wold-style-cast ...
// -Werror) through find_package, add_subdirectory and pkg-config, with g++ and clang++;
// it checks a few results against numbers computed independently and exits with 1 if one
// differs.
#include <qkv/attention.hpp>
#include <qkv/attention_backward.hpp>
#include <qkv/half.hpp>
#include <qkv/kernel.hpp>
#include <qkv/kv_cache.hpp>
#include <qkv/layers.hpp>
#include <qkv/multi_head_attention.hpp>
#include <qkv/npy.hpp>
#include <qkv/ops.hpp>
#include <qkv/parallel.hpp>
#include <qkv/print.hpp>
#include <qkv/qkv.hpp>
#include <qkv/random.hpp>
#include <qkv/rope.hpp>
#include <qkv/shape.hpp>
#include <qkv/softmax.hpp>
#include <qkv/tensor.hpp>
#include <qkv/tensor_view.hpp>
#include <qkv/version.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  if (!ok) {
    std::printf("consumer: FAILED: %s\n", what);
    ++failures;
  }
}

// Attention with a boolean mask and a causal option, the module, multi-head attention with
// a KV cache and rotary embeddings, and the ops, all in T.
template <class T>
void exercise(const char* type) {
  qkv::NumpyRandom rng(0);
  const qkv::Tensor<T> q = rng.randn<T>({1, 2, 4, 8});
  const qkv::Tensor<T> k = rng.randn<T>({1, 2, 6, 8});
  const qkv::Tensor<T> v = rng.randn<T>({1, 2, 6, 3});

  // A mask hiding key 0 from every query, combined with lower-right causality.
  qkv::Tensor<bool> mask = qkv::Tensor<bool>::ones({4, 6});
  for (qkv::Index i = 0; i < 4; ++i) mask(i, 0) = false;
  qkv::AttentionOptions<T> options;
  options.causal = qkv::Causal::lower_right;
  options.attn_mask = mask;
  const auto [out, weights] = qkv::scaled_dot_product_attention_with_weights(q, k, v, options);
  check(out.shape() == qkv::Shape{1, 2, 4, 3}, "attention output shape");
  // Every row of the weights sums to 1, key 0 gets nothing, and row 0 sees keys 1..2 only.
  const qkv::Tensor<T> row_sums = qkv::sum(weights, -1);
  for (qkv::Index h = 0; h < 2; ++h)
    for (qkv::Index i = 0; i < 4; ++i) check(std::abs(row_sums(0, h, i) - T(1)) < T(1e-5), "weights sum to 1");
  check(weights(0, 0, 0, 0) == T(0) && weights(0, 1, 0, 3) == T(0), "mask and causal hide keys");
  // The unfused formula gives the same output.
  const qkv::Tensor<T> scores = qkv::matmul(q, qkv::transpose(k)) / T(std::sqrt(8.0));
  qkv::Tensor<bool> hidden = qkv::Tensor<bool>::ones({4, 6});
  for (qkv::Index i = 0; i < 4; ++i)
    for (qkv::Index j = 1; j <= i + 2; ++j) hidden(i, j) = false;
  const T minus_inf = -std::numeric_limits<T>::infinity();
  const qkv::Tensor<T> masked = qkv::masked_fill(scores, hidden, minus_inf);
  const qkv::Tensor<T> reference = qkv::matmul(qkv::softmax(masked, -1), v);
  check(qkv::allclose(out, reference, 1e-4, 1e-5), "attention equals softmax(q k^T / sqrt(E) + mask) v");

  // The fused kernel writing into a caller's buffer.
  qkv::Tensor<T> out2 = qkv::Tensor<T>::zeros({1, 2, 4, 3});
  qkv::scaled_dot_product_attention_out(out2.view(), q, k, v, options);
  check(qkv::allclose(out, out2, 1e-4, 1e-5), "scaled_dot_product_attention_out");

  // The backward pass of loss = sum(out): each query row spreads a total weight of 1 over
  // the values, so grad_v summed over the keys is the number of query rows, 4.
  const auto [out3, logsumexp] = qkv::scaled_dot_product_attention_with_logsumexp(q, k, v, options);
  const qkv::Tensor<T> ones = qkv::Tensor<T>::ones({1, 2, 4, 3});
  const auto grads = qkv::scaled_dot_product_attention_backward(ones, q, k, v, out3, logsumexp, options);
  check(grads.grad_q.shape() == q.shape() && grads.grad_k.shape() == k.shape(), "gradient shapes");
  const qkv::Tensor<T> grad_v_sums = qkv::sum(grads.grad_v, -2);
  for (qkv::Index h = 0; h < 2; ++h)
    for (qkv::Index e = 0; e < 3; ++e)
      check(std::abs(grad_v_sums(0, h, e) - T(4)) < T(1e-4), "grad_v sums to the number of query rows");

  // The notebooks' module.
  const qkv::Tensor<T> x = rng.randn<T>({1, 5, 8});
  const auto attention = qkv::ScaledDotProductAttention<T>::linear_init(8, 8, 8, rng);
  const auto result = attention.forward(x, qkv::Causal::upper_left);
  check(result.output.shape() == qkv::Shape{1, 5, 8} && result.weights.shape() == qkv::Shape{1, 5, 5},
        "ScaledDotProductAttention shapes");

  // Multi-head attention with grouped-query heads, decoded through a KV cache with rotary
  // embeddings, equals one causal pass over the whole sequence.
  qkv::MultiHeadAttentionConfig config;
  config.num_kv_heads = 2;
  const qkv::MultiHeadAttention<T> layer(16, 4, config, rng);
  const qkv::RotaryEmbedding<T> rope(layer.head_dim());
  const qkv::Tensor<T> tokens = rng.randn<T>({1, 5, 16});
  auto cache = layer.make_cache(/*batch=*/1, /*capacity=*/8);
  const qkv::Tensor<T> prompt = layer.forward_cached(tokens.narrow(1, 0, 3), cache, &rope);
  const qkv::Tensor<T> next = layer.forward_cached(tokens.narrow(1, 3, 2), cache, &rope);
  qkv::MultiHeadAttentionForward<T> full;
  full.causal = qkv::Causal::upper_left;
  full.rope = &rope;
  const qkv::Tensor<T> whole = layer.forward(tokens, full).output;
  check(cache.size() == 5 && cache.remaining() == 3, "KVCache size");
  check(qkv::allclose(qkv::Tensor<T>(whole.narrow(1, 3, 2)), next, 1e-4, 1e-5), "cached decoding");
  check(qkv::allclose(qkv::Tensor<T>(whole.narrow(1, 0, 3)), prompt, 1e-4, 1e-5), "cached prompt");

  // A cache without a layer: 6 tokens appended and attended to in one step is causal attention.
  qkv::KVCache<T> bare(1, 2, 6, 8, 3);
  const qkv::Tensor<T> step = qkv::cached_attention(bare, k, k, v);
  qkv::AttentionOptions<T> causal;
  causal.causal = qkv::Causal::upper_left;
  check(qkv::allclose(step, qkv::scaled_dot_product_attention(k, k, v, causal), 1e-6, 1e-6), "cached_attention");

  // .npy round trip through a temporary file.
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("qkv_consumer_" + std::string(type) + ".npy");
  qkv::save_npy(path.string(), out);
  const qkv::Tensor<T> loaded = qkv::load_npy<T>(path.string());
  std::error_code ignored;
  std::filesystem::remove(path, ignored);
  check(qkv::equal(loaded, out), "save_npy / load_npy round trip");

  // Printing as PyTorch and NumPy.
  std::ostringstream printed;
  printed << qkv::Tensor<T>{0.5, 1.5};
  check(printed.str() == std::string("tensor([0.5000, 1.5000]") +
                             (std::is_same_v<T, double> ? ", dtype=torch.float64)" : ")"),
        "operator<<");
  check(qkv::numpy_str(qkv::Tensor<T>{0.5, 1.5}) == "[0.5 1.5]", "numpy_str");
  std::printf("consumer: %s: %s\n", type, qkv::torch_repr(out[0][1]).substr(0, 16).c_str());
}

}  // namespace

int main() {
  // Notebook 003's context vector of "journey", tensor([0.4419, 0.6515, 0.5683]).
  // Float literals: with -Wconversion, clang++ flags 0.43 (a double) narrowed to float.
  const qkv::Tensor<float> inputs = {{0.43f, 0.15f, 0.89f}, {0.55f, 0.87f, 0.66f}, {0.57f, 0.85f, 0.64f},
                                     {0.22f, 0.58f, 0.33f}, {0.77f, 0.25f, 0.10f}, {0.05f, 0.80f, 0.55f}};
  qkv::AttentionOptions<float> options;
  options.scale = 1.0;
  qkv::set_num_threads(2);
  check(qkv::get_num_threads() >= 1, "get_num_threads");
  const qkv::Tensor<float> context = qkv::scaled_dot_product_attention(inputs, inputs, inputs, options);
  const float expected[] = {0.4419f, 0.6515f, 0.5683f};
  for (qkv::Index e = 0; e < 3; ++e) check(std::abs(context(1, e) - expected[e]) < 0.5e-4f, "notebook 003");

  exercise<float>("float");
  exercise<double>("double");

  // The 16-bit element types convert as torch.Tensor.to does.
  const qkv::Tensor<qkv::bfloat16> k16 = qkv::to<qkv::bfloat16>(inputs);
  const qkv::Tensor<float> back = qkv::to<float>(qkv::to<qkv::half>(inputs));
  check(float(k16(0, 0)) == 0.4296875f && std::abs(back(0, 0) - 0.43f) < 1e-3f, "bfloat16 and half");

  // Attention in bf16 and f16 throughout, and float queries against an f16 KV cache, equal
  // float attention on the same (rounded) values to 16-bit precision.
  qkv::NumpyRandom rng(1);
  const qkv::Tensor<float> q32 = rng.randn<float>({2, 5, 8}), k32 = rng.randn<float>({2, 7, 8});
  const qkv::Tensor<float> v32 = rng.randn<float>({2, 7, 4});
  const qkv::Tensor<float> exact = qkv::scaled_dot_product_attention(q32, k32, v32);
  const auto out_bf16 = qkv::scaled_dot_product_attention(qkv::to<qkv::bfloat16>(q32), qkv::to<qkv::bfloat16>(k32),
                                                          qkv::to<qkv::bfloat16>(v32));
  const auto out_f16 =
      qkv::scaled_dot_product_attention(qkv::to<qkv::half>(q32), qkv::to<qkv::half>(k32), qkv::to<qkv::half>(v32));
  const auto out_mixed = qkv::scaled_dot_product_attention(q32, qkv::to<qkv::half>(k32), qkv::to<qkv::half>(v32));
  check(qkv::allclose(qkv::to<float>(out_bf16), exact, 0.05, 0.05), "bfloat16 attention");
  check(qkv::allclose(qkv::to<float>(out_f16), exact, 0.01, 0.01), "half attention");
  check(qkv::allclose(out_mixed, exact, 0.01, 0.01), "float queries, half keys and values");
  // A multi-head layer decoding into a bf16 cache, against its float cache.
  const qkv::MultiHeadAttention<float> layer(16, 2, qkv::MultiHeadAttentionConfig{}, rng);
  auto cache32 = layer.make_cache(1, 4);
  auto cache16 = layer.make_cache<qkv::bfloat16>(1, 4);
  const qkv::Tensor<float> tokens = rng.randn<float>({1, 3, 16});
  check(qkv::allclose(layer.forward_cached(tokens, cache16), layer.forward_cached(tokens, cache32), 0.05, 0.05) &&
            2 * cache16.memory_bytes() == cache32.memory_bytes(),
        "bfloat16 KV cache");

  static_assert(QKV_VERSION == QKV_VERSION_MAJOR * 10000 + QKV_VERSION_MINOR * 100 + QKV_VERSION_PATCH);
#ifdef QKV_EXPECTED_VERSION
  static_assert(std::string_view(QKV_VERSION_STRING) == QKV_EXPECTED_VERSION,
                "<qkv/version.hpp> differs from the version of the qkv this program was built against");
#endif
  if (failures != 0) return 1;
  std::printf("consumer: qkv %s works\n", QKV_VERSION_STRING);
  return 0;
}
