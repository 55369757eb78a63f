// SPDX-License-Identifier: MIT
// The decode kernel: a few query rows against a long key/value cache (L ≤ 4, S large).
//
// Decoding is memory-bound: each K and V element is used by only L·(query heads per
// key/value head) rows, so the time is that of reading K and V once. The keys are split
// into fixed chunks of C keys, and every (key/value head, chunk) is a task, so that one
// query row still uses every core:
//   1. Per task and row: s_j = q·k_j·scale (+ mask) for the chunk's visible keys,
//      m = max s_j, p_j = e^(s_j − m), l = Σ p_j, o = Σ p_j·v_j — K, then V, read at full
//      vector width along E, each as 4 interleaved runs of keys (the chunk's quarters).
//      The query heads sharing the key/value head (GQA) run in the same task, so the
//      chunk is read from memory once and from cache after that.
//   2. Per row: combine the chunks by their log-sum-exp, M = max m_c,
//      out = Σ e^(m_c − M)·o_c / Σ e^(m_c − M)·l_c, in chunk order.
// C does not depend on the thread count, nor does the order of any sum, so results are
// bitwise identical for any thread count. Memory: (Ev + 2) partial values per row and
// chunk, plus C scores per thread. A row that may see no key gives zeros. A 16-bit cache
// is read as it is, half the bytes of float, and widened to float in registers.
// Variants (attention_variant.hpp) modify the chunk's scores in packets before the masks;
// with a window the chunks start at the first key any row sees, so only the keys of the
// window are read; a sink joins the denominator when the chunks are combined.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "attention_problem.hpp"
#include "attention_variant.hpp"
#include "naive_attention.hpp"
#include "packet_math.hpp"
#include "../parallel.hpp"

namespace qkv::detail {

template <class Q, class KV, class V = NoVariant>
class SplitKeyDecode {
  using T = compute_t<Q>;
  using P = Packet<T>;
  using Problem = AttentionProblem<Q, KV>;
  using Offsets = typename Problem::Offsets;
  static constexpr int lanes = packet_size<T>;
  // Accumulators of o per pass over the chunk: 16 packets make E = 128 one pass over whole
  // V rows on AVX2, at the price of about one spilled register; two passes over half rows
  // streamed 10-25 % slower on a Zen 1.
  static constexpr int value_packets = 16;
  static constexpr int streams = 4;        // runs of keys read at once
  static constexpr bool by_parity = widens_pairs_by_parity<P, KV>;

 public:
  SplitKeyDecode(const Problem& p, Index chunk, const V& variant = {})
      : p_(p), chunk_(chunk),
        key_end_(p.query_len <= 0 ? 0 : V::active ? p.key_end(p.query_len - 1) : p.visible_keys(p.query_len - 1)),
        chunks_(std::max<Index>((key_end_ - key_begin(p) + chunk - 1) / chunk, 1)),
        group_(p.head_axis >= 0 ? p.gqa_group : 1), vx_{variant, key_begin(p)} {}

  Index tasks() const noexcept { return p_.batch_count() / group_ * chunks_; }
  Index rows() const noexcept { return p_.batch_count() * p_.query_len; }
  Index chunks() const noexcept { return chunks_; }
  std::size_t partial_bytes() const noexcept {
    return sizeof(T) * static_cast<std::size_t>(rows() * chunks_ * partial_size());
  }
  std::size_t scratch_bytes() const noexcept {
    return sizeof(T) * static_cast<std::size_t>(round_up(p_.head_dim) + round_up(chunk_));
  }

