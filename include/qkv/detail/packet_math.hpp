// SPDX-License-Identifier: MIT
// SIMD building blocks of the attention kernels, on Eigen's packet primitives so that one
// source runs on SSE, AVX2, AVX-512 and NEON: the packet type of T, the register budget,
// a fast exponential for the softmax, a tanh for logit soft-capping, loads that widen 16-bit values to float, and the
// AVX512_BF16 dot product (vdpbf16ps), for which Eigen has no packet operation.
#pragma once

#include <Eigen/Core>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__F16C__) || defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#if defined(__AVX512BF16__) && defined(EIGEN_VECTORIZE_AVX512)
/// Defined where the fused kernel can compute bfloat16 products with vdpbf16ps.
#define QKV_BF16_DOT 1
#endif
/// Whether bfloat16 prefill takes vdpbf16ps by default (1) or widens K and V to float (0);
/// define it to choose. vdpbf16ps does twice the FLOPs of a float FMA per instruction at the
/// same rate on AMD Zen 4/5, so there bf16 runs up to 2× float; the Intel Xeon of this
/// project's 2026-12-06 measurements (AVX512_BF16 with AVX512-FP16 and AMX, as Sapphire
/// Rapids onward) ran it at half the float FMA's FLOPs, where widening runs bf16 at the
/// float rate. AVX512-FP16 is what tells the two apart at compile time.
#ifndef QKV_BF16_DOT_PREFILL
#if defined(QKV_BF16_DOT) && !defined(__AVX512FP16__)
#define QKV_BF16_DOT_PREFILL 1
#else
#define QKV_BF16_DOT_PREFILL 0
#endif
#endif

#include "../half.hpp"

