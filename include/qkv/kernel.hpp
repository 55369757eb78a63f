// SPDX-License-Identifier: MIT
// The fused attention kernel: FlashAttention's forward pass for CPUs, on Eigen packets.
// It computes what detail/naive_attention.hpp computes, without the L×S matrix.
//
// Shapes (per batch/head element): Q (L, E), K (S, E), V (S, Ev), O (L, Ev), any strides.
//
// Algorithm. The queries are cut into panels of W = packets·lanes rows (48 floats on
// AVX-512, 16 on AVX2; one packet when L ≤ lanes), which live transposed in the vector
// lanes. A task takes a few panels that walk the key tiles together, so each K/V tile is
// read from memory once for all of them.
//   1. Pack Qᵀ (E, W), pre-multiplied by the scale.
//   2. For each key tile of T_k keys (causal: only tiles some row of the panel can see):
//      a. Sᵀ (T_k, W) = K_tile · Qᵀ, a register block of R keys × W queries at a time,
//         each step one K element broadcast against `packets` lanes of Qᵀ. The causal
//         diagonal and the attention mask are applied here, on tiles that need them.
//      b. Online softmax, on each block while it is still in registers: Pᵀ = e^(Sᵀ − m),
//         l += Σ_k Pᵀ, with the reference m raised (m' = max(m, block max), α = e^(m − m')
//         rescaling l and the tile's earlier rows) only when a score exceeds it by more
//         than 5, as FlashAttention-4 does. Queries are lanes, so every reduction is
//         vertical. e^x is computed as 2^(x·log2 e) with a short polynomial; subtracting m
//         before the conversion keeps close logits exact, as in the textbook formula.
//      c. Oᵀ (Ev, W) = α·Oᵀ + Vᵀ_tile · Pᵀ, a block of R value columns × W queries,
//         each step one V element broadcast against a row of Pᵀ.
//   3. O = (Oᵀ / l)ᵀ, written to the caller's strides. A row that may see no key keeps
//      m = −inf, l = 0, and is written as zeros (as PyTorch 2's SDPA, never NaN): its
//      scores are taken relative to 0 instead of −inf, so e^(−inf) = 0, not NaN.
//
// FLOPs: 2·L·S·E for Q·Kᵀ plus 2·L·S·Ev for P·V (4·L·S·E when Ev = E), half with causal,
// plus O(L·S) for the softmax. K and V are read in place, once per task of G panels.
// Memory: per thread and panel Qᵀ and Oᵀ, plus one Sᵀ/Pᵀ tile: (G·(E + Ev) + T_k)·W
// elements for G panels per task — O(tile), independent of S; T_k follows from the L1
// and L2 sizes, G from how many queries should share each K/V tile read from memory.
// Threads: tasks are (batch·heads × groups of query panels), heaviest (causal: last) first,
// handed out dynamically. Each output row is computed by one task with the same tiling
// whatever the thread count, so results are bitwise identical for any thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <type_traits>

#include "detail/attention_problem.hpp"
#include "detail/attention_variant.hpp"
#include "detail/packet_math.hpp"
#include "parallel.hpp"

namespace qkv::detail {

/// Register blocking of the micro-kernels: R broadcast rows × `packets` packets of
/// accumulators, plus the packets loaded each step and the broadcast. 8 × 3 = 24 (+ 4) of
/// 32 registers (AVX-512, NEON); 6 × 2 = 12 (+ 3) of 16 (AVX2, SSE). With 16 registers,
/// 4 × 3 would need all 16, and the compilers then re-load the three packets as memory
/// operands of every FMA: 16 loads per 12 FMAs, 0.60 of the FMA peak on Zen 3 against
/// 0.78 for 6 × 2.
template <class T>
struct FlashBlocking {
  static constexpr int lanes = packet_size<T>;
  static constexpr int rows = vector_registers >= 32 ? 8 : 6;
  static constexpr int packets = vector_registers >= 32 ? 3 : 2;
  static constexpr Index width = Index(packets) * lanes;  // queries per panel
};

/// Tunables, settable by tests to force small tiles and the fused path on small inputs.
struct KernelConfig {
  Index key_tile = 0;           // keys per tile; 0 = from the cache sizes
  Index query_panels = 0;       // query panels per task (at most 64); 0 = ~1024 queries
  Index decode_chunk = 0;       // keys per split-key decode task; 0 = from the L2 size. Never
                                // from the thread count: results must not depend on it
  Index decode_max_rows = 4;    // query rows up to which the split-key decode kernel runs
  double naive_max_flops = 0;   // up to this, the plain loop (tests force it for everything)
  int bf16_dot = -1;            // bfloat16 prefill by vdpbf16ps, where compiled in: 1 yes, 0 no,
                                // -1 as QKV_BF16_DOT_PREFILL says
};

inline KernelConfig& kernel_config() {
  static KernelConfig config;
  return config;
}

/// Keys per split-key decode task: a chunk of K that fills half of L2, so that the rows
/// of a task (grouped heads, a few queries) re-read it from cache, and long enough that
/// each task streams memory well past the prefetchers' ramp-up (256 keys cost 2 threads
/// ~20 % of their bandwidth here against 1024).
template <class T>
Index decode_chunk(Index head_dim, Index value_dim) {
  if (kernel_config().decode_chunk > 0) return kernel_config().decode_chunk;
  const Index row_bytes = std::max<Index>({head_dim, value_dim, 1}) * Index(sizeof(T));
  const Index keys = (static_cast<Index>(Eigen::l2CacheSize()) / 2) / row_bytes;
  return std::clamp<Index>(keys / 64 * 64, 256, 4096);
}

/// Keys per tile: Sᵀ/Pᵀ (T_k × W) should share L1 with the rows of Qᵀ and Oᵀ in use,
/// and K_tile, V_tile should stay in L2 while all of the panel's blocks walk them.
template <class T, Index W>
Index flash_key_tile(Index head_dim, Index value_dim) {
  if (kernel_config().key_tile > 0) return kernel_config().key_tile;
  constexpr Index R = FlashBlocking<T>::rows;
  const Index l1 = static_cast<Index>(Eigen::l1CacheSize());
  const Index l2 = static_cast<Index>(Eigen::l2CacheSize());
  const Index by_l1 = (l1 / 2) / (W * Index(sizeof(T)));
  const Index by_l2 = (l2 / 4) / (std::max<Index>(head_dim + value_dim, 1) * Index(sizeof(T)));
  const Index tile = std::max<Index>(R, std::min(by_l1, by_l2));
  return tile / R * R;
}

// acc[r][p] = Σ_{t < n} b[r·b_r + t·b_t] · a[t·a_t + p·lanes]: an outer-product block,
// R broadcast scalars against NP aligned packets per step. UnitR says b_r == 1
// (P·V with contiguous value rows): one pointer then serves all R broadcasts, where R
// row pointers would spill general-purpose registers.
template <int R, int NP, bool UnitR, class T>
EIGEN_ALWAYS_INLINE void outer_block(Packet<T> (&acc)[extent<R>][extent<NP>], const T* b, Index b_r, Index b_t, const T* a,
                                     Index a_t, Index n) {
  constexpr int lanes = FlashBlocking<T>::lanes;
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < NP; ++p) acc[r][p] = simd::pset1<Packet<T>>(T(0));
  Array<const T*, R> rows;
  for (int r = 0; r < R; ++r) rows[r] = b + r * b_r;
  for (Index t = 0; t < n; ++t, a += a_t) {
    Packet<T> x[extent<NP>];
    for (int p = 0; p < NP; ++p) x[p] = simd::pload<Packet<T>>(a + p * lanes);
    const Index bt = t * b_t;
    for (int r = 0; r < R; ++r) {
      const Packet<T> y = simd::pset1<Packet<T>>(UnitR ? b[bt + r] : rows[r][bt]);
      for (int p = 0; p < NP; ++p) acc[r][p] = simd::pmadd(y, x[p], acc[r][p]);
    }
  }
}