  // 1. Task = (key/value head, chunk): partial softmax of every row of the group's heads.
  void run_task(Index task, T* partial, T* scratch) const {
    const Index chunk = task % chunks_;
    const Index group = task / chunks_;
    T* q = scratch;
    T* scores = scratch + round_up(p_.head_dim);
    for (Index h = 0; h < group_; ++h) {
      const Index b = group * group_ + h;
      const auto o = p_.offsets(b);
      for (Index i = 0; i < p_.query_len; ++i) {
        T* part = partial + ((b * p_.query_len + i) * chunks_ + chunk) * partial_size();
        if constexpr (V::active) {
          // Chunks from the first key any row sees; each row reads its window's keys only.
          const Index first = chunk * chunk_ + vx_.key_begin;
          const Index last = std::min(first + chunk_, p_.key_end(i));
          chunk_softmax(BatchOffsets{o, b}, i, std::max(first, p_.key_begin(i)), last, q, scores, part);
        } else {
          const Index first = chunk * chunk_;
          const Index last = std::min(first + chunk_, p_.visible_keys(i));
          chunk_softmax(o, i, first, last, q, scores, part);
        }
      }
    }
  }

  // 2. Row r of the output from its chunks. Each chunk's m is replaced by its weight
  // e^(m_c − M) (the row's partials are its own), then each output element is summed over
  // the chunks in order and written once, in the output's type.
  void combine(Index r, T* partial) const {
    const Index b = r / p_.query_len, i = r % p_.query_len;
    T* part = partial + r * chunks_ * partial_size();
    T m = -std::numeric_limits<T>::infinity();
    for (Index c = 0; c < chunks_; ++c) m = nan_max(m, part[c * partial_size()]);
    Q* out = p_.out + p_.offsets(b).out + i * p_.out_row;
    if (m == -std::numeric_limits<T>::infinity()) {
      for (Index e = 0; e < p_.value_dim; ++e) out[e * p_.out_col] = Q(0.0f);
      if (p_.logsumexp) p_.logsumexp[r] = m;
      return;
    }
    T l = 0;
    if constexpr (V::active) {
      // A sink σ: the chunks are weighed relative to max(M, σ), and e^σ joins l.
      if (p_.sinks) {
        const T sink = static_cast<T>(p_.sinks[p_.head(b)]);
        m = std::max(m, sink);
        l = exp_clamped(sink - m);
      }
    }
    for (Index c = 0; c < chunks_; ++c) {
      T* pc = part + c * partial_size();
      pc[0] = pc[0] == -std::numeric_limits<T>::infinity() ? T(0) : exp_clamped(pc[0] - m);
      l += pc[0] * pc[1];
    }
    const T inv_l = T(1) / l;
    if (p_.logsumexp) p_.logsumexp[r] = m + std::log(l);
    for (Index e = 0; e < p_.value_dim; ++e) {
      T sum = 0;
      for (Index c = 0; c < chunks_; ++c) {
        const T* pc = part + c * partial_size();
        if (pc[0] != T(0)) sum += pc[0] * pc[2 + e];
      }
      out[e * p_.out_col] = static_cast<Q>(sum * inv_l);
    }
  }

 private:
  // The maximum, or NaN once either is NaN: a NaN score must reach the output, as it does
  // in PyTorch, not be dropped by the comparison.
  static T nan_max(T m, T x) noexcept { return std::isnan(m) || x <= m ? m : x; }

  Index partial_size() const noexcept { return p_.value_dim + 2; }  // m, l, o[Ev]
  static Index round_up(Index n) noexcept { return (n + 15) / 16 * 16; }

  // b, the batch element, matters to variants only.
  // Variants also need the batch element: they pass its offsets as a BatchOffsets. (Plain
  // calls keep today's signature, an extra argument changes how the compilers inline it.)
  struct BatchOffsets : Offsets {
    Index b;
  };

