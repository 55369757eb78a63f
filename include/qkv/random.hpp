// SPDX-License-Identifier: MIT
// qkv::NumpyRandom: NumPy's legacy global generator (np.random.seed / rand / randn /
// uniform) reproduced bit for bit, so C++ tests can draw the same inputs as a Python
// reference script without exchanging data files.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "tensor.hpp"

namespace qkv {

namespace detail {

// The product a * b rounded to double. Where a product is then added, a compiler allowed
// to contract a * b + c into one fused multiply-add (GCC under -std=gnu++17, or any
// compiler with -ffp-contract=fast, on a CPU with FMA) would skip this rounding and
// change last bits that NumPy's build does not change. A volatile object cannot be fused
// through; the extra store costs little next to the log and sqrt of a Gaussian draw.
inline double unfused_product(double a, double b) noexcept {
  const volatile double product = a * b;
  return product;
}

}  // namespace detail

/// \brief NumPy's legacy random generator (`np.random.seed`, `rand`, `randn`, `uniform`,
/// i.e. `numpy.random.RandomState`), reproduced exactly.
///
/// The engine is MT19937 seeded by init_genrand with a 32-bit seed, which is what
/// `np.random.seed(n)` does for an integer `n`. Uniform doubles take 53 bits from two
/// 32-bit outputs, and Gaussians come from the polar Box-Muller method, which yields
/// Gaussians in pairs: the second is cached and returned by the next Gaussian draw, even
/// across calls (randn(3) then randn(4) equals randn(7)). Uniform draws neither use nor
/// discard the cached Gaussian, as in NumPy. Re-seeding clears the cache.
///
/// Tensors are filled in C order, as NumPy fills arrays. `Tensor<float>` holds the double
/// values rounded to float, as `torch.tensor(np.random.rand(4), dtype=torch.float32)`
/// does. The values match NumPy bit for bit on IEEE-754 double hardware without excess
/// precision (not x87), given a libm `log` that rounds as the one NumPy links against
/// (glibc's does on the same machine), and without -ffast-math. FMA contraction is
/// guarded against, so -march=native and -std=gnu++17 builds keep the exact stream.
///
/// Not thread-safe: give each thread its own generator, as each would need its own
/// `RandomState` in NumPy.
/// \code
/// // Python: np.random.seed(0); q = np.random.randn(2, 8, 16).astype(np.float32)
/// qkv::NumpyRandom rng(0);
/// qkv::Tensor<float> q = rng.randn<float>({2, 8, 16});
/// double u = rng.random_double();               // np.random.random_sample()
/// auto w = rng.uniform(-0.1, 0.1, {16, 16});    // np.random.uniform(-0.1, 0.1, (16, 16))
/// \endcode
/// \see Tensor, which rand, randn and uniform return.
class NumpyRandom {
 public:
  /// A generator seeded as np.random.seed(seed).
  explicit NumpyRandom(std::uint32_t seed = 0) : engine_(seed) {}

  /// Restarts the stream, as `np.random.seed(seed)`; also drops a cached Gaussian.
  void seed(std::uint32_t seed) {
    engine_.seed(seed);
    has_gauss_ = false;
    gauss_ = 0.0;
  }

  /// One double in [0, 1) with 53 random bits, as `np.random.random_sample()`.
  double random_double() {
    const std::uint32_t a = next_uint32() >> 5;  // 27 bits
    const std::uint32_t b = next_uint32() >> 6;  // 26 bits
    return (a * 67108864.0 + b) / 9007199254740992.0;  // (a * 2^26 + b) / 2^53
  }

  /// One standard normal value, as `np.random.standard_normal()`.
  double standard_normal() {
    if (has_gauss_) {
      has_gauss_ = false;
      return gauss_;
    }
    double x1, x2, r2;
    do {  // a point uniform in the unit disc, origin excluded
      x1 = 2.0 * random_double() - 1.0;
      x2 = 2.0 * random_double() - 1.0;
      r2 = detail::unfused_product(x1, x1) + detail::unfused_product(x2, x2);
    } while (r2 >= 1.0 || r2 == 0.0);
    const double f = std::sqrt(-2.0 * std::log(r2) / r2);
    gauss_ = f * x1;
    has_gauss_ = true;
    return f * x2;
  }