#ifdef QKV_BF16_DOT
// The outer-product block of outer_block with vdpbf16ps: acc[r][p] = Σ_{t < pairs}
// b-pair(r, t) · a-pairs(t, p), where b-pair(r, t) is the two bfloat16 at
// b + r·b_r + t·b_t and a-pairs(t, p) the 32 bfloat16 at a + t·a_t + p·32 (16 lanes of
// pairs). Each step reduces two elements of the sum: half the instructions of the float
// block, at the same throughput per instruction.
template <int R, int NP, bool UnitR>
EIGEN_ALWAYS_INLINE void pair_block(Packet<float> (&acc)[extent<R>][extent<NP>], const bfloat16* b, Index b_r, Index b_t,
                                    const bfloat16* a, Index a_t, Index pairs) {
  // Summed in a local block, copied out at the end: the integer loads may alias anything
  // (__m512i is may_alias), so sums kept in the caller's array would be stored at each step.
  Packet<float> sum[extent<R>][extent<NP>];
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < NP; ++p) sum[r][p] = simd::pset1<Packet<float>>(0.0f);
  Array<const bfloat16*, R> rows;
  for (int r = 0; r < R; ++r) rows[r] = b + r * b_r;
  for (Index t = 0; t < pairs; ++t, a += a_t) {
    PacketBf16Pairs x[extent<NP>];
    for (int p = 0; p < NP; ++p) x[p] = _mm512_load_si512(a + p * 32);
    const Index bt = t * b_t;
    for (int r = 0; r < R; ++r) {
      const PacketBf16Pairs y = pbroadcast_pair(UnitR ? b + bt + 2 * r : rows[r] + bt);
      for (int p = 0; p < NP; ++p) sum[r][p] = pdot_bf16(sum[r][p], x[p], y);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < NP; ++p) acc[r][p] = sum[r][p];
}
#endif

/// How the fused kernel reads K and V and multiplies.
enum class FlashPath {
  direct,    // K, V in place, in the compute type (float, double)
  widened,   // 16-bit K, V widened to float tile by tile, then the float micro-kernel
  bf16_dot,  // bfloat16 throughout, products by vdpbf16ps on pairs along the reduction axis
};

/// The fused forward pass over one AttentionProblem; see the top of this file. Panels are
/// NP packets wide: FlashBlocking's, or one for a few queries (the notebooks' 6).
/// V is the variant policy (attention_variant.hpp): NoVariant compiles to plain attention,
/// every use of the policy being under `if constexpr`.
template <class Q, class KV, FlashPath Path, int NP = FlashBlocking<compute_t<Q>>::packets, class V = NoVariant>
class FlashAttention {
  using T = compute_t<Q>;
  using P = Packet<T>;
  using B = FlashBlocking<T>;
  using Problem = AttentionProblem<Q, KV>;
  using Offsets = typename Problem::Offsets;
  static constexpr int R = B::rows, lanes = B::lanes;
  static constexpr Index W = Index(NP) * lanes;
  static constexpr bool dot = Path == FlashPath::bf16_dot;
  // Qᵀ and Pᵀ: the compute type, or bfloat16 pairs along E and along the keys.
  using Packed = std::conditional_t<dot, bfloat16, T>;
  static constexpr Index pair = dot ? 2 : 1;
  static_assert(Path != FlashPath::direct || std::is_same_v<KV, T>, "direct: K and V in the compute type");

