// Attention on arrays from Python: reads q, k and v from NumPy .npy files, runs
// softmax(q·kᵀ/sqrt(E))·v and writes the result to another .npy file.
//
//   npy_attention q.npy k.npy v.npy out.npy
//
// q is (..., L, E), k is (..., S, E), v is (..., S, Ev), all float32. With no arguments it
// first writes small demo inputs q.npy, k.npy and v.npy into the current directory, then
// reads them back, so that it runs out of the box.
//
// From PyTorch (examples/npy_attention.py does both steps):
//   np.save("q.npy", q.numpy()); np.save("k.npy", k.numpy()); np.save("v.npy", v.numpy())
//   ... run npy_attention q.npy k.npy v.npy out.npy ...
//   out = torch.from_numpy(np.load("out.npy"))
//   ref = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v
//   print(torch.allclose(out, ref, atol=1e-6))  # PyTorch >= 2.0: F.scaled_dot_product_attention(q, k, v)
#include <qkv/qkv.hpp>

#include <exception>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 1 && argc != 5) {
    std::cerr << "usage: " << argv[0] << " [q.npy k.npy v.npy out.npy]\n";
    return 2;
  }
  std::string q_path = "q.npy", k_path = "k.npy", v_path = "v.npy", out_path = "out.npy";
  if (argc == 5) {
    q_path = argv[1], k_path = argv[2], v_path = argv[3], out_path = argv[4];
  } else {
    // Demo inputs: 2 heads, 3 queries, 5 keys, head_dim 4. In NumPy: np.random.seed(0);
    // q = np.random.randn(2, 3, 4).astype(np.float32); then k, then v likewise.
    qkv::NumpyRandom rng(0);
    qkv::save_npy(q_path, rng.randn<float>({2, 3, 4}));
    qkv::save_npy(k_path, rng.randn<float>({2, 5, 4}));
    qkv::save_npy(v_path, rng.randn<float>({2, 5, 4}));
    std::cout << "Wrote demo inputs q.npy, k.npy, v.npy\n";
  }

  try {
    // The files must hold float32 ('<f4') arrays in C order; anything else is an error
    // that says what the file holds instead.
    const qkv::Tensor<float> q = qkv::load_npy<float>(q_path);
    const qkv::Tensor<float> k = qkv::load_npy<float>(k_path);
    const qkv::Tensor<float> v = qkv::load_npy<float>(v_path);
    std::cout << "q " << q.shape().str() << ", k " << k.shape().str() << ", v " << v.shape().str() << '\n';

    const qkv::Tensor<float> out = qkv::scaled_dot_product_attention(q, k, v);
    qkv::save_npy(out_path, out);
    std::cout << "out " << out.shape().str() << " written to " << out_path << ":\n" << out << '\n';
  } catch (const std::exception& e) {  // a missing or malformed file, or shapes that do not fit
    std::cerr << e.what() << '\n';
    return 1;
  }
}