  template <class O>
  void chunk_softmax(const O& o, Index i, Index first, Index last, T* q, T* scores, T* part) const {
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    part[0] = neg_inf, part[1] = T(0);
    std::fill(part + 2, part + partial_size(), T(0));
    if (last <= first) return;
    const Index n = last - first;
    const Q* qi = p_.q + o.q + i * p_.q_row;
    for (Index e = 0; e < p_.head_dim; ++e) q[e] = static_cast<T>(qi[e * p_.q_col]) * p_.scale;
    if constexpr (by_parity) permute_by_parity(q);
    // The keys in `streams` interleaved runs (the quarters of the chunk): one stream alone
    // leaves part of a core's memory parallelism unused, as a single reader of memory does.
    const Index run = n / streams;
    for (Index j = 0; j < run; ++j) {
      const KV* k = p_.k + o.k + (first + j) * p_.k_row;
      dots<streams>(q, k, run * p_.k_row, scores + j, run);
    }
    for (Index j = streams * run; j < n; ++j) dots<1>(q, p_.k + o.k + (first + j) * p_.k_row, 0, scores + j, 0);
    if constexpr (V::active) modify_scores(o.b, i, first, n, scores);
    T m = neg_inf;
    for (Index j = 0; j < n; ++j) {
      T s = scores[j];
      if (p_.mask_kind != MaskKind::none) {
        const Index at = o.mask + i * p_.mask_row + (first + j) * p_.mask_col;
        if (p_.mask_kind == MaskKind::boolean) s = p_.bool_mask[at] ? s : neg_inf;
        else s += static_cast<T>(p_.additive_mask[at]);
      }
      if constexpr (V::has_mask)
        if (!vx_.variant.visible(o.b / p_.num_heads, p_.head(o.b), i, first + j)) s = neg_inf;
      scores[j] = s;
      m = nan_max(m, s);
    }
    part[0] = m;
    if (m == neg_inf) return;
    part[1] = exponentiate(scores, n, m);
    weighted_values(o, first, n, scores, part + 2);
  }

  // Variants: scores[j] (key first + j, query i of batch element b) soft-capped, biased by
  // ALiBi, then given to the user's modifier; in packets where the formula allows.
  void modify_scores(Index b, Index i, Index first, Index n, T* scores) const {
    Index j = 0;
    if (p_.softcap > 0) {
      const P cap = simd::pset1<P>(p_.softcap), inv_cap = simd::pset1<P>(T(1) / p_.softcap);
      for (; j + lanes <= n; j += lanes)
        simd::pstore(scores + j, simd::pmul(cap, ptanh(simd::pmul(simd::pload<P>(scores + j), inv_cap))));
      for (; j < n; ++j) scores[j] = p_.softcap * std::tanh(scores[j] / p_.softcap);
    }
    if (p_.alibi_slopes) {
      // −slope·|i + offset − (first + j)|, the distance falling by one per key.
      const P neg_slope = simd::pset1<P>(-static_cast<T>(p_.alibi_slopes[p_.head(b)]));
      const P step = simd::pset1<P>(T(lanes)), lane = simd::plset<P>(T(0));
      const Index start = i + p_.alignment_offset() - first;
      P distance = simd::psub(simd::pset1<P>(T(start)), lane);
      for (j = 0; j + lanes <= n; j += lanes, distance = simd::psub(distance, step))
        simd::pstore(scores + j, simd::pmadd(neg_slope, simd::pabs(distance), simd::pload<P>(scores + j)));
      for (; j < n; ++j) {
        const Index d = start - j;
        scores[j] -= static_cast<T>(p_.alibi_slopes[p_.head(b)]) * static_cast<T>(d < 0 ? -d : d);
      }
    }
    if constexpr (V::has_score) {
      const Index batch = b / p_.num_heads, head = p_.head(b);
      for (j = 0; j < n; ++j) scores[j] = vx_.variant.score(scores[j], batch, head, i, first + j);
    }
  }

