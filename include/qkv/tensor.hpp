// SPDX-License-Identifier: MIT
// qkv::Tensor<T>: an owning, contiguous, row-major tensor of rank 0 to 8 with 64-byte
// aligned storage, built from nested initializer lists the way torch.tensor([[...]]) is.
#pragma once

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "half.hpp"
#include "shape.hpp"
#include "tensor_view.hpp"

namespace qkv {

namespace detail {

/// Storage alignment: a cache line, and the width of an AVX-512 register.
inline constexpr std::size_t tensor_alignment = 64;

struct AlignedDelete {
  void operator()(void* p) const noexcept { ::operator delete(p, std::align_val_t(tensor_alignment)); }
};

template <class T>
std::unique_ptr<T[], AlignedDelete> allocate_aligned(Index count) {
  if (count == 0) return nullptr;
  void* p = ::operator new(static_cast<std::size_t>(count) * sizeof(T),
                           std::align_val_t(tensor_alignment));
  return std::unique_ptr<T[], AlignedDelete>(static_cast<T*>(p));
}

// An element of a rank-1 initializer list. Reaching T through a converting constructor
// makes `{{1.f}, {2.f}}` a better match for the rank-2 list (identity conversions) than
// for a rank-1 list of brace-enclosed scalars, so that a column [[1.], [2.]] is not
// ambiguous.
template <class T>
struct ListElement {
  ListElement(T v) : value(v) {}  // NOLINT(google-explicit-constructor)
  T value;
};

template <class T>
using nested_list1 = std::initializer_list<ListElement<T>>;
template <class T>
using nested_list2 = std::initializer_list<std::initializer_list<T>>;
template <class T>
using nested_list3 = std::initializer_list<nested_list2<T>>;
template <class T>
using nested_list4 = std::initializer_list<nested_list3<T>>;

template <class L>
inline constexpr bool is_list_leaf_v = is_element_v<L>;
template <class T>
inline constexpr bool is_list_leaf_v<ListElement<T>> = true;

template <class L>
constexpr int nested_depth() {
  if constexpr (is_list_leaf_v<L>) return 0;
  else return 1 + nested_depth<typename L::value_type>();
}

// The shape of a nested initializer list; throws if it is ragged.
template <class L>
Shape nested_shape(std::initializer_list<L> list) {
  Shape shape{static_cast<Index>(list.size())};
  if constexpr (!is_list_leaf_v<L>) {
    Shape inner;
    if (list.size() == 0)
      for (int d = 0; d < nested_depth<L>(); ++d) inner.push_back(0);
    else
      inner = nested_shape(*list.begin());
    for (const L& row : list)
      if (nested_shape(row) != inner)
        throw std::invalid_argument("qkv::Tensor: ragged initializer list: a row of shape " +
                                    nested_shape(row).str() + " where " + inner.str() +
                                    " was expected");
    for (Index d : inner) shape.push_back(d);
  }
  return shape;
}

template <class L, class T>
T* copy_nested(std::initializer_list<L> list, T* out) {
  if constexpr (std::is_same_v<L, ListElement<T>>) {
    for (const L& x : list) *out++ = x.value;
    return out;
  } else if constexpr (is_list_leaf_v<L>) {
    return std::copy(list.begin(), list.end(), out);
  } else {
    for (const L& row : list) out = copy_nested(row, out);
    return out;
  }
}

}  // namespace detail

template <class T>
class Tensor;

namespace detail {
template <class T>
const TensorView<const T>& const_view(const Tensor<T>& t) noexcept;
}  // namespace detail

/// \brief An owning, contiguous, row-major tensor.
/// \tparam T the element type: float, double, bfloat16, half, or another arithmetic type
/// (bool for masks).
///
/// Elements are stored in C order (the last index varies fastest), as NumPy and PyTorch
/// lay them out, in 64-byte aligned memory. A default-constructed tensor has shape [0].
/// \code
/// qkv::Tensor<float> inputs = {{0.43, 0.15, 0.89},
///                              {0.55, 0.87, 0.66}};     // shape [2,3]
/// auto zeros = qkv::Tensor<float>::zeros({2, 8, 128, 64});
/// inputs.matrix() *= 2.0f;                               // Eigen, zero-copy
/// \endcode
/// \see TensorView, which slicing and transposing return.
template <class T>
class Tensor {
  static_assert(detail::is_element_v<T>, "qkv::Tensor holds arithmetic types, bfloat16 or half");