 public:
  /// `threads`: how many threads will share the tasks; it sets how many query panels
  /// one task takes, not how any row is computed.
  FlashAttention(const Problem& p, int threads, const V& variant = {})
      : p_(p), key_tile_(round_up(flash_key_tile<T, W>(p.head_dim, p.value_dim))),
        panels_((p.query_len + W - 1) / W), group_(panels_per_task(threads)),
        groups_(group_ == 1 ? panels_ : (panels_ + group_ - 1) / group_), vx_(variant_data(p, variant)) {}

  Index tasks() const noexcept { return p_.batch_count() * groups_; }

  /// Scratch bytes one task needs.
  std::size_t scratch_bytes() const noexcept {
    return static_cast<std::size_t>(group_ * panel_bytes() + tile_bytes() + kv_tile_bytes());
  }

  /// Task t: groups of panels in descending order (under causal masking the last rows
  /// see the most keys, so the longest tasks start first), then batch.
  void run_task(Index task, void* scratch) const {
    const Index group = groups_ - 1 - task / p_.batch_count();
    run_panels(task % p_.batch_count(), group * group_, std::min(group_, panels_ - group * group_),
               static_cast<char*>(scratch));
  }

 private:
  static constexpr Index max_group = 64;
  static constexpr Index queries_per_task = 1024;
  // How far above the reference a score may be taken without raising it: Pᵀ then stays
  // below e^5 ≈ 148, far from overflow in l even for float and billions of keys.
  static constexpr double max_growth = 5;

  // Variants only, empty otherwise (so that the plain kernel's frame and registers are
  // today's): per panel, the batch element, its ALiBi slope (negated) and sink, and
  // whether the user's mask must be asked pair by pair in the current tile.
  struct NoPanelVariant {};
  struct PanelVariant {
    Index batch = 0;
    T neg_slope = 0, sink = 0;
    bool partial = false;
  };
  struct Scratch : std::conditional_t<V::active, PanelVariant, NoPanelVariant> {
    Packed *qt, *st;
    T *ot, *m, *l, *alpha;
  };
  // Per call: the policy, the alignment and the window's sides (AttentionProblem).
  struct NoCallVariant {};
  struct CallVariant {
    V variant;
    Index align, upper, lower;
  };
  using CallData = std::conditional_t<V::active, CallVariant, NoCallVariant>;
  static CallData variant_data(const Problem& p, const V& variant) {
    if constexpr (V::active) return {variant, p.alignment_offset(), p.upper_offset(), p.lower_offset()};
    else return {};
  }
  // The K/V tile every panel of a task reads: the caller's memory, or its widened or
  // paired copy.
  struct KvTile {
    const std::conditional_t<Path == FlashPath::widened, T, KV>*k, *v;
    Index k_row, k_col, v_row, v_col;
  };

  static Index round_up(Index n) noexcept { return (n + pair - 1) / pair * pair; }
  static Index bytes_64(Index bytes) noexcept { return (bytes + 63) / 64 * 64; }

  // Panels that share each K/V tile: the tile is fetched from memory once per task, and
  // the wait for it, not streaming the panels' Qᵀ and Oᵀ through L2 from L3, is what a
  // task's size decides. So a task takes the panels of `queries_per_task` queries (fewer
  // when there would be under 4 tasks per thread). Measured on Zen 3 (16-query panels,
  // 512 KB L2), E = 128, L = 4096: 64 panels 0.80–0.84 of the FMA peak, 15 (as many as
  // fit Qᵀ and Oᵀ in half of L2) 0.72–0.76.
  Index panels_per_task(int threads) const {
    if (panels_ <= 1 && kernel_config().query_panels <= 0) return 1;  // no divisions for a small call
    const Index wanted = std::max<Index>(queries_per_task / W, 1);
    const Index spread = p_.batch_count() * panels_ / (4 * Index(std::max(threads, 1)));
    const Index forced = kernel_config().query_panels;
    return forced > 0 ? std::min(forced, max_group) : std::clamp<Index>(std::min(wanted, spread), 1, max_group);
  }

  // Per panel: Qᵀ, Oᵀ, m, l, α; per task: the Pᵀ tile and the K/V tile.
  Index panel_bytes() const noexcept {
    return bytes_64(round_up(p_.head_dim) * W * Index(sizeof(Packed))) +
           bytes_64((p_.value_dim + 3) * W * Index(sizeof(T)));
  }
  Index tile_bytes() const noexcept { return bytes_64(key_tile_ * W * Index(sizeof(Packed))); }
  Index kv_tile_bytes() const noexcept {
    if constexpr (Path == FlashPath::widened)
      return bytes_64(key_tile_ * p_.head_dim * Index(sizeof(T))) + bytes_64(key_tile_ * p_.value_dim * Index(sizeof(T)));
    else if constexpr (dot) return bytes_64(key_tile_ * p_.value_dim * Index(sizeof(KV)));
    else return 0;
  }

  Scratch carve(char* s, char* st) const {
    Scratch w;
    w.qt = reinterpret_cast<Packed*>(s), s += bytes_64(round_up(p_.head_dim) * W * Index(sizeof(Packed)));
    w.ot = reinterpret_cast<T*>(s);
    w.m = w.ot + p_.value_dim * W;
    w.l = w.m + W;
    w.alpha = w.l + W;
    w.st = reinterpret_cast<Packed*>(st);
    return w;
  }