  // out[s·out_step] = q·k_s for the N keys k_s = k + s·k_step.
  template <int N>
  void dots(const T* q, const KV* k, Index k_step, T* out, Index out_step) const {
    const Index n = p_.head_dim;
    Index e = 0;
    Array<T, N> sum = {};
    if (p_.k_col == 1 && lanes > 1) {
      P acc[extent<N>];
      for (int s = 0; s < N; ++s) acc[s] = simd::pset1<P>(T(0));
      for (; e + 2 * lanes <= n; e += 2 * lanes) {
        const P x0 = simd::pload<P>(q + e), x1 = simd::pload<P>(q + e + lanes);
        for (int s = 0; s < N; ++s) {
          P k0, k1;
          ploadu_widened_pair(k + s * k_step + e, k0, k1);
          acc[s] = simd::pmadd(x1, k1, simd::pmadd(x0, k0, acc[s]));
        }
      }
      for (; e + lanes <= n; e += lanes) {
        const P x = simd::pload<P>(q + e);
        for (int s = 0; s < N; ++s) acc[s] = simd::pmadd(x, ploadu_widened<P>(k + s * k_step + e), acc[s]);
      }
      for (int s = 0; s < N; ++s) sum[s] = simd::predux(acc[s]);
    }
    for (int s = 0; s < N; ++s) {
      for (Index r = e; r < n; ++r) sum[s] += q[r] * static_cast<T>(k[s * k_step + r * p_.k_col]);
      out[s * out_step] = sum[s];
    }
  }

  // scores[j] = e^(scores[j] − m); returns their sum. For 16-bit inputs the weights are
  // stored rounded to that type (PyTorch's P for the product with V), the sum unrounded.
  static T exponentiate(T* scores, Index n, T m) {
    const P mp = simd::pset1<P>(m);
    P sum = simd::pset1<P>(T(0));
    Index j = 0;
    for (; j + lanes <= n; j += lanes) {
      const P e = pexp_clamped(simd::psub(simd::pload<P>(scores + j), mp));
      simd::pstore(scores + j, pround_to<Q>(e));
      sum = simd::padd(sum, e);
    }
    T total = lanes > 1 ? simd::predux(sum) : simd::pfirst(sum);
    for (; j < n; ++j) {
      const T e = exp_clamped(scores[j] - m);
      total += e;
      scores[j] = round_to<Q>(e);
    }
    return total;
  }

  // acc[e] = Σ_j weights[j]·v_j[e], `value_packets` packets of e per pass over the keys.
  void weighted_values(const Offsets& o, Index first, Index n, const T* weights, T* acc) const {
    const KV* v = p_.v + o.v + first * p_.v_row;
    Index e = 0;
    if (p_.v_col == 1 && lanes > 1) {
      for (; e + value_packets * lanes <= p_.value_dim; e += value_packets * lanes) values_block<value_packets>(v + e, n, weights, acc + e);
      if (e + value_packets / 2 * lanes <= p_.value_dim) {
        values_block<value_packets / 2>(v + e, n, weights, acc + e);
        e += value_packets / 2 * lanes;
      }
      for (; e + lanes <= p_.value_dim; e += lanes) values_block<1>(v + e, n, weights, acc + e);
    }
    for (; e < p_.value_dim; ++e)
      for (Index j = 0; j < n; ++j) acc[e] += weights[j] * static_cast<T>(v[j * p_.v_row + e * p_.v_col]);
  }

  // The keys in `streams` interleaved runs, as for K.
  template <int Packets>
  void values_block(const KV* v, Index n, const T* weights, T* acc) const {
    P sum[extent<Packets>];
    for (int p = 0; p < Packets; ++p) sum[p] = simd::pset1<P>(T(0));
    const Index run = n / streams, run_step = run * p_.v_row;
    for (Index j = 0; j < run; ++j) {
      const KV* vj = v + j * p_.v_row;
      for (int s = 0; s < streams; ++s) add_weighted<Packets>(sum, weights[j + s * run], vj + s * run_step);
    }
    for (Index j = streams * run; j < n; ++j) add_weighted<Packets>(sum, weights[j], v + j * p_.v_row);
    store_block<Packets>(sum, acc);
  }

