// SPDX-License-Identifier: MIT
// qkv::TensorView: a non-owning, strided window on someone else's memory, the way a
// PyTorch tensor views a storage. Slicing, transposing, permuting and broadcasting
// (expand) make new views without copying; matrix() hands a rank-2 view to Eigen.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cassert>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "shape.hpp"

namespace qkv {

namespace detail {

[[noreturn]] inline void throw_dim_out_of_range(const char* fn, int dim, int rank) {
  throw std::out_of_range(std::string(fn) + ": dimension " + std::to_string(dim) + " out of range for rank " +
                          std::to_string(rank));
}

// Kept apart from its throw so that it inlines: every size(-1) on the hot path calls it.
inline int wrap_dim(const char* fn, int dim, int rank) {
  const int d = dim < 0 ? dim + rank : dim;
  if (d < 0 || d >= rank) throw_dim_out_of_range(fn, dim, rank);
  return d;
}

template <std::size_t... K>
auto to_tuple(const Index* base, std::index_sequence<K...>) {
  return std::make_tuple(base[K]...);
}
template <class F, std::size_t... K>
void call_at(F& f, const Index* base, const Index* stride, Index i, std::index_sequence<K...>) {
  f(base[K] + i * stride[K]...);
}

/// Calls f(offset_0, offset_1, ...) for every element of `shape`, in row-major order,
/// with one offset per strided layout: one layout to copy a view, two to combine them.
template <class F, class... S>
void for_each_offset(const Shape& shape, F&& f, const S&... strides) {
  constexpr std::size_t n = sizeof...(S);
  const Strides* layouts[n] = {&strides...};
  const int rank = shape.rank();
  if (shape.numel() == 0) return;
  Index base[n] = {};
  if (rank == 0) {
    std::apply(f, to_tuple(base, std::make_index_sequence<n>{}));
    return;
  }
  Index inner_stride[n];
  for (std::size_t k = 0; k < n; ++k) inner_stride[k] = (*layouts[k])[rank - 1];
  Index counter[Shape::max_rank] = {};
  const Index inner = shape[rank - 1];
  for (;;) {
    for (Index i = 0; i < inner; ++i) call_at(f, base, inner_stride, i, std::make_index_sequence<n>{});
    int d = rank - 2;
    for (; d >= 0; --d) {
      const bool carry = ++counter[d] == shape[d];
      for (std::size_t k = 0; k < n; ++k)
        base[k] += carry ? -(shape[d] - 1) * (*layouts[k])[d] : (*layouts[k])[d];
      if (!carry) break;
      counter[d] = 0;
    }
    if (d < 0) return;
  }
}

}  // namespace detail

/// \brief A strided, non-owning view of a tensor's elements.
/// \tparam T the element type; `const float` for a read-only view.
///
/// Views are cheap to copy (a pointer, a shape and strides). They never own memory: the
/// viewed buffer must outlive them. `Tensor<T>` converts to `TensorView<T>` and to
/// `TensorView<const T>`, so every qkv function that reads a view also reads a tensor.
/// \see Tensor, for the owning counterpart.
template <class T>
class TensorView {
 public:
  /// The element type, without const.
  using value_type = std::remove_const_t<T>;
  /// The row-major Eigen matrix type matrix() maps.
  using Matrix = Eigen::Matrix<value_type, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  /// What matrix() returns: an Eigen::Map with the view's row stride, const for a read-only view.
  using MatrixMap = Eigen::Map<std::conditional_t<std::is_const_v<T>, const Matrix, Matrix>,
                               Eigen::Unaligned, Eigen::OuterStride<>>;

  TensorView() = default;
  /// A contiguous row-major view of `shape.numel()` elements at `data`.
  TensorView(T* data, const Shape& shape)
      : data_(data), shape_(shape), strides_(contiguous_strides(shape)) {}
  /// A view with explicit element strides, e.g. (B, H, L, E) over memory laid out as
  /// (B, L, H, E): strides {L*H*E, E, H*E, 1}.
  TensorView(T* data, const Shape& shape, const Strides& strides)
      : data_(data), shape_(shape), strides_(strides) {
    if (strides.rank() != shape.rank())
      throw std::invalid_argument("qkv::TensorView: " + std::to_string(strides.rank()) +
                                  " strides for shape " + shape.str());
  }
  /// A mutable view converts to a read-only one.
  template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_const_v<U>>>
  TensorView(const TensorView<U>& other)  // NOLINT(google-explicit-constructor)
      : data_(other.data()), shape_(other.shape()), strides_(other.strides()) {}