  // Panels [panel, panel + count) of batch element b, walking the key tiles once.
  void run_panels(Index b, Index panel, Index count, char* scratch) const {
    const auto o = p_.offsets(b);
    Array<Scratch, max_group> w;
    Array<Index, max_group> first, rows, key_end;
    [[maybe_unused]] std::conditional_t<V::active, Array<Index, max_group>, char> key_begin;
    Index key_end_all = 0, key_begin_all = 0;
    char* st = scratch + group_ * panel_bytes();
    char* kv = st + tile_bytes();
    for (Index k = 0; k < count; ++k) {
      first[k] = (panel + k) * W;
      rows[k] = std::min(W, p_.query_len - first[k]);
      key_end[k] = p_.visible_keys(first[k] + rows[k] - 1);
      key_end_all = std::max(key_end_all, key_end[k]);
      w[k] = carve(scratch + k * panel_bytes(), st);
      pack_queries(o, first[k], rows[k], w[k].qt);
      std::fill(w[k].ot, w[k].ot + p_.value_dim * W, T(0));
      std::fill(w[k].m, w[k].m + W, -std::numeric_limits<T>::infinity());
      std::fill(w[k].l, w[k].l + W, T(0));
    }
    if constexpr (V::active) key_begin_all = variant_setup(b, count, first, key_begin, key_end, key_end_all, w);
    for (Index key = key_begin_all; key < key_end_all; key += key_tile_) {
      const KvTile tile = load_tile(o, key, std::min(key_tile_, key_end_all - key), kv);
      for (Index k = 0; k < count; ++k) {
        if (key >= key_end[k]) continue;  // causal: tiles wholly above this panel's diagonal
        const Index n = std::min(key_tile_, key_end[k] - key);
        if constexpr (V::active) {
          if (key + n <= key_begin[k]) continue;  // window: tiles wholly left of this panel's
          const TileVisibility seen = user_tile(vx_.variant, p_, b, first[k], first[k] + rows[k], key, key + n);
          if (seen == TileVisibility::hidden) continue;
          w[k].partial = seen == TileVisibility::partial;
          // The panel's first tile from its first visible key on (an even number of keys
          // in, for the value pairs of bf16_dot): keys left of every row's window are not
          // read. The start depends on the panel only, not on the task's other panels.
          Index skip = std::max<Index>(0, key_begin[k] - key);
          if constexpr (dot) skip -= skip % 2;
          if (skip > 0) {
            const KvTile part = shifted(tile, skip);
            scores(o, part, first[k], key + skip, n - skip, w[k]);
            accumulate(part, n - skip, w[k]);
            continue;
          }
        }
        scores(o, tile, first[k], key, n, w[k]);
        accumulate(tile, n, w[k]);
      }
    }
    for (Index k = 0; k < count; ++k) store(o, first[k], rows[k], w[k]);
    if (p_.logsumexp)
      for (Index k = 0; k < count; ++k) store_logsumexp(b, first[k], rows[k], w[k]);
  }

  // Variants: each panel's first visible key (the window's left side of its first row),
  // its ALiBi slope and sink; returns where the task's first key tile starts: the first key
  // any panel sees, rounded down to a whole number of tiles, so that every panel meets the
  // same tile boundaries whatever the task's panels (which the thread count sets), and the
  // results stay bitwise independent of it. A panel that sees no key gets an empty range.
  // Hidden tiles are then skipped by their indices, as causal ones.
  Index variant_setup(Index b, Index count, const Array<Index, max_group>& first, Array<Index, max_group>& key_begin,
                      Array<Index, max_group>& key_end, Index& key_end_all, Array<Scratch, max_group>& w) const {
    Index key_begin_all = p_.key_len;
    key_end_all = 0;
    for (Index k = 0; k < count; ++k) {
      key_end[k] = p_.key_end(first[k] + std::min(W, p_.query_len - first[k]) - 1);
      key_begin[k] = p_.key_begin(first[k]);
      if (key_begin[k] >= key_end[k]) key_begin[k] = key_end[k] = 0;
      else key_begin_all = std::min(key_begin_all, key_begin[k]), key_end_all = std::max(key_end_all, key_end[k]);
      w[k].batch = b;
      w[k].neg_slope = p_.alibi_slopes ? -static_cast<T>(p_.alibi_slopes[p_.head(b)]) : T(0);
      w[k].sink = p_.sinks ? static_cast<T>(p_.sinks[p_.head(b)]) : -std::numeric_limits<T>::infinity();
    }
    return key_end_all > 0 ? key_begin_all / key_tile_ * key_tile_ : 0;
  }

  // The tile from its key `skip` on (skip even for bf16_dot, whose values are in pairs).
  static KvTile shifted(KvTile tile, Index skip) {
    tile.k += skip * tile.k_row;
    tile.v += (dot ? skip / 2 : skip) * tile.v_row;
    return tile;
  }

  // The n keys and values from `key` on, as the micro-kernels read them: in place, widened
  // to T (rows contiguous), or the values as pairs of consecutive keys (bf16_dot), the
  // second of an odd last pair zero. Once per task, for all of its panels.
  KvTile load_tile(const Offsets& o, Index key, Index n, char* kv) const {
    const KV* k = p_.k + o.k + key * p_.k_row;
    const KV* v = p_.v + o.v + key * p_.v_row;
    if constexpr (Path == FlashPath::direct) {
      return {k, v, p_.k_row, p_.k_col, p_.v_row, p_.v_col};
    } else if constexpr (Path == FlashPath::widened) {
      T* kt = reinterpret_cast<T*>(kv);
      T* vt = reinterpret_cast<T*>(kv + bytes_64(key_tile_ * p_.head_dim * Index(sizeof(T))));
      widen_rows(k, n, p_.head_dim, p_.k_row, p_.k_col, kt);
      widen_rows(v, n, p_.value_dim, p_.v_row, p_.v_col, vt);
      return {kt, vt, p_.head_dim, 1, p_.value_dim, 1};
    } else {
      bfloat16* vt = reinterpret_cast<bfloat16*>(kv);
      pair_rows(v, n, vt);
      return {k, vt, p_.k_row, 1, 2 * p_.value_dim, 2};
    }
  }

  // to[r·cols + c] = from[r·row + c·col], widened to T.
  static void widen_rows(const KV* from, Index rows, Index cols, Index row, Index col, T* to) {
    for (Index r = 0; r < rows; ++r, from += row, to += cols) {
      Index c = 0;
      if (col == 1)
        for (; c + lanes <= cols; c += lanes) simd::pstoreu(to + c, ploadu_widened<P>(from + c));
      for (; c < cols; ++c) to[c] = static_cast<T>(from[c * col]);
    }
  }

