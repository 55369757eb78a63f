// SPDX-License-Identifier: MIT
// Tensor operations, named and behaving as their PyTorch/NumPy counterparts: element-wise
// arithmetic with broadcasting, exp, matmul (batched), transpose, sum/mean/var, triu/tril,
// masked_fill, stack, allclose. Every function accepts a Tensor or a TensorView and
// returns a new contiguous Tensor.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "shape.hpp"
#include "tensor.hpp"
#include "tensor_view.hpp"

namespace qkv {

namespace detail {

/// NumPy's broadcasting of two shapes; throws naming `fn` and both shapes.
inline Shape broadcast_shapes(const char* fn, const Shape& a, const Shape& b) {
  const int rank = std::max(a.rank(), b.rank());
  Shape out;
  for (int i = 0; i < rank; ++i) {
    const int ia = i - (rank - a.rank());
    const int ib = i - (rank - b.rank());
    const Index da = ia < 0 ? 1 : a[ia];
    const Index db = ib < 0 ? 1 : b[ib];
    if (da != db && da != 1 && db != 1)
      throw std::invalid_argument(std::string(fn) + ": shapes " + a.str() + " and " + b.str() +
                                  " cannot be broadcast together");
    out.push_back(da == 1 ? db : da);
  }
  return out;
}

template <class T, class F>
auto map_view(TensorView<const T> x, F&& f) {
  using R = std::decay_t<decltype(f(std::declval<T>()))>;
  Tensor<R> out(x.shape());
  R* o = out.data();
  for_each_offset(x.shape(), [&](Index i) { *o++ = f(x.data()[i]); }, x.strides());
  return out;
}

template <class T, class F>
auto zip_views(const char* fn, TensorView<const T> a, TensorView<const T> b, F&& f) {
  using R = std::decay_t<decltype(f(std::declval<T>(), std::declval<T>()))>;
  const Shape shape = broadcast_shapes(fn, a.shape(), b.shape());
  const TensorView<const T> ea = a.expand(shape), eb = b.expand(shape);
  Tensor<R> out(shape);
  R* o = out.data();
  for_each_offset(
      shape, [&](Index i, Index j) { *o++ = f(ea.data()[i], eb.data()[j]); }, ea.strides(),
      eb.strides());
  return out;
}

// Applies f(element, value) in place, `value` broadcast to the tensor's shape.
template <class T, class F>
void update_view(const char* fn, TensorView<T> x, TensorView<const T> values, F&& f) {
  const Shape shape = broadcast_shapes(fn, x.shape(), values.shape());
  if (shape != x.shape())
    throw std::invalid_argument(std::string(fn) + ": cannot broadcast " + values.shape().str() +
                                " into " + x.shape().str());
  const TensorView<const T> ev = values.expand(shape);
  for_each_offset(
      shape, [&](Index i, Index j) { x.data()[i] = f(x.data()[i], ev.data()[j]); }, x.strides(),
      ev.strides());
}

inline int reduce_dim(const char* fn, int dim, int rank) { return wrap_dim(fn, dim, rank); }

// Calls f(line_view) for every 1-D line of `x` along dimension `dim`, writing the results
// into a tensor of the reduced shape.
template <class T, class F>
Tensor<T> reduce_lines(const char* fn, TensorView<const T> x, int dim, bool keepdim, F&& f) {
  const int d = reduce_dim(fn, dim, x.rank());
  Shape out_shape;
  for (int i = 0; i < x.rank(); ++i)
    if (i != d) out_shape.push_back(x.shape()[i]);
    else if (keepdim) out_shape.push_back(1);
  Tensor<T> out(out_shape);
  // Move `dim` last so that each output element is one line.
  Shape order_shape, order_strides;
  for (int i = 0; i < x.rank(); ++i)
    if (i != d) {
      order_shape.push_back(x.shape()[i]);
      order_strides.push_back(x.strides()[i]);
    }
  const Index length = x.shape()[d], stride = x.strides()[d];
  T* o = out.data();
  for_each_offset(
      order_shape,
      [&](Index base) { *o++ = f(TensorView<const T>(x.data() + base, Shape{length}, Strides{stride})); },
      order_strides);
  return out;
}

template <class T>
T sum_line(TensorView<const T> line) {
  T s = 0;
  for_each_offset(line.shape(), [&](Index i) { s += line.data()[i]; }, line.strides());
  return s;
}

template <class T>
T var_line(TensorView<const T> line) {
  const Index n = line.numel();
  if (n == 0) return std::numeric_limits<T>::quiet_NaN();
  const T mean = sum_line(line) / static_cast<T>(n);
  T s = 0;
  for_each_offset(line.shape(), [&](Index i) { s += (line.data()[i] - mean) * (line.data()[i] - mean); }, line.strides());
  return s / static_cast<T>(n);
}

template <class T>
TensorView<const T> flat(TensorView<const T> x, Tensor<T>& storage) {
  if (!x.is_contiguous()) {
    storage = Tensor<T>(x);
    return storage.view().reshape(Shape{storage.numel()});
  }
  return x.reshape(Shape{x.numel()});
}

template <class T>
void require_rank_at_least(const char* fn, TensorView<const T> x, int rank) {
  if (x.rank() < rank)
    throw std::invalid_argument(std::string(fn) + ": expected rank >= " + std::to_string(rank) +
                                ", got shape " + x.shape().str());
}

}  // namespace detail

// ---- element-wise ---------------------------------------------------------------------

/// Applies `f` to every element, returning a tensor of f's result type.
template <class X, class F, class = detail::enable_if_tensor_t<X>>
auto map(const X& x, F&& f) {
  return detail::map_view(detail::const_view(x), std::forward<F>(f));
}

/// e^x element-wise, as torch.exp.
template <class X, class = detail::enable_if_tensor_t<X>>
auto exp(const X& x) {
  return map(x, [](auto v) { return std::exp(v); });
}
/// Natural logarithm element-wise, as torch.log.
template <class X, class = detail::enable_if_tensor_t<X>>
auto log(const X& x) {
  return map(x, [](auto v) { return std::log(v); });
}
/// Square root element-wise, as torch.sqrt.
template <class X, class = detail::enable_if_tensor_t<X>>
auto sqrt(const X& x) {
  return map(x, [](auto v) { return std::sqrt(v); });
}
/// Absolute value element-wise, as torch.abs.
template <class X, class = detail::enable_if_tensor_t<X>>
auto abs(const X& x) {
  return map(x, [](auto v) { return std::abs(v); });
}
/// Negation element-wise.
template <class X, class = detail::enable_if_tensor_t<X>>
auto operator-(const X& x) {
  return map(x, [](auto v) { return -v; });
}

// ---- arithmetic + - * /, broadcasting as PyTorch ----------------------------------------

/// `a + b` element-wise, the shapes broadcast as PyTorch broadcasts them.
/// \throws std::invalid_argument naming both shapes when they do not broadcast.
template <class A, class B,
          class = std::enable_if_t<detail::is_tensor_v<A> && detail::is_tensor_v<B>>>
auto operator+(const A& a, const B& b) {
  return detail::zip_views("qkv::operator+", detail::const_view(a), detail::const_view(b),
                           [](auto x, auto y) { return x + y; });
}
/// `a + s` for every element of a.
template <class A, class = detail::enable_if_tensor_t<A>>
auto operator+(const A& a, detail::tensor_value_t<A> s) {
  return map(a, [s](auto x) { return x + s; });
}
/// `s + b` for every element of b.
template <class B, class = detail::enable_if_tensor_t<B>>
auto operator+(detail::tensor_value_t<B> s, const B& b) {
  return map(b, [s](auto x) { return s + x; });
}
/// `a += b` in place, b broadcasting to a's shape. \throws std::invalid_argument if it does not.
template <class T, class B, class = detail::enable_if_tensor_t<B>>
Tensor<T>& operator+=(Tensor<T>& a, const B& b) {
  detail::update_view<T>("qkv::operator+=", a.view(), detail::const_view(b),
                         [](T x, T y) { return x + y; });
  return a;
}
/// `a += s` for every element of a.
template <class T>
Tensor<T>& operator+=(Tensor<T>& a, typename Tensor<T>::value_type s) {
  for (T& x : a) x = x + s;
  return a;
}
/// `a - b` element-wise, the shapes broadcast as PyTorch broadcasts them.
/// \throws std::invalid_argument naming both shapes when they do not broadcast.
template <class A, class B,
          class = std::enable_if_t<detail::is_tensor_v<A> && detail::is_tensor_v<B>>>
auto operator-(const A& a, const B& b) {
  return detail::zip_views("qkv::operator-", detail::const_view(a), detail::const_view(b),
                           [](auto x, auto y) { return x - y; });
}
/// `a - s` for every element of a.
template <class A, class = detail::enable_if_tensor_t<A>>
auto operator-(const A& a, detail::tensor_value_t<A> s) {
  return map(a, [s](auto x) { return x - s; });
}
/// `s - b` for every element of b.
template <class B, class = detail::enable_if_tensor_t<B>>
auto operator-(detail::tensor_value_t<B> s, const B& b) {
  return map(b, [s](auto x) { return s - x; });
}
/// `a -= b` in place, b broadcasting to a's shape. \throws std::invalid_argument if it does not.
template <class T, class B, class = detail::enable_if_tensor_t<B>>
Tensor<T>& operator-=(Tensor<T>& a, const B& b) {
  detail::update_view<T>("qkv::operator-=", a.view(), detail::const_view(b),
                         [](T x, T y) { return x - y; });
  return a;
}
/// `a -= s` for every element of a.
template <class T>
Tensor<T>& operator-=(Tensor<T>& a, typename Tensor<T>::value_type s) {
  for (T& x : a) x = x - s;
  return a;
}
/// `a * b` element-wise, the shapes broadcast as PyTorch broadcasts them.
/// \throws std::invalid_argument naming both shapes when they do not broadcast.
template <class A, class B,
          class = std::enable_if_t<detail::is_tensor_v<A> && detail::is_tensor_v<B>>>
auto operator*(const A& a, const B& b) {
  return detail::zip_views("qkv::operator*", detail::const_view(a), detail::const_view(b),
                           [](auto x, auto y) { return x * y; });
}
/// `a * s` for every element of a.
template <class A, class = detail::enable_if_tensor_t<A>>
auto operator*(const A& a, detail::tensor_value_t<A> s) {
  return map(a, [s](auto x) { return x * s; });
}
/// `s * b` for every element of b.
template <class B, class = detail::enable_if_tensor_t<B>>
auto operator*(detail::tensor_value_t<B> s, const B& b) {
  return map(b, [s](auto x) { return s * x; });
}
/// `a *= b` in place, b broadcasting to a's shape. \throws std::invalid_argument if it does not.
template <class T, class B, class = detail::enable_if_tensor_t<B>>
Tensor<T>& operator*=(Tensor<T>& a, const B& b) {
  detail::update_view<T>("qkv::operator*=", a.view(), detail::const_view(b),
                         [](T x, T y) { return x * y; });
  return a;
}
/// `a *= s` for every element of a.
template <class T>
Tensor<T>& operator*=(Tensor<T>& a, typename Tensor<T>::value_type s) {
  for (T& x : a) x = x * s;
  return a;
}
/// `a / b` element-wise, the shapes broadcast as PyTorch broadcasts them.
/// \throws std::invalid_argument naming both shapes when they do not broadcast.
template <class A, class B,
          class = std::enable_if_t<detail::is_tensor_v<A> && detail::is_tensor_v<B>>>
auto operator/(const A& a, const B& b) {
  return detail::zip_views("qkv::operator/", detail::const_view(a), detail::const_view(b),
                           [](auto x, auto y) { return x / y; });
}
/// `a / s` for every element of a.
template <class A, class = detail::enable_if_tensor_t<A>>
auto operator/(const A& a, detail::tensor_value_t<A> s) {
  return map(a, [s](auto x) { return x / s; });
}
/// `s / b` for every element of b.
template <class B, class = detail::enable_if_tensor_t<B>>
auto operator/(detail::tensor_value_t<B> s, const B& b) {
  return map(b, [s](auto x) { return s / x; });
}
/// `a /= b` in place, b broadcasting to a's shape. \throws std::invalid_argument if it does not.
template <class T, class B, class = detail::enable_if_tensor_t<B>>
Tensor<T>& operator/=(Tensor<T>& a, const B& b) {
  detail::update_view<T>("qkv::operator/=", a.view(), detail::const_view(b),
                         [](T x, T y) { return x / y; });
  return a;
}
/// `a /= s` for every element of a.
template <class T>
Tensor<T>& operator/=(Tensor<T>& a, typename Tensor<T>::value_type s) {
  for (T& x : a) x = x / s;
  return a;
}

/// Element-wise maximum and minimum of two broadcastable tensors.
template <class A, class B, class = std::enable_if_t<detail::is_tensor_v<A> && detail::is_tensor_v<B>>>
auto maximum(const A& a, const B& b) {
  return detail::zip_views("qkv::maximum", detail::const_view(a), detail::const_view(b),
                           [](auto x, auto y) { return std::max(x, y); });
}
/// Element-wise minimum of two broadcastable tensors, as torch.minimum.
template <class A, class B, class = std::enable_if_t<detail::is_tensor_v<A> && detail::is_tensor_v<B>>>
auto minimum(const A& a, const B& b) {
  return detail::zip_views("qkv::minimum", detail::const_view(a), detail::const_view(b),
                           [](auto x, auto y) { return std::min(x, y); });
}

/// A copy of `x` with `value` wherever the broadcastable boolean `mask` is true, as
/// torch.Tensor.masked_fill.
template <class X, class M, class = std::enable_if_t<detail::is_tensor_v<X> && detail::is_tensor_v<M>>>
auto masked_fill(const X& x, const M& mask, detail::tensor_value_t<X> value) {
  static_assert(std::is_same_v<detail::tensor_value_t<M>, bool>, "qkv::masked_fill: the mask holds bool");
  using T = detail::tensor_value_t<X>;
  const TensorView<const T> xv = detail::const_view(x);
  const TensorView<const bool> mv = detail::const_view(mask);
  const Shape shape = detail::broadcast_shapes("qkv::masked_fill", xv.shape(), mv.shape());
  if (shape != xv.shape())
    throw std::invalid_argument("qkv::masked_fill: mask of shape " + mv.shape().str() +
                                " does not broadcast to " + xv.shape().str());
  const TensorView<const bool> em = mv.expand(shape);
  Tensor<T> out(shape);
  T* o = out.data();
  detail::for_each_offset(
      shape, [&](Index i, Index j) { *o++ = em.data()[j] ? value : xv.data()[i]; }, xv.strides(),
      em.strides());
  return out;
}

// ---- comparisons ----------------------------------------------------------------------

/// True when both have the same shape and every |a - b| <= atol + rtol * |b|, as
/// numpy.allclose (NaN never equals NaN; equal infinities are close).
template <class A, class B, class = std::enable_if_t<detail::is_tensor_v<A> && detail::is_tensor_v<B>>>
bool allclose(const A& a, const B& b, double rtol = 1e-5, double atol = 1e-8) {
  using T = detail::tensor_value_t<A>;
  const TensorView<const T> av = detail::const_view(a), bv = detail::const_view(b);
  if (av.shape() != bv.shape()) return false;
  bool close = true;
  detail::for_each_offset(
      av.shape(),
      [&](Index i, Index j) {
        const double x = static_cast<double>(av.data()[i]), y = static_cast<double>(bv.data()[j]);
        if (x == y) return;  // also equal infinities
        // An infinity is close only to itself: |x - inf| <= rtol * inf would hold.
        if (std::isinf(x) || std::isinf(y) || !(std::abs(x - y) <= atol + rtol * std::abs(y))) close = false;
      },
      av.strides(), bv.strides());
  return close;
}

/// True when both have the same shape and equal elements, as torch.equal.
template <class A, class B, class = std::enable_if_t<detail::is_tensor_v<A> && detail::is_tensor_v<B>>>
bool equal(const A& a, const B& b) {
  return allclose(a, b, 0.0, 0.0);
}

// ---- reductions -----------------------------------------------------------------------

/// Sum of all elements.
template <class X, class = detail::enable_if_tensor_t<X>>
auto sum(const X& x) {
  using T = detail::tensor_value_t<X>;
  Tensor<T> storage;
  const TensorView<const T> v = detail::flat(detail::const_view(x), storage);
  return Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(v.data(), v.numel()).sum();
}
/// Mean of all elements.
template <class X, class = detail::enable_if_tensor_t<X>>
auto mean(const X& x) {
  using T = detail::tensor_value_t<X>;
  return sum(x) / static_cast<T>(detail::const_view(x).numel());
}
/// Population variance of all elements (divides by n), as numpy.var's default.
template <class X, class = detail::enable_if_tensor_t<X>>
auto var(const X& x) {
  using T = detail::tensor_value_t<X>;
  Tensor<T> storage;
  return detail::var_line(detail::flat(detail::const_view(x), storage));
}
/// Largest and smallest element; throw on an empty tensor.
template <class X, class = detail::enable_if_tensor_t<X>>
auto max(const X& x) {
  using T = detail::tensor_value_t<X>;
  const TensorView<const T> v = detail::const_view(x);
  if (v.empty()) throw std::invalid_argument("qkv::max: empty tensor of shape " + v.shape().str());
  T m = *v.data();
  detail::for_each_offset(v.shape(), [&](Index i) { m = std::max(m, v.data()[i]); }, v.strides());
  return m;
}
/// Smallest element. \throws std::invalid_argument on an empty tensor.
template <class X, class = detail::enable_if_tensor_t<X>>
auto min(const X& x) {
  using T = detail::tensor_value_t<X>;
  const TensorView<const T> v = detail::const_view(x);
  if (v.empty()) throw std::invalid_argument("qkv::min: empty tensor of shape " + v.shape().str());
  T m = *v.data();
  detail::for_each_offset(v.shape(), [&](Index i) { m = std::min(m, v.data()[i]); }, v.strides());
  return m;
}

/// Sum, mean and population variance along `dim` (negative counts from the end);
/// `keepdim` keeps the reduced dimension with size 1, as in PyTorch.
template <class X, class = detail::enable_if_tensor_t<X>>
auto sum(const X& x, int dim, bool keepdim = false) {
  using T = detail::tensor_value_t<X>;
  return detail::reduce_lines<T>("qkv::sum", detail::const_view(x), dim, keepdim,
                                 [](TensorView<const T> line) { return detail::sum_line(line); });
}
/// Mean along `dim`, as torch.mean(x, dim, keepdim).
template <class X, class = detail::enable_if_tensor_t<X>>
auto mean(const X& x, int dim, bool keepdim = false) {
  using T = detail::tensor_value_t<X>;
  return detail::reduce_lines<T>("qkv::mean", detail::const_view(x), dim, keepdim, [](TensorView<const T> line) {
    return detail::sum_line(line) / static_cast<T>(line.numel());
  });
}
/// Population variance (divided by n) along `dim`, as torch.var(x, dim, unbiased=False, keepdim).
template <class X, class = detail::enable_if_tensor_t<X>>
auto var(const X& x, int dim, bool keepdim = false) {
  using T = detail::tensor_value_t<X>;
  return detail::reduce_lines<T>("qkv::var", detail::const_view(x), dim, keepdim,
                                 [](TensorView<const T> line) { return detail::var_line(line); });
}
/// Largest element along `dim`, as torch.amax.
template <class X, class = detail::enable_if_tensor_t<X>>
auto amax(const X& x, int dim, bool keepdim = false) {
  using T = detail::tensor_value_t<X>;
  return detail::reduce_lines<T>("qkv::amax", detail::const_view(x), dim, keepdim, [](TensorView<const T> line) {
    if (line.empty()) throw std::invalid_argument("qkv::amax: reducing an empty dimension");
    return max(line);
  });
}

// ---- shape and linear algebra ---------------------------------------------------------

/// A copy with the last two dimensions swapped (a rank-1 tensor is returned as is), as
/// torch.Tensor.mT; view.transpose(-2, -1) does the same without copying.
template <class X, class = detail::enable_if_tensor_t<X>>
auto transpose(const X& x) {
  using T = detail::tensor_value_t<X>;
  const TensorView<const T> v = detail::const_view(x);
  return v.rank() < 2 ? Tensor<T>(v) : Tensor<T>(v.transpose(-2, -1));
}

/// Stacks tensors of one shape along a new first dimension, as torch.stack(tensors).
template <class T>
Tensor<T> stack(const std::vector<TensorView<const T>>& parts) {
  if (parts.empty()) throw std::invalid_argument("qkv::stack: no tensors to stack");
  Shape shape{static_cast<Index>(parts.size())};
  for (Index d : parts[0].shape()) shape.push_back(d);
  Tensor<T> out(shape);
  T* o = out.data();
  for (const auto& p : parts) {
    if (p.shape() != parts[0].shape())
      throw std::invalid_argument("qkv::stack: shape " + p.shape().str() + " differs from " +
                                  parts[0].shape().str());
    detail::for_each_offset(p.shape(), [&](Index i) { *o++ = p.data()[i]; }, p.strides());
  }
  return out;
}
/// stack of tensors.
template <class T>
Tensor<T> stack(const std::vector<Tensor<T>>& parts) {
  return stack(std::vector<TensorView<const T>>(parts.begin(), parts.end()));
}

/// Dot product of two rank-1 tensors of equal length, as torch.dot.
template <class A, class B, class = std::enable_if_t<detail::is_tensor_v<A> && detail::is_tensor_v<B>>>
auto dot(const A& a, const B& b) {
  using T = detail::tensor_value_t<A>;
  const TensorView<const T> av = detail::const_view(a), bv = detail::const_view(b);
  if (av.rank() != 1 || bv.rank() != 1 || av.numel() != bv.numel())
    throw std::invalid_argument("qkv::dot: expected two rank-1 tensors of equal length, got " +
                                av.shape().str() + " and " + bv.shape().str());
  T s = 0;
  for (Index i = 0; i < av.numel(); ++i) s += av(i) * bv(i);
  return s;
}

/// Matrix product with PyTorch's rules: (n, k) @ (k, m) -> (n, m); leading dimensions are
/// batch dimensions and broadcast, so (B, H, L, E) @ (B, H, E, S) -> (B, H, L, S); a rank-1
/// operand is a row (left) or column (right) vector whose dimension is then dropped.
template <class A, class B, class = std::enable_if_t<detail::is_tensor_v<A> && detail::is_tensor_v<B>>>
auto matmul(const A& a, const B& b) {
  using T = detail::tensor_value_t<A>;
  static_assert(std::is_same_v<T, detail::tensor_value_t<B>>, "qkv::matmul: operands of one element type");
  TensorView<const T> av = detail::const_view(a), bv = detail::const_view(b);
  if (av.rank() == 0 || bv.rank() == 0)
    throw std::invalid_argument("qkv::matmul: scalar operand (shapes " + av.shape().str() + " and " +
                                bv.shape().str() + ")");
  const bool a_vector = av.rank() == 1, b_vector = bv.rank() == 1;
  if (a_vector) av = av.unsqueeze(0);
  if (b_vector) bv = bv.unsqueeze(1);
  const Index n = av.size(-2), k = av.size(-1), m = bv.size(-1);
  if (bv.size(-2) != k)
    throw std::invalid_argument("qkv::matmul: inner dimensions differ: " + std::to_string(k) + " != " +
                                std::to_string(bv.size(-2)) + " (shapes " + detail::const_view(a).shape().str() +
                                " and " + detail::const_view(b).shape().str() + ")");
  Shape batch;
  try {
    batch = detail::broadcast_shapes("qkv::matmul", av.shape().front(av.rank() - 2), bv.shape().front(bv.rank() - 2));
  } catch (const std::invalid_argument&) {
    throw std::invalid_argument("qkv::matmul: batch dimensions do not broadcast (shapes " +
                                detail::const_view(a).shape().str() + " and " + detail::const_view(b).shape().str() + ")");
  }
  Shape a_shape = batch, b_shape = batch, out_shape = batch;
  a_shape.push_back(n), a_shape.push_back(k);
  b_shape.push_back(k), b_shape.push_back(m);
  out_shape.push_back(n), out_shape.push_back(m);
  // Eigen reads matrices with contiguous rows; anything else is copied once.
  Tensor<T> a_copy, b_copy;
  if (k > 1 && av.stride(-1) != 1) av = (a_copy = Tensor<T>(av)).view();
  if (m > 1 && bv.stride(-1) != 1) bv = (b_copy = Tensor<T>(bv)).view();
  const TensorView<const T> ea = av.expand(a_shape), eb = bv.expand(b_shape);
  Tensor<T> out(out_shape);
  const Strides batch_a = ea.strides().front(batch.rank()), batch_b = eb.strides().front(batch.rank());
  T* o = out.data();
  detail::for_each_offset(
      batch,
      [&](Index ia, Index ib) {
        TensorView<T> c(o, Shape{n, m});
        c.matrix().noalias() = TensorView<const T>(ea.data() + ia, Shape{n, k}, ea.strides().drop_front(batch.rank())).matrix() *
                               TensorView<const T>(eb.data() + ib, Shape{k, m}, eb.strides().drop_front(batch.rank())).matrix();
        o += n * m;
      },
      batch_a, batch_b);
  Shape result = batch;
  if (!a_vector) result.push_back(n);
  if (!b_vector) result.push_back(m);
  return std::move(out).reshape(result);
}

/// The upper (triu) or lower (tril) triangle of the last two dimensions, zeroing the
/// rest: triu keeps j - i >= k, tril keeps j - i <= k, as numpy.triu / numpy.tril.
template <class X, class = detail::enable_if_tensor_t<X>>
auto triu(const X& x, Index k = 0) {
  using T = detail::tensor_value_t<X>;
  const TensorView<const T> v = detail::const_view(x);
  detail::require_rank_at_least("qkv::triu", v, 2);
  Tensor<T> out(v);
  const Index rows = v.size(-2), cols = v.size(-1);
  for (Index p = 0; p < out.numel(); ++p) {
    const Index i = (p / cols) % rows, j = p % cols;
    if (j - i < k) out.data()[p] = T(0);
  }
  return out;
}
/// The lower triangle: keeps j - i <= k, as numpy.tril / torch.tril.
template <class X, class = detail::enable_if_tensor_t<X>>
auto tril(const X& x, Index k = 0) {
  using T = detail::tensor_value_t<X>;
  const TensorView<const T> v = detail::const_view(x);
  detail::require_rank_at_least("qkv::tril", v, 2);
  Tensor<T> out(v);
  const Index rows = v.size(-2), cols = v.size(-1);
  for (Index p = 0; p < out.numel(); ++p) {
    const Index i = (p / cols) % rows, j = p % cols;
    if (j - i > k) out.data()[p] = T(0);
  }
  return out;
}

}  // namespace qkv
