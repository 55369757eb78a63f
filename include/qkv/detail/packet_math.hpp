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

/// e^x lane by lane for x <= 88 (the softmax calls it with x <= 5); -inf and anything
/// below -88 (float) give exactly 0.
///
/// For float: e^x = 2^n · 2^f with n = round(x·log2 e) and f = x·log2 e − n in
/// [-1/2, 1/2]. One FMA gives x·log2 e + 1.5·2^23 + 127, whose low mantissa bits are
/// n + 127, shifted into the exponent field as 2^n (no separate round and conversion);
/// another gives f with a single rounding. 2^f is a degree-5 polynomial with p(0) = 1,
/// fitted for the least maximum relative error on [-1/2, 1/2] by
/// tools/fit_exp2_polynomial.cpp: 9.1e-8 exactly, 1.7e-7 (1.4 epsilons) as evaluated in
/// float, where Taylor's series needs degree 6. Clamping x at -127·ln 2 makes the biased
/// exponent 0, so the result is +0: a masked score contributes nothing. This is under half
/// the cost of Eigen's pexp, which also handles large x and denormals.
/// For double (and scalars): Eigen's pexp, accurate to an ulp or two, and 0 below e^-762.
template <class P>
EIGEN_STRONG_INLINE P pexp_clamped(const P& x) {
  using T = typename simd::unpacket_traits<P>::type;
  if constexpr (std::is_same_v<T, float> && simd::unpacket_traits<P>::size > 1) {
    using PI = typename simd::unpacket_traits<P>::integer_packet;
    const P log2_e = simd::pset1<P>(1.44269504088896341f);
    const P clamped = simd::pmax(x, simd::pset1<P>(-127.0f * 0.693147180559945309f));
    const P shifter = simd::pset1<P>(0x1.8p23f + 127.0f);
    const P shifted = simd::pmadd(clamped, log2_e, shifter);  // bits: 1.5·2^23 + n + 127
    const P f = simd::pmadd(clamped, log2_e, simd::psub(shifter, shifted));  // x·log2 e − n
    P p = simd::pset1<P>(1.32647287689830330e-3f);
    p = simd::pmadd(p, f, simd::pset1<P>(9.67151318310781501e-3f));
    p = simd::pmadd(p, f, simd::pset1<P>(5.55073374447788426e-2f));
    p = simd::pmadd(p, f, simd::pset1<P>(2.40222420770913575e-1f));
    p = simd::pmadd(p, f, simd::pset1<P>(6.93146977595113678e-1f));
    p = simd::pmadd(p, f, simd::pset1<P>(1.0f));
    // n + 127 is in [0, 254]: the shift drops the bits of 1.5·2^23 above it.
    const PI two_to_n = simd::plogical_shift_left<23>(simd::preinterpret<PI>(shifted));
    return simd::pmul(p, simd::preinterpret<P>(two_to_n));
  } else {
    // pexp saturates at its smallest result instead of reaching 0; a masked score (−inf)
    // must contribute exactly nothing.
    const P e = simd::pexp(x);
    return simd::pselect(simd::pcmp_lt(x, simd::pset1<P>(T(-762.4618986159398))), simd::pset1<P>(T(0)), e);
  }
}

/// Scalar e^x, rounded as the lanes of pexp_clamped.
template <class T>
EIGEN_STRONG_INLINE T exp_clamped(T x) {
  if constexpr (packet_size<T> > 1) return simd::pfirst(pexp_clamped(simd::pset1<Packet<T>>(x)));
  else return pexp_clamped(x);
}

}  // namespace qkv::detail