  // to[(t·Ev + e)·2 + i] = V[2t + i][e]: values of consecutive keys side by side, the
  // pairs vdpbf16ps reduces along the keys.
  void pair_rows(const KV* v, Index n, KV* to) const {
    const Index ev = p_.value_dim;
    for (Index t = 0; t < n / 2; ++t, to += 2 * ev) {
      const KV* a = v + 2 * t * p_.v_row;
      const KV* b = a + p_.v_row;
      Index e = 0;
#ifdef QKV_BF16_DOT
      if constexpr (dot)
        if (p_.v_col == 1)
          for (; e + 16 <= ev; e += 16) _mm512_storeu_si512(to + 2 * e, pzip_bf16(a + e, b + e));
#endif
      for (; e < ev; ++e) to[2 * e] = a[e * p_.v_col], to[2 * e + 1] = b[e * p_.v_col];
    }
    if (n % 2)
      for (Index e = 0; e < ev; ++e) to[2 * e] = v[(n - 1) * p_.v_row + e * p_.v_col], to[2 * e + 1] = KV(0.0f);
  }

  // 1. Qᵀ, scaled; lanes past the last query row are zero. Row by row along the query's
  // own stride, which the compilers turn into far less set-up code than a column loop
  // (a small panel pays for that set-up, not for the copy). bf16_dot keeps the queries
  // as they are, in pairs along E, and scales the scores instead.
  void pack_queries(const Offsets& o, Index first, Index rows, Packed* qt) const {
    const Index dim = p_.head_dim, col = p_.q_col;
    if (rows < W || dim % pair) std::fill(qt, qt + round_up(dim) * W, Packed(0.0f));
    const Q* q = p_.q + o.q + first * p_.q_row;
    if constexpr (dot) {
      for (Index i = 0; i < rows; ++i, q += p_.q_row)
        for (Index e = 0; e < dim; ++e) qt[(e / 2) * 2 * W + 2 * i + e % 2] = q[e * col];
    } else {
      const T scale = p_.scale;
      for (Index i = 0; i < rows; ++i, q += p_.q_row)
        for (Index e = 0; e < dim; ++e) qt[e * W + i] = static_cast<T>(q[e * col]) * scale;
    }
  }

  // 2a. Pᵀ tile: scores with their masks, exponentiated block by block (2b).
  void scores(const Offsets& o, const KvTile& tile, Index first, Index key, Index n, const Scratch& w) const {
    for (int p = 0; p < NP; ++p) simd::pstore(w.alpha + p * lanes, simd::pset1<P>(T(1)));
    Index j = 0;
    for (; j + R <= n; j += R) score_block<R>(o, tile, first, key + j, j, w);
    score_rest<rest_rows>(o, tile, first, key + j, j, n - j, w);
  }

  // The last count < R rows in blocks of 4, 2 and 1 rows (for R = 8 or 6): three more
  // instantiations of each micro-kernel rather than R − 1, which halves the code a call
  // compiles; `done` stays even up to the last block, as the bf16 pairs need.
  static constexpr int rest_rows = R > 4 ? 4 : R > 2 ? 2 : 1;
  template <int Rows>
  void score_rest(const Offsets& o, const KvTile& tile, Index first, Index key, Index done, Index count,
                  const Scratch& w) const {
    if (count >= Rows) {
      score_block<Rows>(o, tile, first, key, done, w);
      key += Rows, done += Rows, count -= Rows;
    }
    if constexpr (Rows > 1) score_rest<Rows / 2>(o, tile, first, key, done, count, w);
  }

  template <int Rows>
  void score_block(const Offsets& o, const KvTile& tile, Index first, Index key, Index done, const Scratch& w) const {
    P acc[extent<Rows>][extent<NP>];
    const auto* k = tile.k + done * tile.k_row;
    if constexpr (dot) {
#ifdef QKV_BF16_DOT
      pair_block<Rows, NP, false>(acc, k, tile.k_row, 2, w.qt, 2 * W, p_.head_dim / 2);
      const P scale = simd::pset1<P>(p_.scale);
      for (int r = 0; r < Rows; ++r)
        for (int p = 0; p < NP; ++p) acc[r][p] = simd::pmul(acc[r][p], scale);
#endif
    } else {
      outer_block<Rows, NP, false, T>(acc, k, tile.k_row, tile.k_col, w.qt, W, p_.head_dim);
    }
    if constexpr (V::active) {
      modify_scores<Rows>(first, key, w, acc);
      if (p_.mask_kind != MaskKind::none) apply_mask<Rows>(o, first, key, acc);
      hide_outside<Rows>(first, key, w, acc);
      return exponentiate<Rows>(acc, first, done, w);
    }
    if (p_.mask_kind != MaskKind::none) apply_mask<Rows>(o, first, key, acc);
    // Causal: key j is hidden from query lane i when j > first + i + offset.
    const Index diagonal = key + Rows - 1 - first - p_.causal_offset();
    if (p_.causal != Causal::none && diagonal > 0) {
      for (int r = 0; r < Rows; ++r) {
        const T hidden_below = T(key + r - first - p_.causal_offset());  // lanes i < this are hidden
        for (int p = 0; p < NP; ++p) {
          const P lane = simd::padd(simd::plset<P>(T(0)), simd::pset1<P>(T(p * lanes)));
          const P hide = simd::pcmp_lt(lane, simd::pset1<P>(hidden_below));
          acc[r][p] = simd::pselect(hide, simd::pset1<P>(-std::numeric_limits<T>::infinity()), acc[r][p]);
        }
      }
    }
    exponentiate<Rows>(acc, first, done, w);
  }

