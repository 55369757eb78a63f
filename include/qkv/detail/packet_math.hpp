// SPDX-License-Identifier: MIT
// SIMD building blocks of the attention kernels, on Eigen's packet primitives so that one
// source runs on SSE, AVX2, AVX-512 and NEON: the packet type of T, the register budget,
// and a fast exponential for the softmax.
#pragma once

#include <Eigen/Core>

#include <cstddef>
#include <type_traits>

namespace qkv::detail {

namespace simd = Eigen::internal;

/// The widest packet Eigen vectorises T with (T itself when vectorisation is off).
template <class T>
using Packet = typename simd::packet_traits<T>::type;

template <class T>
inline constexpr int packet_size = simd::unpacket_traits<Packet<T>>::size;

/// Vector registers of the target: 32 on AVX-512 and NEON, 16 on SSE and AVX2.
#ifdef EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS
inline constexpr int vector_registers = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS;
#else
inline constexpr int vector_registers = 16;
#endif

/// 2^x lane by lane for x <= 127 (the softmax calls it with x <= 5·log2 e); -inf and
/// anything below -127 give exactly 0.
///
/// For float: 2^x = 2^n · 2^f with n = round(x) and f in [-1/2, 1/2], 2^f by its Taylor
/// polynomial of degree 6 (relative error < 1.2e-7 on that interval, below float's
/// epsilon), and 2^n put straight into the exponent bits. Clamping x at -127 makes the
/// biased exponent 0, so the result is +0: a masked score contributes nothing. This is
/// about half the cost of Eigen's pexp, which also handles large x and denormals.
/// For double (and scalars): Eigen's pexp(x·ln 2), accurate to an ulp or two, and 0
/// below 2^-1100.
template <class P>
EIGEN_STRONG_INLINE P pexp2_clamped(const P& x) {
  using T = typename simd::unpacket_traits<P>::type;
  if constexpr (std::is_same_v<T, float> && simd::unpacket_traits<P>::size > 1) {
    using PI = typename simd::unpacket_traits<P>::integer_packet;
    const P clamped = simd::pmax(x, simd::pset1<P>(-127.0f));
    const P n = simd::print(clamped);  // to nearest
    const P f = simd::psub(clamped, n);
    // ln(2)^k / k!, k = 6 .. 1
    P p = simd::pset1<P>(1.5403530393381606e-4f);
    p = simd::pmadd(p, f, simd::pset1<P>(1.3333558146428443e-3f));
    p = simd::pmadd(p, f, simd::pset1<P>(9.6181291076284772e-3f));
    p = simd::pmadd(p, f, simd::pset1<P>(5.5504108664821580e-2f));
    p = simd::pmadd(p, f, simd::pset1<P>(2.4022650695910071e-1f));
    p = simd::pmadd(p, f, simd::pset1<P>(6.9314718055994531e-1f));
    p = simd::pmadd(p, f, simd::pset1<P>(1.0f));
    // n in [-127, 127], so n + 127 is already a valid biased exponent; 0 makes 2^n = +0.
    const PI biased = simd::pcast<P, PI>(simd::padd(n, simd::pset1<P>(127.0f)));
    return simd::pmul(p, simd::preinterpret<P>(simd::plogical_shift_left<23>(biased)));
  } else {
    // pexp saturates at its smallest result instead of reaching 0; a masked score (−inf)
    // must contribute exactly nothing.
    const P e = simd::pexp(simd::pmul(x, simd::pset1<P>(T(0.69314718055994530942))));
    return simd::pselect(simd::pcmp_lt(x, simd::pset1<P>(T(-1100))), simd::pset1<P>(T(0)), e);
  }
}

/// e^x for x <= 88 as 2^(x·log2 e); -inf and anything below -88 (float) give exactly 0.
template <class P>
EIGEN_STRONG_INLINE P pexp_clamped(const P& x) {
  using T = typename simd::unpacket_traits<P>::type;
  return pexp2_clamped(simd::pmul(x, simd::pset1<P>(T(1.4426950408889634074))));
}

/// Scalar 2^x with the same rounding as the packet version's lanes.
template <class T>
EIGEN_STRONG_INLINE T exp2_clamped(T x) {
  if constexpr (packet_size<T> > 1) return simd::pfirst(pexp2_clamped(simd::pset1<Packet<T>>(x)));
  else return pexp2_clamped(x);
}

/// Scalar e^x, rounded as the lanes of pexp_clamped.
template <class T>
EIGEN_STRONG_INLINE T exp_clamped(T x) {
  return exp2_clamped(x * T(1.4426950408889634074));
}

}  // namespace qkv::detail
