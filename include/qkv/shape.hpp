// SPDX-License-Identifier: MIT
// qkv::Shape: the sizes of a tensor's dimensions (rank 0 to 8), stored inline so that
// passing shapes around never allocates; the counterpart of PyTorch's torch.Size.
#pragma once

#include "version.hpp"

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
  /// The largest rank a Shape holds.
  static constexpr int max_rank = 8;

  // Sizes past rank() are never read, so they are not copied: copying all eight with wide
  // loads of sizes just stored one by one stalls. They are zeroed (two vector stores) so
  // that g++ 12 -O3, which loses track of the rank, sees no uninitialized read
  // (-Wmaybe-uninitialized in users' builds).
  Shape() noexcept {}  // user-provided, so that `const Shape s;` stays valid
  /// Copies the sizes of `other`'s dimensions.
  Shape(const Shape& other) noexcept { assign(other.dims_, other.rank_); }
  /// Copies the sizes of `other`'s dimensions.
  Shape& operator=(const Shape& other) noexcept {
    assign(other.dims_, other.rank_);
    return *this;
  }
  /// `Shape{2, 8, 128, 64}`. \throws std::invalid_argument for a negative size or more than max_rank sizes.
  Shape(std::initializer_list<Index> dims) {
    check_rank(static_cast<Index>(dims.size()));
    for (Index d : dims) push_back(d);
  }

  /// Number of dimensions, 0 to max_rank.
  int rank() const noexcept { return rank_; }
  /// Unchecked: `i` must be in [0, rank()).
  Index operator[](int i) const noexcept { return dims_[i]; }
  /// Unchecked: `i` must be in [0, rank()).
  Index& operator[](int i) noexcept { return dims_[i]; }
  /// Size of dimension `i`, counting from the end when negative (`-1` is the last).
  Index dim(int i) const {
    const int j = i < 0 ? i + rank_ : i;
    if (j < 0 || j >= rank_)
      throw std::out_of_range("qkv::Shape::dim: dimension " + std::to_string(i) +
                              " out of range for shape " + str());
    return dims_[j];
  }
  /// Size of the last dimension; rank() must be at least 1.
  Index back() const noexcept { return dims_[rank_ - 1]; }
  /// The sizes, outermost first, for range-for loops.
  const Index* begin() const noexcept { return dims_; }
  /// Past the last size.
  const Index* end() const noexcept { return dims_ + rank_; }

  /// Number of elements: the product of the sizes (1 for rank 0).
  Index numel() const noexcept {
    Index n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[i];
    return n;
  }

  /// Appends a dimension of size `d`. \throws std::invalid_argument if `d` is negative or the rank is max_rank.
  void push_back(Index d) {
    if (rank_ >= max_rank || d < 0) throw_bad_push(d);
    dims_[rank_++] = d;
  }

  /// The shape without its first `n` dimensions (`drop_front(1)` of [2,3,4] is [3,4]).
  Shape drop_front(int n = 1) const {
    const int first = n < 0 ? 0 : (n < rank_ ? n : rank_);
    Shape s;
    s.assign(dims_ + first, rank_ - first);
    return s;
  }
  /// The first `n` dimensions.
  Shape front(int n) const {
    Shape s;
    s.assign(dims_, n < 0 ? 0 : (n < rank_ ? n : rank_));
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

  /// Same rank and same sizes.
  friend bool operator==(const Shape& a, const Shape& b) noexcept {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.dims_[i] != b.dims_[i]) return false;
    return true;
  }
  /// Not operator==.
  friend bool operator!=(const Shape& a, const Shape& b) noexcept { return !(a == b); }
  friend Shape contiguous_strides(const Shape& shape);  // sets its rank without copying sizes

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

  // Sets the shape to the `rank` sizes at `dims` (at most max_rank). A switch, not a loop,
  // which both compilers would turn into a call to memmove (clang++ even when bounded).
  void assign(const Index* dims, int rank) noexcept {
    rank_ = rank;
    switch (rank) {
      case 8: dims_[7] = dims[7]; [[fallthrough]];
      case 7: dims_[6] = dims[6]; [[fallthrough]];
      case 6: dims_[5] = dims[5]; [[fallthrough]];
      case 5: dims_[4] = dims[4]; [[fallthrough]];
      case 4: dims_[3] = dims[3]; [[fallthrough]];
      case 3: dims_[2] = dims[2]; [[fallthrough]];
      case 2: dims_[1] = dims[1]; [[fallthrough]];
      case 1: dims_[0] = dims[0]; [[fallthrough]];
      default: break;
    }
  }

  Index dims_[max_rank] = {};  // only the first rank_ are read
  int rank_ = 0;
};

/// Element strides of a view, one per dimension. Non-negative; 0 repeats (broadcasts)
/// the same elements along a dimension.
using Strides = Shape;

/// Row-major (C-order) strides, in elements, of a contiguous tensor of this shape.
inline Strides contiguous_strides(const Shape& shape) {
  Strides strides;
  strides.rank_ = shape.rank_;  // every stride is written below
  Index step = 1;
  for (int i = shape.rank_ - 1; i >= 0; --i) {
    strides.dims_[i] = step;
    step *= shape.dims_[i];
  }
  return strides;
}

}  // namespace qkv