 public:
  /// The element type.
  using value_type = T;
  /// The mutable view of the elements, TensorView<T>, which view() returns.
  using View = TensorView<T>;
  /// The read-only view of the elements, TensorView<const T>.
  using ConstView = TensorView<const T>;

  Tensor() = default;  // shape [0], that of a default view_
  /// A tensor of `shape` filled with zeros. (Braces `Tensor<float>{2, 3}` would be the
  /// rank-1 tensor [2., 3.], as torch.tensor([2, 3]); use zeros({2, 3}) for a shape.)
  explicit Tensor(const Shape& shape) : data_(detail::allocate_aligned<T>(shape.numel())), view_(data_.get(), shape) {
    std::fill_n(data_.get(), numel(), T(0));
  }
  /// A tensor of `shape` holding a copy of `shape.numel()` elements at `values`.
  Tensor(const Shape& shape, const T* values)
      : data_(detail::allocate_aligned<T>(shape.numel())), view_(data_.get(), shape) {
    std::copy_n(values, numel(), data_.get());
  }
  /// A tensor of `shape` holding `values`, which must have `shape.numel()` elements.
  Tensor(const Shape& shape, const std::vector<T>& values) : Tensor(check_count(shape, values.size())) {
    std::copy(values.begin(), values.end(), data());  // also std::vector<bool>, which has no data()
  }
  /// A contiguous copy of any view.
  explicit Tensor(TensorView<const T> view)
      : data_(detail::allocate_aligned<T>(view.numel())), view_(data_.get(), view.shape()) {
    T* out = data_.get();
    detail::for_each_offset(view.shape(), [&](Index offset) { *out++ = view.data()[offset]; }, view.strides());
  }
  /// A contiguous copy of a mutable view.
  explicit Tensor(TensorView<T> view) : Tensor(TensorView<const T>(view)) {}

  /// The rank-1 tensor of `values`, as torch.tensor([...]): `Tensor<float>{2, 3}` is [2., 3.].
  Tensor(detail::nested_list1<T> values) : Tensor(shape_of(values)) { detail::copy_nested(values, data()); }
  /// The rank-2 tensor of nested lists, `{{1, 2, 3}, {4, 5, 6}}` of shape [2,3], as
  /// torch.tensor([[...]]). \throws std::invalid_argument if the rows differ in length.
  Tensor(detail::nested_list2<T> values) : Tensor(shape_of(values)) { detail::copy_nested(values, data()); }
  /// The rank-3 tensor of three levels of nested lists; throws as the rank-2 one.
  Tensor(detail::nested_list3<T> values) : Tensor(shape_of(values)) { detail::copy_nested(values, data()); }
  /// The rank-4 tensor of four levels of nested lists; throws as the rank-2 one.
  Tensor(detail::nested_list4<T> values) : Tensor(shape_of(values)) { detail::copy_nested(values, data()); }

  /// A deep copy: new storage holding `other`'s elements, of its shape.
  Tensor(const Tensor& other) : Tensor(other.shape(), other.data()) {}
  /// Takes `other`'s storage without copying; `other` is left empty, of shape [0].
  Tensor(Tensor&& other) noexcept : data_(std::move(other.data_)), view_(std::exchange(other.view_, ConstView())) {}
  /// Replaces the shape and elements by a deep copy of `other`'s.
  Tensor& operator=(const Tensor& other) {
    if (this != &other) *this = Tensor(other);
    return *this;
  }
  /// Frees this tensor's storage and takes `other`'s; `other` is left empty, of shape [0].
  Tensor& operator=(Tensor&& other) noexcept {
    view_ = std::exchange(other.view_, ConstView());
    data_ = std::move(other.data_);
    return *this;
  }
  ~Tensor() = default;