  /// The first element (of index 0 in every dimension).
  T* data() const noexcept { return data_; }
  /// Sizes of the dimensions.
  const Shape& shape() const noexcept { return shape_; }
  /// Distance in elements between neighbours along each dimension (0 when broadcast).
  const Strides& strides() const noexcept { return strides_; }
  /// Number of dimensions.
  int rank() const noexcept { return shape_.rank(); }
  /// Number of elements.
  Index numel() const noexcept { return shape_.numel(); }
  /// Size of dimension `dim` (negative counts from the end), as torch.Tensor.size(dim).
  Index size(int dim) const { return shape_[detail::wrap_dim("qkv::TensorView::size", dim, rank())]; }
  /// Stride of dimension `dim` in elements (negative counts from the end), as torch.Tensor.stride(dim).
  Index stride(int dim) const {
    return strides_[detail::wrap_dim("qkv::TensorView::stride", dim, rank())];
  }
  /// Whether there are no elements.
  bool empty() const noexcept { return numel() == 0; }
  /// Whether the elements are in row-major order without gaps (dimensions of size 1 may have any stride).
  bool is_contiguous() const noexcept {
    Index step = 1;
    for (int i = rank() - 1; i >= 0; --i) {
      if (shape_[i] != 1 && strides_[i] != step) return false;
      step *= shape_[i];
    }
    return true;
  }

  /// Unchecked element access, one index per dimension.
  template <class... I>
  T& operator()(I... index) const noexcept {
    static_assert((std::is_integral_v<I> && ...), "qkv::TensorView: indices must be integers");
    assert(sizeof...(I) == static_cast<std::size_t>(rank()));
    const Index idx[] = {static_cast<Index>(index)..., 0};
    Index offset = 0;
    for (std::size_t d = 0; d < sizeof...(I); ++d) offset += idx[d] * strides_[static_cast<int>(d)];
    return data_[offset];
  }
  /// Bounds-checked element access; throws std::out_of_range.
  T& at(std::initializer_list<Index> index) const {
    if (static_cast<int>(index.size()) != rank())
      throw std::out_of_range("qkv::TensorView::at: " + std::to_string(index.size()) +
                              " indices for shape " + shape_.str());
    Index offset = 0;
    int d = 0;
    for (Index i : index) {
      if (i < 0 || i >= shape_[d])
        throw std::out_of_range("qkv::TensorView::at: index " + std::to_string(i) +
                                " out of range for dimension " + std::to_string(d) +
                                " of shape " + shape_.str());
      offset += i * strides_[d++];
    }
    return data_[offset];
  }

  /// The `i`-th slice along the first dimension (rank decreases by one), as t[i].
  TensorView operator[](Index i) const { return select(0, i); }
  /// The view with dimension `dim` fixed at `index` (rank decreases by one).
  TensorView select(int dim, Index index) const {
    const int d = detail::wrap_dim("qkv::TensorView::select", dim, rank());
    if (index < 0 || index >= shape_[d])
      throw std::out_of_range("qkv::TensorView::select: index " + std::to_string(index) +
                              " out of range for dimension " + std::to_string(dim) +
                              " of shape " + shape_.str());
    Shape shape, strides;
    for (int i = 0; i < rank(); ++i)
      if (i != d) {
        shape.push_back(shape_[i]);
        strides.push_back(strides_[i]);
      }
    return TensorView(data_ + index * strides_[d], shape, strides);
  }
  /// Elements [start, start + length) of dimension `dim`, as torch.Tensor.narrow.
  TensorView narrow(int dim, Index start, Index length) const {
    const int d = detail::wrap_dim("qkv::TensorView::narrow", dim, rank());
    if (start < 0 || length < 0 || start + length > shape_[d])
      throw std::out_of_range("qkv::TensorView::narrow: range [" + std::to_string(start) + ", " +
                              std::to_string(start + length) + ") out of range for dimension " +
                              std::to_string(dim) + " of shape " + shape_.str());
    Shape shape = shape_;
    shape[d] = length;
    return TensorView(length ? data_ + start * strides_[d] : data_, shape, strides_);
  }
  /// Rows [begin, end) of the first dimension, as t[begin:end].
  TensorView slice(Index begin, Index end) const { return narrow(0, begin, end - begin); }