namespace qkv::detail {

namespace simd = Eigen::internal;

/// The widest packet Eigen vectorises T with (T itself when vectorisation is off).
template <class T>
using Packet = typename simd::packet_traits<T>::type;

template <class T>
inline constexpr int packet_size = simd::unpacket_traits<Packet<T>>::size;

/// An array bound from an int or Index constant: bounds are std::size_t, and a signed
/// size as it is would convert with a sign warning (-Wsign-conversion). Arrays of other
/// types go through Array; packets cannot, an alias template would drop their alignment.
template <std::ptrdiff_t N>
inline constexpr std::size_t extent = std::size_t{N};
template <class T, std::ptrdiff_t N>
using Array = T[extent<N>];

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

/// 1 / q lane by lane for q far from 0 and ∞: the hardware's estimate (14 bits on AVX-512,
/// 12 on AVX) and one Newton step, within about an ulp; a division elsewhere. A division
/// of 16 floats costs some 16 cycles on one port, as much as soft-capping's whole
/// polynomial.
template <class P>
EIGEN_STRONG_INLINE P preciprocal(const P& q) {
  using T = typename simd::unpacket_traits<P>::type;
  constexpr int size = simd::unpacket_traits<P>::size;
  // r·(2 − q·r): one Newton step from the estimate r.
  [[maybe_unused]] const auto refine = [&q](const P& r) { return simd::pmul(r, simd::psub(simd::pset1<P>(2.0f), simd::pmul(q, r))); };
  if constexpr (std::is_same_v<T, float> && size > 1) {
#ifdef EIGEN_VECTORIZE_AVX512
    if constexpr (size == 16) return refine(_mm512_rcp14_ps(q));
#endif
#ifdef EIGEN_VECTORIZE_AVX
    if constexpr (size == 8) return refine(_mm256_rcp_ps(q));
#endif
  }
  return simd::pdiv(simd::pset1<P>(T(1)), q);
}

/// tanh x lane by lane, for logit soft-capping (cap·tanh(s / cap)). Float: Eigen's
/// rational approximation (a few ulps; exactly ±1 for |x| ≥ 8, where tanh rounds to ±1),
/// the one Eigen's own ptanh uses, its division by preciprocal. Double, which Eigen does not vectorise:
/// (1 − t) / (1 + t) with t = e^(−2|x|) and x's sign, within a few ulps of 1 in absolute
/// error (the capped score is cap·tanh, so its error is a few ulps of the cap); ±inf give
/// ±1 and NaN stays NaN.
template <class P>
EIGEN_STRONG_INLINE P ptanh(const P& x) {
  using T = typename simd::unpacket_traits<P>::type;
  if constexpr (simd::unpacket_traits<P>::size == 1) {
    return std::tanh(x);
  } else if constexpr (std::is_same_v<T, float>) {
    const P clamp = simd::pset1<P>(7.99881172180175781f);
    const P c = simd::pmax(simd::pmin(x, clamp), simd::pnegate(clamp));
    const P x2 = simd::pmul(c, c);
    P p = simd::pmadd(x2, simd::pset1<P>(-2.76076847742355e-16f), simd::pset1<P>(2.00018790482477e-13f));
    p = simd::pmadd(x2, p, simd::pset1<P>(-8.60467152213735e-11f));
    p = simd::pmadd(x2, p, simd::pset1<P>(5.12229709037114e-08f));
    p = simd::pmadd(x2, p, simd::pset1<P>(1.48572235717979e-05f));
    p = simd::pmadd(x2, p, simd::pset1<P>(6.37261928875436e-04f));
    p = simd::pmadd(x2, p, simd::pset1<P>(4.89352455891786e-03f));
    p = simd::pmul(c, p);
    P q = simd::pmadd(x2, simd::pset1<P>(1.19825839466702e-06f), simd::pset1<P>(1.18534705686654e-04f));
    q = simd::pmadd(x2, q, simd::pset1<P>(2.26843463243900e-03f));
    q = simd::pmadd(x2, q, simd::pset1<P>(4.89352518554385e-03f));
    // Below 0.0004, tanh x rounds to x (Eigen's cut-off); NaN, which the clamp would turn
    // into ±8, stays NaN (|NaN| < 0.0004 is false, so NaN takes the first branch below).
    const P small = simd::pcmp_lt(simd::pabs(x), simd::pset1<P>(0.0004f));
    const P keep = simd::por(small, simd::pandnot(simd::ptrue(x), simd::pcmp_eq(x, x)));
    return simd::pselect(keep, x, simd::pmul(p, preciprocal(q)));
  } else {
    const P one = simd::pset1<P>(T(1));
    const P t = simd::pexp(simd::pmul(simd::pset1<P>(T(-2)), simd::pabs(x)));
    const P r = simd::pdiv(simd::psub(one, t), simd::padd(one, t));
    return simd::pselect(simd::pcmp_lt(x, simd::pset1<P>(T(0))), simd::pnegate(r), r);
  }
}

/// A packet of float from `size` consecutive values at `from` (unaligned): loaded as they
/// are when H is float, widened exactly from bfloat16 (a shift) or half otherwise. Half
/// goes through F16C's vcvtph2ps where the target has it (__F16C__): Eigen 3.4's own
/// half2float converts in software on x86, its EIGEN_HAS_FP16_C never being defined there.
template <class P, class H>
EIGEN_STRONG_INLINE P ploadu_widened(const H* from) {
  using T = typename simd::unpacket_traits<P>::type;
  constexpr int size = simd::unpacket_traits<P>::size;
  if constexpr (std::is_same_v<H, T>) {
    return simd::ploadu<P>(from);
  } else {
#ifdef EIGEN_VECTORIZE_AVX512
    if constexpr (size == 16 && std::is_same_v<H, bfloat16>) return simd::Bf16ToF32(simd::ploadu<simd::Packet16bf>(from));
#ifdef __F16C__
    if constexpr (size == 16 && std::is_same_v<H, half>)
      return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(from)));
#endif
#endif
#ifdef EIGEN_VECTORIZE_AVX
    if constexpr (size == 8 && std::is_same_v<H, bfloat16>) return simd::Bf16ToF32(simd::ploadu<simd::Packet8bf>(from));
#ifdef __F16C__
    if constexpr (size == 8 && std::is_same_v<H, half>)
      return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(from)));
#endif
#endif
    EIGEN_ALIGN64 Array<T, size> lanes;
    for (int i = 0; i < size; ++i) lanes[i] = static_cast<T>(from[i]);
    return simd::pload<P>(lanes);
  }
}

/// Whether ploadu_widened_pair<P, H> returns the values at even and at odd positions
/// rather than the first and second halves: for bfloat16 on AVX2 and AVX-512, where a float
/// is a bfloat16 shifted left by 16 bits, so that one full-width load gives two packets at
/// one integer instruction each, without the widening shuffle (the decode kernel's
/// bfloat16 rate on AVX2 is bound by those instructions).
template <class P, class H>
inline constexpr bool widens_pairs_by_parity =
    std::is_same_v<H, bfloat16> && std::is_same_v<typename simd::unpacket_traits<P>::type, float> &&
#if defined(EIGEN_VECTORIZE_AVX512)
    simd::unpacket_traits<P>::size == 16;
#elif defined(EIGEN_VECTORIZE_AVX2)
    simd::unpacket_traits<P>::size == 8;
#else
    false;
#endif