  /// A tensor of `shape` filled with zeros, as torch.zeros(shape).
  static Tensor zeros(const Shape& shape) { return Tensor(shape); }
  /// A tensor of `shape` filled with ones, as torch.ones(shape).
  static Tensor ones(const Shape& shape) { return full(shape, T(1)); }
  /// A tensor of `shape` filled with `value`, as torch.full(shape, value).
  static Tensor full(const Shape& shape, T value) {
    Tensor t(shape);
    std::fill_n(t.data(), t.numel(), value);
    return t;
  }
  /// A rank-0 tensor holding one value, as torch.tensor(value).
  static Tensor scalar(T value) { return full(Shape{}, value); }

  /// The first element, followed by the others in row-major order, 64-byte aligned; null
  /// when the tensor has no elements.
  T* data() noexcept { return data_.get(); }
  /// Read-only data().
  const T* data() const noexcept { return data_.get(); }
  /// The first element: begin() and end() iterate over every element in row-major order.
  T* begin() noexcept { return data(); }
  /// Past the last element.
  T* end() noexcept { return data() + numel(); }
  /// Read-only begin().
  const T* begin() const noexcept { return data(); }
  /// Read-only end().
  const T* end() const noexcept { return data() + numel(); }
  /// Sizes of the dimensions, as torch.Tensor.shape.
  const Shape& shape() const noexcept { return view_.shape(); }
  /// The row-major strides in elements ({3, 1} for shape [2,3]), as torch.Tensor.stride().
  Strides strides() const { return view_.strides(); }
  /// Number of dimensions (0 for a scalar), as torch.Tensor.dim().
  int rank() const noexcept { return view_.rank(); }
  /// Number of elements (1 for rank 0), as torch.Tensor.numel().
  Index numel() const noexcept { return view_.numel(); }
  /// Whether there are no elements (some dimension has size 0).
  bool empty() const noexcept { return numel() == 0; }
  /// Size of dimension `dim` (negative counts from the end), as torch.Tensor.size(dim).
  Index size(int dim) const { return shape()[detail::wrap_dim("qkv::Tensor::size", dim, rank())]; }

  /// A mutable view of every element, of the tensor's shape and contiguous strides.
  View view() noexcept { return View(data(), shape()); }
  /// A read-only view of every element.
  ConstView view() const noexcept { return view_; }
  /// A tensor converts to its mutable view(), so that it passes for a TensorView<T>.
  operator View() noexcept { return view(); }              // NOLINT(google-explicit-constructor)
  /// A tensor converts to its read-only view(), so that it passes for a TensorView<const T>.
  operator ConstView() const noexcept { return view(); }   // NOLINT(google-explicit-constructor)

  /// Unchecked element access, one index per dimension.
  template <class... I>
  T& operator()(I... index) noexcept { return view()(index...); }
  /// Read-only operator(): unchecked, one index per dimension.
  template <class... I>
  const T& operator()(I... index) const noexcept { return view()(index...); }
  /// Bounds-checked element access; throws std::out_of_range.
  T& at(std::initializer_list<Index> index) { return view().at(index); }
  /// Read-only at(): bounds-checked, throws std::out_of_range.
  const T& at(std::initializer_list<Index> index) const { return view().at(index); }
  /// The value of a tensor with one element, as torch.Tensor.item().
  T item() const {
    if (numel() != 1)
      throw std::invalid_argument("qkv::Tensor::item: expected one element, got shape " + shape().str());
    return data()[0];
  }

  /// A view of the `i`-th slice along the first dimension (rank decreases by one), as t[i].
  /// \throws std::out_of_range unless 0 <= i < size(0).
  View operator[](Index i) { return view()[i]; }
  /// Read-only operator[].
  ConstView operator[](Index i) const { return view()[i]; }
  /// A view of rows [begin, end) of the first dimension, as t[begin:end].
  /// \throws std::out_of_range unless 0 <= begin <= end <= size(0).
  View slice(Index begin, Index end) { return view().slice(begin, end); }
  /// Read-only slice().
  ConstView slice(Index begin, Index end) const { return view().slice(begin, end); }
  /// A view of elements [start, start + length) of dimension `dim` (negative counts from
  /// the end), as torch.Tensor.narrow. \throws std::out_of_range for a dimension or range
  /// out of bounds.
  View narrow(int dim, Index start, Index length) { return view().narrow(dim, start, length); }
  /// Read-only narrow().
  ConstView narrow(int dim, Index start, Index length) const { return view().narrow(dim, start, length); }

