// SPDX-License-Identifier: MIT
// qkv::Shape: the sizes of a tensor's dimensions (rank 0 to 8), stored inline so that
// passing shapes around never allocates; the counterpart of PyTorch's torch.Size.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace qkv {

/// Signed index and size type, as Eigen::Index and PyTorch's int64_t.
using Index = std::ptrdiff_t;

/// \brief The sizes of a tensor's dimensions, outermost first (row-major, as NumPy).
///
/// A small fixed-capacity array: rank 0 (a scalar) up to `max_rank` dimensions.
/// Negative sizes and ranks above `max_rank` throw std::invalid_argument.
class Shape {
 public:
  static constexpr int max_rank = 8;

  Shape() = default;
  Shape(std::initializer_list<Index> dims) {
    check_rank(static_cast<Index>(dims.size()));
    for (Index d : dims) push_back(d);
  }

  int rank() const noexcept { return rank_; }
  Index operator[](int i) const noexcept { return dims_[i]; }
  Index& operator[](int i) noexcept { return dims_[i]; }
  /// Size of dimension `i`, counting from the end when negative (`-1` is the last).
  Index dim(int i) const {
    const int j = i < 0 ? i + rank_ : i;
    if (j < 0 || j >= rank_)
      throw std::out_of_range("qkv::Shape::dim: dimension " + std::to_string(i) +
                              " out of range for shape " + str());
    return dims_[j];
  }
  Index back() const noexcept { return dims_[rank_ - 1]; }
  const Index* begin() const noexcept { return dims_; }
  const Index* end() const noexcept { return dims_ + rank_; }

  /// Number of elements: the product of the sizes (1 for rank 0).
  Index numel() const noexcept {
    Index n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[i];
    return n;
  }

  void push_back(Index d) {
    if (rank_ >= max_rank || d < 0) throw_bad_push(d);
    dims_[rank_++] = d;
  }

  /// The shape without its first `n` dimensions (`drop_front(1)` of [2,3,4] is [3,4]).
  Shape drop_front(int n = 1) const {
    Shape s;
    for (int i = n > 0 ? n : 0; i < rank_; ++i) s.dims_[s.rank_++] = dims_[i];
    return s;
  }
  /// The first `n` dimensions.
  Shape front(int n) const {
    Shape s;
    for (int i = 0; i < n && i < rank_; ++i) s.dims_[s.rank_++] = dims_[i];
    return s;
  }

  /// "[2,8,128,64]", the form every qkv error message uses.
  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < rank_; ++i) {
      if (i) s += ',';
      s += std::to_string(dims_[i]);
    }
    return s + ']';
  }

  friend bool operator==(const Shape& a, const Shape& b) noexcept {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.dims_[i] != b.dims_[i]) return false;
    return true;
  }
  friend bool operator!=(const Shape& a, const Shape& b) noexcept { return !(a == b); }

 private:
  [[noreturn]] void throw_bad_push(Index d) const {
    check_rank(rank_ + 1);
    throw std::invalid_argument("qkv::Shape: negative size " + std::to_string(d));
  }
  static void check_rank(Index rank) {
    if (rank > max_rank)
      throw std::invalid_argument("qkv::Shape: rank " + std::to_string(rank) +
                                  " exceeds the maximum rank " + std::to_string(max_rank));
  }

  Index dims_[max_rank] = {};
  int rank_ = 0;
};

/// Element strides of a view, one per dimension. Non-negative; 0 repeats (broadcasts)
/// the same elements along a dimension.
using Strides = Shape;

/// Row-major (C-order) strides, in elements, of a contiguous tensor of this shape.
inline Strides contiguous_strides(const Shape& shape) {
  Strides strides = shape;
  Index step = 1;
  for (int i = shape.rank() - 1; i >= 0; --i) {
    strides[i] = step;
    step *= shape[i];
  }
  return strides;
}

}  // namespace qkv