  /// One value in [low, high), as `np.random.uniform(low, high)`. `low > high` is
  /// allowed (values then lie in (high, low]), as in NumPy.
  /// \throws std::overflow_error if `high - low` is not finite, without drawing.
  double uniform(double low = 0.0, double high = 1.0) {
    const double range = checked_range("qkv::NumpyRandom::uniform", low, high);
    return low + detail::unfused_product(range, random_double());
  }

  /// A tensor of `shape` uniform in [0, 1), as `np.random.rand(*shape)`.
  template <class T = double>
  Tensor<T> rand(const Shape& shape) {
    Tensor<T> t(shape);
    fill_rand(t);
    return t;
  }

  /// A tensor of `shape` of standard normal values, as `np.random.randn(*shape)`.
  template <class T = double>
  Tensor<T> randn(const Shape& shape) {
    Tensor<T> t(shape);
    fill_randn(t);
    return t;
  }

  /// A tensor of `shape` uniform in [low, high), as `np.random.uniform(low, high, shape)`.
  /// \throws std::overflow_error if `high - low` is not finite, without drawing.
  template <class T = double>
  Tensor<T> uniform(double low, double high, const Shape& shape) {
    Tensor<T> t(shape);
    fill_uniform(t, low, high);
    return t;
  }

  /// Overwrites every element of `out` with `rand` values, in the view's row-major
  /// order: a transposed view receives what NumPy's `a.T[...] = np.random.rand(*a.T.shape)`
  /// would store. Like the other fill functions, throws std::invalid_argument for a
  /// broadcast view (stride 0 along a dimension longer than 1), whose elements alias.
  template <class T>
  void fill_rand(TensorView<T> out) {
    fill(out, "qkv::NumpyRandom::fill_rand", [this] { return random_double(); });
  }
  /// fill_rand on a whole tensor.
  template <class T>
  void fill_rand(Tensor<T>& out) { fill_rand(out.view()); }

  /// Overwrites every element of `out` with `randn` values, in the view's row-major order.
  template <class T>
  void fill_randn(TensorView<T> out) {
    fill(out, "qkv::NumpyRandom::fill_randn", [this] { return standard_normal(); });
  }
  /// fill_randn on a whole tensor.
  template <class T>
  void fill_randn(Tensor<T>& out) { fill_randn(out.view()); }

  /// Overwrites every element of `out` with `uniform(low, high)` values, in the view's
  /// row-major order. \throws std::overflow_error if `high - low` is not finite.
  template <class T>
  void fill_uniform(TensorView<T> out, double low, double high) {
    const double range = checked_range("qkv::NumpyRandom::fill_uniform", low, high);
    fill(out, "qkv::NumpyRandom::fill_uniform",
         [this, low, range] { return low + detail::unfused_product(range, random_double()); });
  }
  /// fill_uniform on a whole tensor.
  template <class T>
  void fill_uniform(Tensor<T>& out, double low, double high) { fill_uniform(out.view(), low, high); }

 private:
  std::uint32_t next_uint32() {
    // std::mt19937's result_type may be wider than 32 bits, but its values are not.
    return static_cast<std::uint32_t>(engine_());
  }

  static double checked_range(const char* fn, double low, double high) {
    const double range = high - low;
    if (!std::isfinite(range))
      throw std::overflow_error(std::string(fn) + ": range [" + std::to_string(low) + ", " +
                                std::to_string(high) + ") exceeds valid bounds");
    return range;
  }

  template <class T, class Draw>
  static void fill(TensorView<T> out, const char* fn, Draw&& draw) {
    static_assert(!std::is_const_v<T>, "qkv::NumpyRandom: cannot fill a read-only view");
    static_assert(std::is_floating_point_v<T>,
                  "qkv::NumpyRandom: rand, randn and uniform fill floating-point tensors");
    if (out.empty()) return;  // an empty shape's contiguous strides may hold zeros too
    for (int d = 0; d < out.rank(); ++d)
      if (out.shape()[d] > 1 && out.strides()[d] == 0)
        throw std::invalid_argument(std::string(fn) + ": dimension " + std::to_string(d) +
                                    " of shape " + out.shape().str() +
                                    " is broadcast (stride 0); its elements alias");
    T* data = out.data();
    detail::for_each_offset(
        out.shape(), [&](Index offset) { data[offset] = static_cast<T>(draw()); }, out.strides());
  }

  // std::mt19937 seeded with a 32-bit integer runs init_genrand, the same seeding as
  // NumPy's mt19937_seed, so both produce the same 32-bit stream.
  std::mt19937 engine_;
  bool has_gauss_ = false;
  double gauss_ = 0.0;
};

}  // namespace qkv