  // Variants, on the block of scores in registers (lanes: queries first + p·lanes + i,
  // rows: keys key + r): soft-capping cap·tanh(s / cap), the ALiBi bias
  // −slope·|i + offset − j|, then the user's score modifier, lane by lane through memory
  // (a simple modifier's loop vectorises) and only on lanes with a query.
  template <int Rows>
  void modify_scores(Index first, Index key, const Scratch& w, P (&acc)[extent<Rows>][extent<NP>]) const {
    if (p_.softcap > 0) {
      const P cap = simd::pset1<P>(p_.softcap), inv_cap = simd::pset1<P>(T(1) / p_.softcap);
      for (int r = 0; r < Rows; ++r)
        for (int p = 0; p < NP; ++p) acc[r][p] = simd::pmul(cap, ptanh(simd::pmul(acc[r][p], inv_cap)));
    }
    if (p_.alibi_slopes) {
      const P neg_slope = simd::pset1<P>(w.neg_slope), lane = simd::plset<P>(T(0));
      for (int r = 0; r < Rows; ++r)
        for (int p = 0; p < NP; ++p) {
          const P distance = simd::padd(lane, simd::pset1<P>(T(first + p * lanes + vx_.align - key - r)));
          acc[r][p] = simd::pmadd(neg_slope, simd::pabs(distance), acc[r][p]);
        }
    }
    if constexpr (V::has_score) {
      const Index batch = w.batch / p_.num_heads, head = p_.head(w.batch);
      alignas(64) Array<T, lanes> s;
      for (int p = 0; p < NP; ++p) {
        const Index q0 = first + p * lanes, live = std::min<Index>(lanes, p_.query_len - q0);
        if (live <= 0) break;
        for (int r = 0; r < Rows; ++r) {
          simd::pstore(s, acc[r][p]);
          if (live == lanes) {
            for (int i = 0; i < lanes; ++i) s[i] = vx_.variant.score(s[i], batch, head, q0 + i, key + r);
          } else {
            for (Index i = 0; i < live; ++i) s[i] = vx_.variant.score(s[i], batch, head, q0 + i, key + r);
          }
          acc[r][p] = simd::pload<P>(s);
        }
      }
    }
  }

  // Variants: −inf for the keys outside each query's window or causal diagonal, key j
  // being visible from lane i when first + i + lower ≤ j ≤ first + i + upper, and where
  // the user's mask says so on a partly visible tile. Blocks clear of both edges pay two
  // comparisons.
  template <int Rows>
  void hide_outside(Index first, Index key, const Scratch& w, P (&acc)[extent<Rows>][extent<NP>]) const {
    const P neg_inf = simd::pset1<P>(-std::numeric_limits<T>::infinity());
    const Index upper_offset = vx_.upper, lower_offset = vx_.lower;
    const bool upper = key + Rows - 1 - first - upper_offset > 0;  // a key right of some lane's range
    const bool lower = key < first + W - 1 + lower_offset;         // a key left of some lane's range
    if (upper || lower) {
      for (int r = 0; r < Rows; ++r) {
        const T hidden_below = T(key + r - first - upper_offset);  // lanes i < this see no key j
        const T hidden_above = T(key + r - first - lower_offset);  // nor lanes i > this
        for (int p = 0; p < NP; ++p) {
          const P lane = simd::padd(simd::plset<P>(T(0)), simd::pset1<P>(T(p * lanes)));
          P hide = simd::pcmp_lt(lane, simd::pset1<P>(hidden_below));
          if (lower) hide = simd::por(hide, simd::pcmp_lt(simd::pset1<P>(hidden_above), lane));
          acc[r][p] = simd::pselect(hide, neg_inf, acc[r][p]);
        }
      }
    }
    if constexpr (V::has_mask) {
      if (!w.partial) return;
      const Index batch = w.batch / p_.num_heads, head = p_.head(w.batch);
      alignas(64) Array<T, lanes> s;
      for (int p = 0; p < NP; ++p) {
        const Index q0 = first + p * lanes, live = std::min<Index>(lanes, p_.query_len - q0);
        if (live <= 0) break;
        for (int r = 0; r < Rows; ++r) {
          simd::pstore(s, acc[r][p]);
          for (Index i = 0; i < live; ++i)
            if (!vx_.variant.visible(batch, head, q0 + i, key + r)) s[i] = -std::numeric_limits<T>::infinity();
          acc[r][p] = simd::pload<P>(s);
        }
      }
    }
  }

  // Adds the mask: the additive values, or −inf where a boolean mask is false.
  template <int Rows>
  void apply_mask(const Offsets& o, Index first, Index key, P (&acc)[extent<Rows>][extent<NP>]) const {
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    const Index rows = std::min(W, p_.query_len - first);
    alignas(64) Array<T, W> lane_values;
    for (int r = 0; r < Rows; ++r) {
      const Index base = o.mask + first * p_.mask_row + (key + r) * p_.mask_col;
      if (p_.mask_kind == MaskKind::boolean) {
        for (Index i = 0; i < rows; ++i) lane_values[i] = p_.bool_mask[base + i * p_.mask_row] ? T(0) : neg_inf;
      } else {
        for (Index i = 0; i < rows; ++i) lane_values[i] = static_cast<T>(p_.additive_mask[base + i * p_.mask_row]);
      }
      std::fill(lane_values + rows, lane_values + W, T(0));
      for (int p = 0; p < NP; ++p) acc[r][p] = simd::padd(acc[r][p], simd::pload<P>(lane_values + p * lanes));
    }
  }

