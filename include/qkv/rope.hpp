// SPDX-License-Identifier: MIT
// qkv::RotaryEmbedding: rotary position embeddings (RoPE, Su et al.'s RoFormer) applied to
// queries or keys in place, in both conventions: Hugging Face Llama's rotate_half and the
// interleaved pairs of GPT-J and Meta's complex-number Llama code.
#pragma once

#include <cmath>
#include <cstddef>
#include <locale>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "shape.hpp"
#include "tensor.hpp"
#include "tensor_view.hpp"

namespace qkv {

/// Which coordinates of a head vector RotaryEmbedding rotates together.
enum class RopeStyle {
  /// Pairs (x[2i], x[2i+1]): RoFormer, GPT-J, Meta's original Llama (view_as_complex).
  interleaved,
  /// Pairs (x[i], x[i + d/2]): GPT-NeoX, Hugging Face Llama's rotate_half. (Named
  /// `half` up to qkv 0.1.0; renamed because qkv::half is now the 16-bit float type, which
  /// g++'s -Wshadow says the enumerator shadows.)
  rotate_half,
};

namespace detail {

// "10000", "-1e-07", "inf": std::to_string's six fixed decimals would print 1e-7 as 0.
inline std::string rope_number(double x) {
  std::ostringstream s;
  s.imbue(std::locale::classic());
  s << x;
  return s.str();
}

// theta^(-2i/head_dim) for each pair i, in double.
inline std::vector<double> rope_inverse_frequencies(Index head_dim, double theta) {
  std::vector<double> inv_freq(static_cast<std::size_t>(head_dim / 2));
  for (std::size_t i = 0; i < inv_freq.size(); ++i)
    inv_freq[i] = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
  return inv_freq;
}

}  // namespace detail

/// \brief Rotary position embeddings: turns pair i of a head vector at position p by the
/// angle p · theta^(-2i/head_dim), so that the dot product of a rotated query and key
/// depends on their positions only through the difference.
/// \tparam T float or double.
///
/// Inputs are (..., L, head_dim) with the sequence on dimension -2, e.g. (B, H, L, E);
/// row l is at position `position_offset + l`, which is how a decoder rotates the new
/// tokens after `position_offset` cached ones. Angles are computed in double and their
/// cosines and sines rounded to T, so float results keep full accuracy at positions of
/// 10^5 and beyond (PyTorch reference code computing the angles in float32 does not). A
/// row's result depends only on its values and its position: rotating rows [a, b) with
/// offset a gives bit for bit what rotating the whole sequence gives on those rows.
/// \code
/// qkv::RotaryEmbedding<float> rope(64);           // head_dim 64, theta 10000, rotate_half
/// rope.apply(q);                                   // q (B, H, L, 64), positions 0..L-1
/// rope.apply(k_new, cache.size());                 // new keys after the cached ones
/// qkv::RotaryEmbedding<float> llama3(128, 500000.0, qkv::RopeStyle::rotate_half);
/// \endcode
/// \see KVCache and cached_attention, which take the rotated keys and queries.
template <class T>
class RotaryEmbedding {
  static_assert(std::is_floating_point_v<T>, "qkv::RotaryEmbedding: float or double");

 public:
  /// \throws std::invalid_argument unless head_dim is positive and even and theta is
  /// positive and finite.
  explicit RotaryEmbedding(Index head_dim, double theta = 10000.0, RopeStyle style = RopeStyle::rotate_half)
      : head_dim_(checked_head_dim(head_dim)), theta_(checked_theta(theta)), style_(style),
        inv_freq_(detail::rope_inverse_frequencies(head_dim, theta)) {}

  /// Size of the rotated vectors (even).
  Index head_dim() const noexcept { return head_dim_; }
  /// Base of the rotation frequencies, theta^(-2i/head_dim).
  double theta() const noexcept { return theta_; }
  /// Which coordinates are rotated together.
  RopeStyle style() const noexcept { return style_; }

  /// Rotates x (..., L, head_dim) in place: any strided view, e.g. a (B, L, H, E) buffer
  /// seen as (B, H, L, E). Row l (dimension -2) is at position position_offset + l.
  /// \throws std::invalid_argument if x is not (..., L, head_dim) or is broadcast (its
  /// elements alias); std::out_of_range if position_offset is negative.
  void apply(TensorView<T> x, Index position_offset = 0) const {
    check("qkv::RotaryEmbedding::apply", x, position_offset);
    rotate(x, position_offset);
  }