  /// A copy of the elements with a new shape of equal size.
  /// \throws std::invalid_argument when `shape` has another number of elements.
  Tensor reshape(const Shape& shape) const& { return Tensor(view().reshape(shape)); }
  /// reshape() on an rvalue, e.g. `std::move(t).reshape({6})`: the result takes this tensor's
  /// storage instead of copying it (this tensor is left empty, of shape [0]).
  Tensor reshape(const Shape& shape) && {
    view().reshape(shape);  // validates the element count
    Tensor t(std::move(*this));
    t.view_ = ConstView(t.data(), shape);
    return t;
  }

  /// A zero-copy Eigen map of a rank-2 tensor, as an Eigen row-major matrix.
  typename View::MatrixMap matrix() { return view().matrix(); }
  /// Read-only matrix(), a const Eigen map.
  typename ConstView::MatrixMap matrix() const { return view().matrix(); }

 private:
  static Shape check_count(const Shape& shape, std::size_t count) {
    if (static_cast<Index>(count) != shape.numel())
      throw std::invalid_argument("qkv::Tensor: " + std::to_string(count) +
                                  " values for shape " + shape.str() + " (" +
                                  std::to_string(shape.numel()) + " elements)");
    return shape;
  }
  template <class L>
  static Shape shape_of(std::initializer_list<L> values) { return detail::nested_shape(values); }

  friend const ConstView& detail::const_view<T>(const Tensor& t) noexcept;

  std::unique_ptr<T[], detail::AlignedDelete> data_;
  // The data with its shape and contiguous strides, kept so that reading the tensor
  // through a const view (every qkv function does) need not build one.
  ConstView view_;
};

namespace detail {

// What qkv's free functions accept: a Tensor or a TensorView, read through a const view.
template <class X>
struct TensorTraits {
  static constexpr bool is_tensor = false;
};
template <class T>
struct TensorTraits<Tensor<T>> {
  static constexpr bool is_tensor = true;
  using value_type = T;
};
template <class T>
struct TensorTraits<TensorView<T>> {
  static constexpr bool is_tensor = true;
  using value_type = std::remove_const_t<T>;
};

template <class X>
inline constexpr bool is_tensor_v = TensorTraits<std::decay_t<X>>::is_tensor;
template <class X>
using tensor_value_t = typename TensorTraits<std::decay_t<X>>::value_type;
template <class X>
using enable_if_tensor_t = std::enable_if_t<is_tensor_v<X>>;

template <class T>
const TensorView<const T>& const_view(const Tensor<T>& t) noexcept { return t.view_; }
template <class T>
TensorView<const T> const_view(TensorView<T> v) noexcept { return v; }

}  // namespace detail

/// \brief A contiguous copy of `x` converted to element type U, as torch.Tensor.to(dtype).
///
/// Conversions to bfloat16 and half round to nearest even, keep NaN and ±inf, produce
/// subnormals where the value needs them and ±inf past the largest finite value; a
/// conversion to float from either is exact.
/// \code
/// qkv::Tensor<qkv::bfloat16> k16 = qkv::to<qkv::bfloat16>(k);   // k.to(torch.bfloat16)
/// \endcode
template <class U, class X, class = detail::enable_if_tensor_t<X>>
Tensor<U> to(const X& x) {
  using T = detail::tensor_value_t<X>;
  const TensorView<const T>& view = detail::const_view(x);
  Tensor<U> out(view.shape());
  U* o = out.data();
  const T* in = view.data();
  // Through T's compute type: the 16-bit types convert to and from float only.
  detail::for_each_offset(
      view.shape(), [&](Index i) { *o++ = static_cast<U>(static_cast<detail::compute_t<T>>(in[i])); },
      view.strides());
  return out;
}

}  // namespace qkv