  // 2b. Online softmax, on the block of scores still in registers: Pᵀ = e^(Sᵀ − m), l += Σ Pᵀ.
  // The reference m is raised only when a score exceeds it by more than max_growth
  // (lazily, as FlashAttention-4): then α = e^(m − m') rescales l, the block rows already
  // written in this tile and, through `alpha`, Oᵀ. The first block of a row always raises
  // it; later ones rarely do, so the tile costs no separate pass over Sᵀ for its maximum.
  // For 16-bit inputs Pᵀ is stored rounded to their type and l sums it unrounded, as
  // PyTorch's kernel does.
  template <int Rows>
  void exponentiate(P (&acc)[extent<Rows>][extent<NP>], Index first, Index done, const Scratch& w) const {
    const Index live = (std::min(W, p_.query_len - first) + lanes - 1) / lanes;  // packets with rows
    for (int p = 0; p < NP; ++p) {
      if (p >= live) {  // past the last query (a short last panel): zeros for the P·V product
        for (int r = 0; r < Rows; ++r) acc[r][p] = simd::pset1<P>(T(0));
        continue;
      }
      P block_max = acc[0][p];
      for (int r = 1; r < Rows; ++r) block_max = simd::pmax(block_max, acc[r][p]);
      P m = simd::pload<P>(w.m + p * lanes);
      if (simd::predux_any(simd::pcmp_lt(simd::padd(m, simd::pset1<P>(T(max_growth))), block_max)))
        m = raise_reference(p, m, block_max, done, w);
      const P m_safe = finite_reference(m);
      P sum = simd::pload<P>(w.l + p * lanes);
      for (int r = 0; r < Rows; ++r) {
        acc[r][p] = pexp_clamped(simd::psub(acc[r][p], m_safe));
        sum = simd::padd(sum, acc[r][p]);
      }
      simd::pstore(w.l + p * lanes, sum);
    }
    store_probabilities<Rows>(acc, done, w.st);
  }

  // Pᵀ rows [done, done + Rows) of the tile.
  template <int Rows>
  void store_probabilities(const P (&e)[extent<Rows>][extent<NP>], Index done, Packed* st) const {
    if constexpr (dot) {
#ifdef QKV_BF16_DOT
      Packed* to = st + done * W;  // pairs of rows: `done` is even
      for (int r = 0; r < Rows; r += 2, to += 2 * W)
        for (int p = 0; p < NP; ++p)
          _mm512_store_si512(to + p * 32, pinterleave_bf16(e[r][p], r + 1 < Rows ? e[r + 1][p] : simd::pset1<P>(0.0f)));
#endif
    } else {
      for (int r = 0; r < Rows; ++r)
        for (int p = 0; p < NP; ++p) simd::pstore(st + (done + r) * W + p * lanes, pround_to<Q>(e[r][p]));
    }
  }

  // m, or 0 in the lanes of rows that have seen no visible key (m = −inf): scores are taken
  // relative to it, and −inf − (−inf) would be NaN.
  static P finite_reference(const P& m) {
    const P neg_inf = simd::pset1<P>(-std::numeric_limits<T>::infinity());
    return simd::pselect(simd::pcmp_eq(m, neg_inf), simd::pset1<P>(T(0)), m);
  }

  // m' = max(m, block maximum) for packet p of the panel; returns m'.
  P raise_reference(int p, const P& m, const P& block_max, Index done, const Scratch& w) const {
    const P neg_inf = simd::pset1<P>(-std::numeric_limits<T>::infinity());
    const P m_new = simd::pmax(m, block_max);
    // While every row has seen only hidden keys, l, Oᵀ and the tile's rows are all zero.
    if (simd::predux_any(simd::pcmp_lt(neg_inf, m))) {
      const P alpha = pexp_clamped(simd::psub(m, finite_reference(m_new)));
      rescale_probabilities(p, alpha, done, w.st);
      simd::pstore(w.l + p * lanes, simd::pmul(simd::pload<P>(w.l + p * lanes), alpha));
      simd::pstore(w.alpha + p * lanes, simd::pmul(simd::pload<P>(w.alpha + p * lanes), alpha));
    }
    simd::pstore(w.m + p * lanes, m_new);
    return m_new;
  }

  // Pᵀ rows [0, done) of packet p times α.
  void rescale_probabilities(int p, const P& alpha, Index done, Packed* st) const {
    if constexpr (dot) {
#ifdef QKV_BF16_DOT
      for (Index j = 0; j < done; j += 2) {
        Packed* at = st + j * W + p * 32;
        P first, second;
        psplit_bf16(_mm512_load_si512(at), first, second);
        _mm512_store_si512(at, pinterleave_bf16(simd::pmul(first, alpha), simd::pmul(second, alpha)));
      }
#endif
    } else {
      T* at = st + p * lanes;
      for (Index j = 0; j < done; ++j)
        simd::pstore(at + j * W, pround_to<Q>(simd::pmul(simd::pload<P>(at + j * W), alpha)));
    }
  }

  // 2c. Oᵀ = α·Oᵀ + Vᵀ_tile·Pᵀ, R value columns at a time.
  void accumulate(const KvTile& tile, Index n, const Scratch& w) const {
    P alpha[extent<NP>];
    for (int p = 0; p < NP; ++p) alpha[p] = simd::pload<P>(w.alpha + p * lanes);
    Index e = 0;
    for (; e + R <= p_.value_dim; e += R) value_block<R>(tile, e, n, alpha, w);
    value_rest<rest_rows>(tile, e, n, alpha, w);
  }

  template <int Rows>
  void value_rest(const KvTile& tile, Index e, Index n, const P (&alpha)[extent<NP>], const Scratch& w) const {
    if (p_.value_dim - e >= Rows) {
      value_block<Rows>(tile, e, n, alpha, w);
      e += Rows;
    }
    if constexpr (Rows > 1) value_rest<Rows / 2>(tile, e, n, alpha, w);
  }