  /// Turns x (..., L, head_dim) back in place, pair i of row l by −(position_offset + l) ·
  /// theta^(-2i/head_dim): the inverse of apply, which is also its transpose, so it maps
  /// the gradient of a loss with respect to apply's result to the gradient with respect to
  /// its input (the backward pass of apply).
  /// \throws as apply.
  void apply_inverse(TensorView<T> x, Index position_offset = 0) const {
    check("qkv::RotaryEmbedding::apply_inverse", x, position_offset);
    rotate(x, position_offset, -1.0);
  }

  /// A rotated copy of x (..., L, head_dim), contiguous.
  Tensor<T> operator()(TensorView<const T> x, Index position_offset = 0) const {
    check("qkv::RotaryEmbedding::operator()", x, position_offset);
    Tensor<T> out(x);
    rotate(out.view(), position_offset);
    return out;
  }
  /// A rotated copy of a whole tensor x (..., L, head_dim).
  Tensor<T> operator()(const Tensor<T>& x, Index position_offset = 0) const {
    return (*this)(x.view(), position_offset);
  }

 private:
  static Index checked_head_dim(Index head_dim) {
    if (head_dim <= 0)
      throw std::invalid_argument("qkv::RotaryEmbedding: head_dim " + std::to_string(head_dim) +
                                  " must be positive");
    if (head_dim % 2 != 0)
      throw std::invalid_argument("qkv::RotaryEmbedding: head_dim " + std::to_string(head_dim) +
                                  " must be even (coordinates turn in pairs)");
    return head_dim;
  }
  static double checked_theta(double theta) {
    if (!(theta > 0.0) || !std::isfinite(theta))
      throw std::invalid_argument("qkv::RotaryEmbedding: theta " + detail::rope_number(theta) +
                                  " must be positive and finite");
    return theta;
  }

  template <class U>
  void check(const char* fn, TensorView<U> x, Index position_offset) const {
    if (x.rank() < 2)
      throw std::invalid_argument(std::string(fn) + ": x " + x.shape().str() +
                                  " must have rank >= 2 (..., L, head_dim " + std::to_string(head_dim_) + ")");
    if (x.size(-1) != head_dim_)
      throw std::invalid_argument(std::string(fn) + ": last dimension " + std::to_string(x.size(-1)) +
                                  " != head_dim " + std::to_string(head_dim_) + " (x " + x.shape().str() + ")");
    if (position_offset < 0)
      throw std::out_of_range(std::string(fn) + ": position_offset " + std::to_string(position_offset) +
                              " is negative");
    if (std::is_const_v<U> || x.empty()) return;
    // Rotating in place through a broadcast view would turn the same elements repeatedly.
    for (int d = 0; d < x.rank(); ++d)
      if (x.shape()[d] > 1 && x.strides()[d] == 0)
        throw std::invalid_argument(std::string(fn) + ": dimension " + std::to_string(d) + " of x " +
                                    x.shape().str() + " is broadcast (stride 0); its elements alias");
  }

  // The two coordinates that pair i turns together.
  Index first_of_pair(Index i) const noexcept { return style_ == RopeStyle::rotate_half ? i : 2 * i; }
  Index second_of_pair(Index i) const noexcept { return style_ == RopeStyle::rotate_half ? i + head_dim_ / 2 : 2 * i + 1; }

  // direction +1 turns by the angle, −1 back.
  void rotate(TensorView<T> x, Index position_offset, double direction = 1.0) const {
    if (x.empty()) return;
    const Index rows = x.size(-2), row_stride = x.stride(-2), col_stride = x.stride(-1);
    const Shape lead = x.shape().front(x.rank() - 2);
    const Strides lead_strides = x.strides().front(x.rank() - 2);
    const std::size_t pairs = inv_freq_.size();
    std::vector<T> cos_row(pairs), sin_row(pairs);
    // One position at a time, so that its cosines and sines serve every batch element and head.
    for (Index l = 0; l < rows; ++l) {
      const double position = static_cast<double>(position_offset + l);
      for (std::size_t i = 0; i < pairs; ++i) {
        const double angle = direction * position * inv_freq_[i];
        cos_row[i] = static_cast<T>(std::cos(angle));
        sin_row[i] = static_cast<T>(std::sin(angle));
      }
      T* row_data = x.data() + l * row_stride;
      detail::for_each_offset(
          lead,
          [&](Index base) {
            T* row = row_data + base;
            for (std::size_t i = 0; i < pairs; ++i) {
              T& a = row[first_of_pair(static_cast<Index>(i)) * col_stride];
              T& b = row[second_of_pair(static_cast<Index>(i)) * col_stride];
              const T a0 = a, b0 = b;
              a = a0 * cos_row[i] - b0 * sin_row[i];
              b = a0 * sin_row[i] + b0 * cos_row[i];
            }
          },
          lead_strides);
    }
  }

  Index head_dim_;
  double theta_;
  RopeStyle style_;
  std::vector<double> inv_freq_;
};

}  // namespace qkv