  // sum += w·v for Packets packets of v, two at a time.
  template <int Packets>
  static void add_weighted(P (&sum)[extent<Packets>], T weight, const KV* v) {
    const P w = simd::pset1<P>(weight);
    int p = 0;
    for (; p + 1 < Packets; p += 2) {
      P v0, v1;
      ploadu_widened_pair(v + p * lanes, v0, v1);
      sum[p] = simd::pmadd(w, v0, sum[p]);
      sum[p + 1] = simd::pmadd(w, v1, sum[p + 1]);
    }
    if (p < Packets) sum[p] = simd::pmadd(w, ploadu_widened<P>(v + p * lanes), sum[p]);
  }

  // acc = sum, its pairs of packets back in order where they were loaded by parity.
  template <int Packets>
  static void store_block(const P (&sum)[extent<Packets>], T* acc) {
    int p = 0;
    if constexpr (by_parity) {
      for (; p + 1 < Packets; p += 2) {
        EIGEN_ALIGN64 Array<T, 2 * lanes> parts;
        simd::pstore(parts, sum[p]);
        simd::pstore(parts + lanes, sum[p + 1]);
        for (int i = 0; i < lanes; ++i) acc[p * lanes + 2 * i] = parts[i], acc[p * lanes + 2 * i + 1] = parts[lanes + i];
      }
    }
    for (; p < Packets; ++p) simd::pstoreu(acc + p * lanes, sum[p]);
  }

  // q's whole blocks of 2·lanes as their even, then their odd elements: the order in which
  // ploadu_widened_pair delivers bfloat16 keys.
  void permute_by_parity(T* q) const {
    EIGEN_ALIGN64 Array<T, 2 * lanes> block;
    for (Index e = 0; e + 2 * lanes <= p_.head_dim; e += 2 * lanes) {
      std::copy(q + e, q + e + 2 * lanes, block);
      for (int i = 0; i < lanes; ++i) q[e + i] = block[2 * i], q[e + lanes + i] = block[2 * i + 1];
    }
  }

  // The first key any row sees: 0, or the window's left side.
  static Index key_begin(const Problem& p) noexcept {
    if constexpr (V::active) return p.query_len > 0 ? std::min(p.key_begin(0), p.key_end(p.query_len - 1)) : 0;
    else return 0;
  }

  // Variants only, empty otherwise: the policy and the first key any row sees.
  struct NoCallVariant {
    NoCallVariant(const V&, Index) {}
  };
  struct CallVariant {
    V variant;
    Index key_begin;
  };

  const Problem& p_;
  Index chunk_;
  Index key_end_;
  Index chunks_;
  Index group_;
  std::conditional_t<V::active, CallVariant, NoCallVariant> vx_;  // last: the plain members keep their offsets
};

/// Runs the split-key decode kernel: partial softmaxes per chunk, then their combination.
template <class Q, class KV, class V = NoVariant>
void split_key_decode(const AttentionProblem<Q, KV>& p, Index chunk, AttentionWorkspace* workspace,
                      const V& variant = {}) {
  using T = compute_t<Q>;
  const SplitKeyDecode<Q, KV, V> kernel(p, chunk, variant);
  T* partial = static_cast<T*>(call_scratch(workspace, kernel.partial_bytes()));
  const std::size_t bytes = kernel.scratch_bytes();
  parallel_for(kernel.tasks(), p.flops(), workspace, bytes, [&](std::ptrdiff_t task, void* scratch) {
    kernel.run_task(task, partial, static_cast<T*>(scratch));
  });
  const double combine_flops = 2.0 * double(kernel.rows()) * double(kernel.chunks()) * double(p.value_dim);
  parallel_for(kernel.rows(), combine_flops, workspace, 0, [&](std::ptrdiff_t r, void*) { kernel.combine(r, partial); });
}

}  // namespace qkv::detail