/// 2·size values at `from` (unaligned) widened into two packets: [0, size) and
/// [size, 2·size), or, where widens_pairs_by_parity, the even and the odd positions.
template <class P, class H>
EIGEN_STRONG_INLINE void ploadu_widened_pair(const H* from, P& first, P& second) {
  if constexpr (widens_pairs_by_parity<P, H>) {
#if defined(EIGEN_VECTORIZE_AVX512)
    const __m512i x = _mm512_loadu_si512(from);
    first = _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
    second = _mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
#elif defined(EIGEN_VECTORIZE_AVX2)
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(from));
    first = _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));
    second = _mm256_castsi256_ps(_mm256_and_si256(x, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
#endif
  } else {
    constexpr int size = simd::unpacket_traits<P>::size;
    first = ploadu_widened<P>(from);
    second = ploadu_widened<P>(from + size);
  }
}

/// x rounded to H's precision (to nearest even) and widened back; x itself when H is the
/// lanes' own type. The softmax weights of 16-bit inputs go through it before their
/// product with V, as in PyTorch.
template <class H, class P>
EIGEN_STRONG_INLINE P pround_to(const P& x) {
  using T = typename simd::unpacket_traits<P>::type;
  constexpr int size = simd::unpacket_traits<P>::size;
  if constexpr (!is_half_v<H>) {
    return x;
  } else {
#ifdef EIGEN_VECTORIZE_AVX512
    if constexpr (size == 16 && std::is_same_v<H, bfloat16>) return simd::Bf16ToF32(simd::F32ToBf16(x));
#ifdef __F16C__
    if constexpr (size == 16 && std::is_same_v<H, half>)
      return _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
#endif
#ifdef EIGEN_VECTORIZE_AVX
    if constexpr (size == 8 && std::is_same_v<H, bfloat16>) return simd::Bf16ToF32(simd::F32ToBf16(x));
#ifdef __F16C__
    if constexpr (size == 8 && std::is_same_v<H, half>)
      return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
#endif
    EIGEN_ALIGN64 Array<T, size> lanes;
    simd::pstore(lanes, x);
    for (int i = 0; i < size; ++i) lanes[i] = static_cast<T>(H(lanes[i]));
    return simd::pload<P>(lanes);
  }
}

#ifdef QKV_BF16_DOT
/// 32 bfloat16 values as 16 pairs, one pair per 32-bit lane: vdpbf16ps's operand.
using PacketBf16Pairs = __m512i;

/// acc + a·b in pairs: lane i gains a[2i]·b[2i] + a[2i+1]·b[2i+1], each product exact and
/// accumulated in float (vdpbf16ps).
EIGEN_ALWAYS_INLINE Eigen::internal::Packet16f pdot_bf16(const Eigen::internal::Packet16f& acc,
                                                          const PacketBf16Pairs& a, const PacketBf16Pairs& b) {
  return _mm512_dpbf16_ps(acc, __builtin_bit_cast(__m512bh, a), __builtin_bit_cast(__m512bh, b));
}

/// The pair of bfloat16 at `from` in every lane.
EIGEN_ALWAYS_INLINE PacketBf16Pairs pbroadcast_pair(const bfloat16* from) {
  std::int32_t pair;
  std::memcpy(&pair, from, sizeof pair);
  return _mm512_set1_epi32(pair);
}

/// Lane i of `first` and of `second`, rounded to bfloat16 (to nearest even), as pair i.
EIGEN_ALWAYS_INLINE PacketBf16Pairs pinterleave_bf16(const Eigen::internal::Packet16f& first,
                                                      const Eigen::internal::Packet16f& second) {
  // vcvtne2ps2bf16 puts `first` in the low 16 values, `second` in the high 16.
  const __m512i halves = __builtin_bit_cast(__m512i, _mm512_cvtne2ps_pbh(second, first));
  const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                                         6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(order, halves);
}

/// The first and second values of each pair, widened to float.
EIGEN_ALWAYS_INLINE void psplit_bf16(const PacketBf16Pairs& pairs, Eigen::internal::Packet16f& first,
                                     Eigen::internal::Packet16f& second) {
  first = _mm512_castsi512_ps(_mm512_slli_epi32(pairs, 16));
  second = _mm512_castsi512_ps(_mm512_and_si512(pairs, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
}

/// 16 values from each of `first` and `second` (unaligned) as 16 pairs.
EIGEN_ALWAYS_INLINE PacketBf16Pairs pzip_bf16(const bfloat16* first, const bfloat16* second) {
  const __m512i a = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(first)));
  const __m512i b = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(second)));
  return _mm512_or_si512(a, _mm512_slli_epi32(b, 16));
}
#endif

/// Scalar e^x, rounded as the lanes of pexp_clamped.
template <class T>
EIGEN_STRONG_INLINE T exp_clamped(T x) {
  if constexpr (packet_size<T> > 1) return simd::pfirst(pexp_clamped(simd::pset1<Packet<T>>(x)));
  else return pexp_clamped(x);
}

}  // namespace qkv::detail
