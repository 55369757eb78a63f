// SPDX-License-Identifier: MIT
// qkv::bfloat16 and qkv::half: the 16-bit floating-point element types of PyTorch's
// torch.bfloat16 and torch.float16, as Eigen 3.4 defines them (Eigen::bfloat16,
// Eigen::half), and the traits that tell qkv's templates how to compute with them.
#pragma once

#include "version.hpp"

#include <Eigen/Core>

#include <type_traits>

namespace qkv {

/// Brain floating point: float's 8-bit exponent with a 7-bit mantissa (torch.bfloat16).
/// Conversions from float round to nearest even and keep NaN, ±inf and subnormals.
using bfloat16 = Eigen::bfloat16;
/// IEEE 754 binary16: 5-bit exponent, 10-bit mantissa, largest finite value 65504
/// (torch.float16). Conversions from float round to nearest even; beyond the range, ±inf.
using half = Eigen::half;

namespace detail {

/// Whether T is one of the 16-bit floating-point types.
template <class T>
inline constexpr bool is_half_v = std::is_same_v<T, bfloat16> || std::is_same_v<T, half>;

/// Whether T is a floating-point element type of qkv: float, double, bfloat16 or half.
template <class T>
inline constexpr bool is_floating_v = std::is_floating_point_v<T> || is_half_v<T>;

/// The element types a Tensor may hold: arithmetic types (bool for masks) and the half types.
template <class T>
inline constexpr bool is_element_v = std::is_arithmetic_v<T> || is_half_v<T>;

/// The type arithmetic on T's elements is carried out in: float for the 16-bit types (as
/// PyTorch accumulates them), T itself otherwise.
template <class T>
using compute_t = std::conditional_t<is_half_v<T>, float, T>;

/// PyTorch's name of T's dtype, as its printouts show it.
template <class T>
constexpr const char* torch_dtype_name() noexcept {
  if constexpr (std::is_same_v<T, bfloat16>) return "torch.bfloat16";
  else if constexpr (std::is_same_v<T, half>) return "torch.float16";
  else if constexpr (std::is_same_v<T, double>) return "torch.float64";
  else if constexpr (std::is_same_v<T, float>) return "torch.float32";
  else if constexpr (std::is_same_v<T, bool>) return "torch.bool";
  else return "?";
}

/// qkv's short name of T, for error messages.
template <class T>
constexpr const char* type_name() noexcept {
  if constexpr (std::is_same_v<T, bfloat16>) return "bfloat16";
  else if constexpr (std::is_same_v<T, half>) return "half";
  else if constexpr (std::is_same_v<T, double>) return "double";
  else if constexpr (std::is_same_v<T, float>) return "float";
  else if constexpr (std::is_same_v<T, bool>) return "bool";
  else return "?";
}

}  // namespace detail
}  // namespace qkv