  template <int Rows>
  void value_block(const KvTile& tile, Index e, Index n, const P (&alpha)[extent<NP>], const Scratch& w) const {
    P acc[extent<Rows>][extent<NP>];
    if constexpr (dot) {
#ifdef QKV_BF16_DOT
      pair_block<Rows, NP, true>(acc, tile.v + 2 * e, 2, tile.v_row, w.st, 2 * W, (n + 1) / 2);
#endif
    } else if (tile.v_col == 1) {
      outer_block<Rows, NP, true, T>(acc, tile.v + e, 1, tile.v_row, w.st, W, n);
    } else {
      outer_block<Rows, NP, false, T>(acc, tile.v + e * tile.v_col, tile.v_col, tile.v_row, w.st, W, n);
    }
    for (int r = 0; r < Rows; ++r) {
      T* ot = w.ot + (e + r) * W;
      for (int p = 0; p < NP; ++p)
        simd::pstore(ot + p * lanes, simd::pmadd(simd::pload<P>(ot + p * lanes), alpha[p], acc[r][p]));
    }
  }

  // 3. O = Oᵀ / l, transposed into the caller's layout (and type); rows that saw no key
  // are zeros.
  void store(const Offsets& o, Index first, Index rows, const Scratch& w) const {
    Q* out = p_.out + o.out + first * p_.out_row;
    for (Index i = 0; i < rows; ++i) {
      // (A row whose visible scores are all NaN also keeps m = −inf, but its l is NaN.)
      const bool hidden = w.m[i] == -std::numeric_limits<T>::infinity() && !std::isnan(w.l[i]);
      T inv_l = hidden ? T(0) : T(1) / w.l[i];
      if constexpr (V::active)
        if (!hidden && p_.sinks) inv_l = sink_share(w.m[i], w.l[i], w.sink) / w.l[i];
      Q* row = out + i * p_.out_row;
      const T* ot = w.ot + i;
      for (Index e = 0, dim = p_.value_dim, col = p_.out_col; e < dim; ++e)
        row[e * col] = static_cast<Q>(ot[e * W] * inv_l);
    }
  }

  // log l + m per row; −inf where no key was visible.
  void store_logsumexp(Index b, Index first, Index rows, const Scratch& w) const {
    T* lse = p_.logsumexp + b * p_.query_len + first;
    for (Index i = 0; i < rows; ++i) {
      const bool hidden = w.m[i] == -std::numeric_limits<T>::infinity() && !std::isnan(w.l[i]);
      lse[i] = hidden ? -std::numeric_limits<T>::infinity() : w.m[i] + std::log(w.l[i]);
      if constexpr (V::active)
        if (!hidden && p_.sinks) lse[i] -= std::log(sink_share(w.m[i], w.l[i], w.sink));
    }
  }

  // l / (l + e^(σ − m)): the share of a row's softmax that its keys keep beside the sink σ
  // (m the row's reference, l its sum relative to m). Computed relative to max(m, σ), so
  // that a sink far above the scores gives 0 rather than ∞/∞.
  static T sink_share(T m, T l, T sink) {
    const T top = std::max(m, sink);
    const T kept = l * std::exp(m - top);
    return kept / (kept + std::exp(sink - top));
  }

  const Problem& p_;
  Index key_tile_;
  Index panels_;
  Index group_;   // query panels per task
  Index groups_;  // tasks per batch element
  CallData vx_;   // variants only; last, so that the plain kernel's members keep their offsets
};

template <class Q, class KV, FlashPath Path, int NP, class V>
void run_flash_attention(const AttentionProblem<Q, KV>& p, AttentionWorkspace* workspace, const V& variant) {
  const FlashAttention<Q, KV, Path, NP, V> kernel(p, get_num_threads(), variant);
  const std::size_t bytes = kernel.scratch_bytes();
  parallel_for(kernel.tasks(), p.flops(), workspace, bytes,
               [&](std::ptrdiff_t task, void* scratch) { kernel.run_task(task, scratch); });
}

template <class Q, class KV, FlashPath Path, class V>
void run_flash_attention(const AttentionProblem<Q, KV>& p, AttentionWorkspace* workspace, const V& variant) {
  using T = compute_t<Q>;
  if (p.query_len <= FlashBlocking<T>::lanes) run_flash_attention<Q, KV, Path, 1>(p, workspace, variant);
  else run_flash_attention<Q, KV, Path, FlashBlocking<T>::packets>(p, workspace, variant);
}

/// Runs the fused kernel over every (batch, query panel) task. Up to one packet of queries,
/// panels one packet wide do half the work of FlashBlocking's on lanes without a query.
/// (Each lane's arithmetic is the same in both, so the results are too.) bfloat16 inputs
/// take vdpbf16ps where the target has it, QKV_BF16_DOT_PREFILL chooses it, and the keys'
/// rows are contiguous pairs along E.
/// `variant` is the policy: NoVariant (plain attention) or a Variant, each its own kernel.
template <class Q, class KV, class V = NoVariant>
void flash_attention(const AttentionProblem<Q, KV>& p, AttentionWorkspace* workspace, const V& variant = {}) {
  if constexpr (std::is_same_v<KV, compute_t<Q>>) {
    run_flash_attention<Q, KV, FlashPath::direct>(p, workspace, variant);
  } else {
#ifdef QKV_BF16_DOT
    if constexpr (std::is_same_v<Q, bfloat16> && std::is_same_v<KV, bfloat16>) {
      const int forced = kernel_config().bf16_dot;
      const bool dot = forced < 0 ? QKV_BF16_DOT_PREFILL != 0 : forced != 0;
      if (dot && p.k_col == 1 && p.head_dim % 2 == 0)
        return run_flash_attention<Q, KV, FlashPath::bf16_dot>(p, workspace, variant);
    }
#endif
    run_flash_attention<Q, KV, FlashPath::widened>(p, workspace, variant);
  }
}

}  // namespace qkv::detail
