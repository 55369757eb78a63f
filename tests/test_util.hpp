// SPDX-License-Identifier: MIT
// What several test files share: the checker for exceptions and their messages, and the
// float/double type list with readable names for typed tests.
#pragma once

#include <gtest/gtest.h>
#include <qkv/kernel.hpp>
#include <qkv/tensor.hpp>

#include <cmath>
#include <exception>
#include <iomanip>
#include <initializer_list>
#include <sstream>
#include <limits>
#include <string>
#include <type_traits>
#include <typeinfo>

namespace qkv::test {

/// Succeeds when f() throws exactly E and what() contains every one of `parts`.
template <class E, class F>
::testing::AssertionResult ThrowsWith(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
  } catch (const E& e) {
    if (typeid(e) != typeid(E))
      return ::testing::AssertionFailure() << "threw a subclass " << typeid(e).name() << ": " << e.what();
    const std::string what = e.what();
    for (const std::string& p : parts)
      if (what.find(p) == std::string::npos)
        return ::testing::AssertionFailure() << "message \"" << what << "\" lacks \"" << p << "\"";
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw " << typeid(e).name() << ": " << e.what();
  } catch (...) {
    return ::testing::AssertionFailure() << "threw a non-std exception";
  }
  return ::testing::AssertionFailure() << "did not throw";
}

/// |computed - expected| <= tolerance elementwise, shapes equal. A NaN expected value
/// (PyTorch on a row that may see no key, where qkv gives zeros) is skipped: the caller
/// checks those rows.
template <class T, class U>
::testing::AssertionResult AllNear(const Tensor<T>& computed, const Tensor<U>& expected, double tolerance) {
  if (computed.shape() != expected.shape())
    return ::testing::AssertionFailure() << "shape " << computed.shape().str() << " != " << expected.shape().str();
  std::ostringstream failures;
  failures << std::setprecision(17);
  for (Index i = 0; i < computed.numel(); ++i) {
    const double c = static_cast<double>(computed.data()[i]), e = static_cast<double>(expected.data()[i]);
    if (std::isnan(e)) continue;
    if (!(std::abs(c - e) <= tolerance))
      failures << "\n  element " << i << " of " << computed.shape().str() << ": " << c << " != " << e
               << ", |difference| " << std::abs(c - e) << " > " << tolerance;
  }
  if (failures.str().empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << failures.str();
}

using FloatTypes = ::testing::Types<float, double>;
/// Names typed tests "float" and "double" (and, as the third argument of
/// TYPED_TEST_SUITE, keeps clang's -Wpedantic quiet about an empty variadic argument).
struct FloatTypeNames {
  template <class T>
  static std::string GetName(int) {
    return std::is_same_v<T, float> ? "float" : "double";
  }
};

/// The three implementations behind scaled_dot_product_attention. Tests force one for
/// every input size, with tiles small enough that partial tiles, causal tile skipping and
/// masks across tile edges occur on small inputs.
// fused: the fused kernel as the target runs bfloat16 fastest where it has a choice
// (vdpbf16ps wherever it is compiled in, so the tests run it on every AVX512_BF16 target);
// fused_widened: the fused kernel on 16-bit tiles widened to float.
enum class Path { naive, fused, decode, fused_widened };

template <class T, Path P>
struct Kernel {
  using Scalar = T;
  static constexpr Path path = P;
};

using KernelTypes = ::testing::Types<Kernel<float, Path::naive>, Kernel<float, Path::fused>, Kernel<float, Path::decode>,
                                     Kernel<double, Path::naive>, Kernel<double, Path::fused>, Kernel<double, Path::decode>>;

struct KernelNames {
  template <class K>
  static std::string GetName(int) {
    const char* path = K::path == Path::naive ? "naive" : K::path == Path::fused ? "fused" : "decode";
    return std::string(std::is_same_v<typename K::Scalar, float> ? "float_" : "double_") + path;
  }
};

/// Sets qkv::detail::kernel_config() so that every call takes `path`; restores it on exit.
class ForcePath {
 public:
  explicit ForcePath(Path path) : saved_(qkv::detail::kernel_config()) {
    auto& config = qkv::detail::kernel_config();
    config.naive_max_flops = path == Path::naive ? std::numeric_limits<double>::infinity() : -1.0;
    config.decode_max_rows = path == Path::decode ? std::numeric_limits<Index>::max() : -1;
    config.key_tile = 5;      // not a multiple of any register block
    config.query_panels = 2;  // panels sharing key tiles, and a last group of one
    config.decode_chunk = 9;  // chunks to combine, each read in 4 runs of 2 keys and a leftover
    config.bf16_dot = path == Path::fused_widened ? 0 : 1;
  }
  ~ForcePath() { qkv::detail::kernel_config() = saved_; }
  ForcePath(const ForcePath&) = delete;
  ForcePath& operator=(const ForcePath&) = delete;

 private:
  qkv::detail::KernelConfig saved_;
};

}  // namespace qkv::test