  /// Swaps two dimensions without copying, as torch.Tensor.transpose(dim0, dim1).
  TensorView transpose(int dim0, int dim1) const {
    const int a = detail::wrap_dim("qkv::TensorView::transpose", dim0, rank());
    const int b = detail::wrap_dim("qkv::TensorView::transpose", dim1, rank());
    Shape shape = shape_, strides = strides_;
    std::swap(shape[a], shape[b]);
    std::swap(strides[a], strides[b]);
    return TensorView(data_, shape, strides);
  }
  /// Reorders the dimensions without copying, as torch.Tensor.permute(dims).
  TensorView permute(std::initializer_list<int> dims) const {
    if (static_cast<int>(dims.size()) != rank())
      throw std::invalid_argument("qkv::TensorView::permute: " + std::to_string(dims.size()) +
                                  " dimensions for shape " + shape_.str());
    Shape shape, strides;
    bool seen[Shape::max_rank] = {};
    for (int dim : dims) {
      const int d = detail::wrap_dim("qkv::TensorView::permute", dim, rank());
      if (seen[d])
        throw std::invalid_argument("qkv::TensorView::permute: dimension " + std::to_string(dim) +
                                    " repeated");
      seen[d] = true;
      shape.push_back(shape_[d]);
      strides.push_back(strides_[d]);
    }
    return TensorView(data_, shape, strides);
  }
  /// Inserts a dimension of size 1 at `dim`, as torch.Tensor.unsqueeze.
  TensorView unsqueeze(int dim) const {
    const int d = detail::wrap_dim("qkv::TensorView::unsqueeze", dim, rank() + 1);
    Shape shape, strides;
    for (int i = 0; i <= rank(); ++i) {
      if (i == d) {
        shape.push_back(1);
        strides.push_back(0);
      }
      if (i < rank()) {
        shape.push_back(shape_[i]);
        strides.push_back(strides_[i]);
      }
    }
    return TensorView(data_, shape, strides);
  }
  /// Broadcasts to `shape` without copying (stride 0 along repeated dimensions), with
  /// NumPy's rules: dimensions are matched from the end; a size 1 or missing dimension
  /// stretches. As torch.Tensor.expand.
  TensorView expand(const Shape& shape) const {
    if (shape.rank() < rank())
      throw std::invalid_argument("qkv::TensorView::expand: cannot expand shape " + shape_.str() +
                                  " to " + shape.str());
    Strides strides = shape;
    const int lead = shape.rank() - rank();
    for (int i = 0; i < shape.rank(); ++i) {
      const int j = i - lead;
      if (j < 0) {
        strides[i] = 0;
      } else if (shape_[j] == shape[i]) {
        strides[i] = strides_[j];
      } else if (shape_[j] == 1) {
        strides[i] = 0;
      } else {
        throw std::invalid_argument("qkv::TensorView::expand: cannot expand shape " +
                                    shape_.str() + " to " + shape.str());
      }
    }
    return TensorView(data_, shape, strides);
  }
  /// The same elements under a new shape; the view must be contiguous.
  TensorView reshape(const Shape& shape) const {
    if (shape.numel() != numel())
      throw std::invalid_argument("qkv::TensorView::reshape: cannot reshape " + shape_.str() +
                                  " (" + std::to_string(numel()) + " elements) to " +
                                  shape.str());
    if (!is_contiguous())
      throw std::invalid_argument("qkv::TensorView::reshape: view of shape " + shape_.str() +
                                  " is not contiguous; copy it into a Tensor first");
    return TensorView(data_, shape);
  }

  /// A zero-copy Eigen map of a rank-2 view whose rows are contiguous (stride 1 along
  /// the last dimension), so that any Eigen expression can read or write it.
  MatrixMap matrix() const {
    if (rank() != 2)
      throw std::invalid_argument("qkv::TensorView::matrix: expected rank 2, got shape " +
                                  shape_.str());
    if (shape_[1] > 1 && strides_[1] != 1)
      throw std::invalid_argument("qkv::TensorView::matrix: last dimension of shape " +
                                  shape_.str() + " has stride " + std::to_string(strides_[1]) +
                                  ", expected 1");
    return MatrixMap(data_, shape_[0], shape_[1], Eigen::OuterStride<>(shape_[0] > 1 ? strides_[0] : shape_[1]));
  }

 private:
  T* data_ = nullptr;
  Shape shape_{0};
  Strides strides_{1};
};

}  // namespace qkv
