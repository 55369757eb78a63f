// SPDX-License-Identifier: MIT
// The fused attention backward kernel: FlashAttention-2's backward pass for CPUs, on the
// forward kernel's register-blocked micro-kernel (outer_block, FlashBlocking) and its
// exponential (pexp_clamped). It computes what the formulas below compute with P
// materialised, without the L×S matrix.
//
// Shapes (per batch/head element): Q (L, E), K (S, E), V (S, Ev), O and dO (L, Ev), the
// forward's log-sum-exp lse (L); the gradients dQ (L, E), dK (S, E), dV (S, Ev). Any
// strides. With s = scale:
//   P = e^(s·Q·Kᵀ + mask − lse)        (recomputed, never stored whole)
//   D = rowsum(dO ∘ O)                  (= rowsum(P ∘ dP): the softmax's Jacobian term)
//   dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ∘ (dP − D),  dQ = s·dS·K,  dK = s·dSᵀ·Q
//
// Algorithm. Keys are cut into chunks (a task each, with every query), chunks into blocks
// of keys that fit L2 with their gradients, blocks into tiles of T_k keys. Queries are cut
// into panels of W = FlashBlocking's packets·lanes rows, held transposed in the lanes as
// in the forward. A task (a group of query heads sharing one K/V head × a chunk):
//   1. For each block of the chunk: pack K_b, V_b (rows padded to whole packets), set
//      dK_b = dV_b = 0.
//   2. For each query head of the group, in order, and each query panel that sees some
//      key of the block (causal: the panels at and below the block's diagonal):
//      pack s·Qᵀ (E, W), s·Q (W, E), dOᵀ (Ev, W), dO (W, Ev), lse and D per lane.
//      For each tile of the block the panel can see:
//      a. Sᵀ (T_k, W) = K_tile·(s·Qᵀ), register blocks of R keys × W queries as in the
//         forward, masks added there; Pᵀ = e^(Sᵀ − lse) while the block is in registers.
//      b. dPᵀ = V_tile·dOᵀ, the same blocks; dSᵀ = Pᵀ ∘ (dPᵀ − D) in registers.
//      c. dV_tile += Pᵀ·dO and dK_tile += dSᵀ·(s·Q): R keys × packets of E, each step one
//         element of Pᵀ (dSᵀ) broadcast against packets of a row of dO (s·Q).
//      d. dQ_panel += dS·K_tile: R queries × packets of E, each step one element of dSᵀ
//         broadcast against a row of K_tile, into this chunk's dQ partial.
//   3. Write dK_b, dV_b to the caller's strides (or, when key/value broadcasting makes
//      several groups share one gradient row, to the group's own rows, summed afterwards
//      in group order).
//   4. After all tasks: dQ = s · Σ_chunks dQ partial, chunks in ascending order.
// Every product is outer_block, the forward's micro-kernel; there is no second family.
//
// A row that may see no key has lse = −inf: it is taken as +inf here, so that its P is
// e^(−inf) = 0 (never −inf − (−inf) = NaN), its dS is 0, its dQ is 0, and its keys get
// nothing from it. No gradient flows into a mask (it is an input only).
//
// FLOPs: 2·L·S·(E + Ev) for Sᵀ and dPᵀ, as much again for dV, dK and dQ minus 2·L·S·Ev:
// 2·L·S·(3E + 2Ev), 10·L·S·E when Ev = E (2.5× the forward's 4·L·S·E, FlashAttention-2's
// convention), half with causal masking, plus O(L·S) for the exponentials.
// Memory: per thread the packed K/V block and its dK/dV (4·block·E elements, ~half of L2),
// one panel's packed Q and dO (4·W·E) and two W × T_k tiles — never L × S; per call the
// dQ partials, chunks·L·E (chunks ≤ 8, 1 when there are ≥ 16 head groups) — O(L·E).
// Threads: tasks are (chunk × head group), chunk 0 first (under causal masking it sees
// the most queries), handed out dynamically by parallel_for. The chunk size follows from
// S and the number of head groups only, and the reduction of step 4 sums the chunks in a
// fixed order, so no sum depends on which thread ran what: results are bitwise identical
// for any thread count. dK and dV of a group's heads are summed in head order in a task.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <map>
#include <type_traits>
#include <utility>
#include <vector>

#include "../kernel.hpp"
#include "../parallel.hpp"
#include "attention_problem.hpp"
#include "packet_math.hpp"

namespace qkv::detail {

/// Tunables of the backward kernel, settable by tests to force small chunks and blocks
/// (tiles follow kernel_config().key_tile, as in the forward).
struct BackwardConfig {
  Index key_chunk = 0;  // keys per task; 0 = from S and the number of head groups
  Index key_block = 0;  // keys packed at a time within a chunk; 0 = from the L2 size
};

inline BackwardConfig& backward_config() {
  static BackwardConfig config;
  return config;
}

/// A strided (batch..., rows, cols) operand of the backward pass beside AttentionProblem:
/// `batch` has one stride per dimension of the query's batch shape (0 where it broadcasts).
template <class T>
struct StridedOperand {
  T* data = nullptr;
  Strides batch;
  Index row = 0, col = 0;
};

/// One validated backward call: the forward's problem (q, k, v, mask, scale, causal),
/// the forward's output and log-sum-exp, the incoming gradient, and where the gradients go.
template <class T>
struct BackwardProblem {
  AttentionProblem<T> p;
  StridedOperand<const T> out, grad_out;
  const T* logsumexp = nullptr;  // contiguous (batch..., L)
  StridedOperand<T> grad_q, grad_k, grad_v;  // grad_k, grad_v: the key's and value's strides

  /// Element offset of batch element b in `x`; `kv` maps query heads onto key/value heads.
  template <class U>
  Index offset(const StridedOperand<U>& x, Index b, bool kv) const noexcept {
    Index o = 0;
    for (int d = p.batch.rank() - 1; d >= 0; --d) {
      const Index i = b % p.batch[d];
      b /= p.batch[d];
      o += (kv && d == p.head_axis ? i / p.gqa_group : i) * x.batch[d];
    }
    return o;
  }
};

template <class T>
class FlashBackward {
  using P = Packet<T>;
  using B = FlashBlocking<T>;
  static constexpr int R = B::rows, NP = B::packets, lanes = B::lanes;
  static constexpr Index W = B::width;
  using Offsets = typename AttentionProblem<T>::Offsets;

 public:
  explicit FlashBackward(const BackwardProblem<T>& bp) : bp_(bp), p_(bp.p) {
    e_pad_ = pad(p_.head_dim);
    ev_pad_ = pad(p_.value_dim);
    panels_ = (p_.query_len + W - 1) / W;
    group_heads();
    tile_ = kernel_config().key_tile > 0 ? kernel_config().key_tile : flash_key_tile<T, W>(p_.head_dim, p_.value_dim);
    chunk_ = chunk_keys();
    chunks_ = p_.key_len == 0 ? 0 : (p_.key_len + chunk_ - 1) / chunk_;
    block_ = std::min(chunk_, block_keys());
  }

  Index tasks() const noexcept { return chunks_ * Index(groups_.size()); }
  Index chunks() const noexcept { return chunks_; }

  /// Scratch bytes one task needs.
  std::size_t scratch_bytes() const noexcept {
    return static_cast<std::size_t>(block_bytes() + panel_bytes() + 2 * bytes_64(tile_ * W));
  }
  /// Elements of the dQ partials (compute type), 64-byte aligned, shared by all tasks.
  std::size_t partial_bytes() const noexcept {
    return static_cast<std::size_t>(chunks_ * p_.batch_count() * panels_ * W * e_pad_) * sizeof(T);
  }
  /// Elements of the per-group dK and dV rows when groups share gradient rows, else 0.
  std::size_t shared_kv_bytes() const noexcept {
    return direct_ ? 0
                   : static_cast<std::size_t>(Index(groups_.size()) * p_.key_len * (p_.head_dim + p_.value_dim)) *
                         sizeof(T);
  }
  void set_buffers(T* partial, T* shared_kv) noexcept {
    partial_ = partial;
    shared_kv_ = shared_kv;
  }

  /// Task t: chunk t / groups (ascending: under causal masking chunk 0 has the most work),
  /// group t % groups.
  void run_task(Index task, void* scratch) const {
    const Index groups = Index(groups_.size());
    run_chunk(task / groups, task % groups, static_cast<char*>(scratch));
  }

  /// Reduction tasks: one per (batch element, query panel).
  Index reduce_tasks() const noexcept { return p_.batch_count() * panels_; }

  /// 4. dQ rows of panel `task % panels` of batch element `task / panels`: the scale times
  /// the sum of the chunks' partials, in chunk order (chunks whose keys no row of the
  /// panel sees never wrote it, and are skipped).
  void reduce_task(Index task) const {
    const Index b = task / panels_, panel = task % panels_;
    const Index first = panel * W, rows = std::min(W, p_.query_len - first);
    T* dq = bp_.grad_q.data + bp_.offset(bp_.grad_q, b, false) + first * bp_.grad_q.row;
    const T scale = p_.scale;
    for (Index i = 0; i < rows; ++i)
      for (Index e = 0; e < p_.head_dim; ++e) {
        T sum = T(0);
        for (Index c = 0; c < chunks_; ++c)
          if (panel >= first_panel(c * chunk_)) sum += partial(c, b)[(first + i) * e_pad_ + e];
        dq[i * bp_.grad_q.row + e * bp_.grad_q.col] = sum * scale;
      }
  }

  /// 3 (shared rows). dK, dV of every gradient row summed over the groups that wrote it,
  /// in group order.
  void reduce_shared_kv() const {
    if (direct_) return;
    const Index S = p_.key_len, E = p_.head_dim, Ev = p_.value_dim;
    const Index groups = Index(groups_.size());
    for (int which = 0; which < 2; ++which) {
      const StridedOperand<T>& to = which == 0 ? bp_.grad_k : bp_.grad_v;
      const Index cols = which == 0 ? E : Ev;
      std::map<Index, std::vector<Index>> targets;  // gradient offset -> groups, ascending
      for (Index g = 0; g < groups; ++g) targets[which == 0 ? groups_[std::size_t(g)].dk : groups_[std::size_t(g)].dv].push_back(g);
      for (const auto& [offset, list] : targets)
        for (Index j = 0; j < S; ++j)
          for (Index e = 0; e < cols; ++e) {
            T sum = T(0);
            for (Index g : list) sum += shared_rows(g, which)[j * cols + e];
            to.data[offset + j * to.row + e * to.col] = sum;
          }
    }
  }

 private:
  struct Group {
    Index dk = 0, dv = 0;        // offsets of its gradient rows
    std::vector<Index> members;  // batch elements (query heads), ascending
  };
  struct Scratch {
    T *kc, *vc, *dk, *dv;          // block: K, V, dK, dV, rows of e_pad_ / ev_pad_
    T *qt, *qs, *dot, *dor;        // panel: s·Qᵀ (E, W), s·Q (W, e_pad_), dOᵀ (Ev, W), dO (W, ev_pad_)
    T *lse, *d;                    // panel: per lane
    T *pt, *st;                    // tile: Pᵀ, dSᵀ (T_k, W)
  };

  static Index pad(Index n) noexcept { return (n + lanes - 1) / lanes * lanes; }
  static Index bytes_64(Index elements) noexcept { return (elements * Index(sizeof(T)) + 63) / 64 * 64; }

  // Query heads sharing their dK and dV rows (GQA groups, broadcast batch dimensions) form
  // one group, whose task sums them in order. Gradient rows written by one group each
  // (the usual case) are written in place; otherwise groups write their own rows, summed
  // by reduce_shared_kv.
  void group_heads() {
    std::map<std::pair<Index, Index>, std::size_t> index;
    for (Index b = 0; b < p_.batch_count(); ++b) {
      const std::pair<Index, Index> key{bp_.offset(bp_.grad_k, b, true), bp_.offset(bp_.grad_v, b, true)};
      auto [it, added] = index.emplace(key, groups_.size());
      if (added) groups_.push_back(Group{key.first, key.second, {}});
      groups_[it->second].members.push_back(b);
    }
    std::map<Index, int> dk_users, dv_users;
    for (const Group& g : groups_) ++dk_users[g.dk], ++dv_users[g.dv];
    direct_ = true;
    for (const auto& [offset, n] : dk_users) direct_ = direct_ && n == 1;
    for (const auto& [offset, n] : dv_users) direct_ = direct_ && n == 1;
  }

  // Keys per task: at least 16 tasks when S allows (for the threads of today's machines;
  // never from the thread count, which must not change any sum), at most 8 chunks, since
  // each chunk holds a dQ partial of L × E.
  Index chunk_keys() const {
    const Index forced = backward_config().key_chunk;
    if (forced > 0) return (forced + tile_ - 1) / tile_ * tile_;
    const Index groups = std::max<Index>(Index(groups_.size()), 1);
    const Index wanted = std::clamp<Index>((16 + groups - 1) / groups, 1, 8);
    const Index keys = std::max<Index>((p_.key_len + wanted - 1) / wanted, 1);
    return (keys + tile_ - 1) / tile_ * tile_;
  }

  // Keys packed at a time: K, V, dK and dV of the block in half of L2, so that the query
  // panels walking the block re-read them from L2.
  Index block_keys() const {
    const Index forced = backward_config().key_block;
    if (forced > 0) return (forced + tile_ - 1) / tile_ * tile_;
    const Index l2 = static_cast<Index>(Eigen::l2CacheSize());
    const Index keys = (l2 / 2) / (2 * (e_pad_ + ev_pad_) * Index(sizeof(T)));
    return std::max<Index>(keys / tile_, 1) * tile_;
  }

  Index block_bytes() const noexcept { return 2 * (bytes_64(block_ * e_pad_) + bytes_64(block_ * ev_pad_)); }
  Index panel_bytes() const noexcept {
    return bytes_64(p_.head_dim * W) + bytes_64(W * e_pad_) + bytes_64(p_.value_dim * W) + bytes_64(W * ev_pad_) +
           2 * bytes_64(W);
  }

  Scratch carve(char* s) const {
    Scratch w;
    auto take = [&s](Index elements) {
      T* at = reinterpret_cast<T*>(s);
      s += bytes_64(elements);
      return at;
    };
    w.kc = take(block_ * e_pad_), w.vc = take(block_ * ev_pad_);
    w.dk = take(block_ * e_pad_), w.dv = take(block_ * ev_pad_);
    w.qt = take(p_.head_dim * W), w.qs = take(W * e_pad_);
    w.dot = take(p_.value_dim * W), w.dor = take(W * ev_pad_);
    w.lse = take(W), w.d = take(W);
    w.pt = take(tile_ * W), w.st = take(tile_ * W);
    return w;
  }

  T* partial(Index chunk, Index b) const noexcept {
    return partial_ + (chunk * p_.batch_count() + b) * panels_ * W * e_pad_;
  }
  T* shared_rows(Index group, int which) const noexcept {
    const Index S = p_.key_len;
    return shared_kv_ + group * S * (p_.head_dim + p_.value_dim) + (which == 0 ? 0 : S * p_.head_dim);
  }

  // The first query panel some row of which sees key `key` (causal); all later ones do too.
  Index first_panel(Index key) const noexcept {
    if (p_.causal == Causal::none) return 0;
    const Index row = key - p_.causal_offset();  // the first row that sees it
    if (row >= p_.query_len) return panels_;
    return std::max<Index>(row, 0) / W;
  }

  void run_chunk(Index chunk, Index group, char* scratch) const {
    const Scratch w = carve(scratch);
    const Group& g = groups_[std::size_t(group)];
    const Index key0 = chunk * chunk_, key_end = std::min(p_.key_len, key0 + chunk_);
    for (Index kb = key0; kb < key_end; kb += block_) {
      const Index nb = std::min(block_, key_end - kb);
      const Offsets o0 = p_.offsets(g.members.front());
      pack_rows(p_.k + o0.k + kb * p_.k_row, nb, p_.head_dim, p_.k_row, p_.k_col, e_pad_, w.kc);
      pack_rows(p_.v + o0.v + kb * p_.v_row, nb, p_.value_dim, p_.v_row, p_.v_col, ev_pad_, w.vc);
      std::fill(w.dk, w.dk + nb * e_pad_, T(0));
      std::fill(w.dv, w.dv + nb * ev_pad_, T(0));
      for (Index b : g.members) {
        const Offsets o = p_.offsets(b);
        for (Index panel = first_panel(kb); panel < panels_; ++panel) {
          const Index first = panel * W, rows = std::min(W, p_.query_len - first);
          T* dq = partial(chunk, b) + first * e_pad_;
          // Panels first seen in this chunk start their partial at zero; a panel that sees
          // a block also saw the chunk's earlier blocks (first_panel grows with the key).
          if (kb == key0) std::fill(dq, dq + W * e_pad_, T(0));
          const Index seen = std::min(kb + nb, p_.visible_keys(first + rows - 1));
          if (seen <= kb) continue;  // sees none of this block: its partial stays as it is
          pack_panel(o, b, first, rows, w);
          for (Index t = kb; t < seen; t += tile_) tile(o, first, rows, t, kb, std::min(tile_, seen - t), w, dq);
        }
      }
      store_kv(g, group, kb, nb, w);
    }
  }

  // to[r·stride + c] = from[r·row + c·col] for c < cols, zeros up to `stride`.
  static void pack_rows(const T* from, Index rows, Index cols, Index row, Index col, Index stride, T* to) {
    for (Index r = 0; r < rows; ++r, from += row, to += stride) {
      if (col == 1) std::copy(from, from + cols, to);
      else
        for (Index c = 0; c < cols; ++c) to[c] = from[c * col];
      std::fill(to + cols, to + stride, T(0));
    }
  }

  // 2. The panel's queries and incoming gradient, both ways round, and per lane lse (+inf
  // for rows that see no key and for lanes past the last row) and D = rowsum(dO ∘ O).
  void pack_panel(const Offsets& o, Index b, Index first, Index rows, const Scratch& w) const {
    const Index E = p_.head_dim, Ev = p_.value_dim;
    const T scale = p_.scale;
    const T inf = std::numeric_limits<T>::infinity();
    if (rows < W) {
      std::fill(w.qt, w.qt + E * W, T(0));
      std::fill(w.dot, w.dot + Ev * W, T(0));
    }
    std::fill(w.qs, w.qs + W * e_pad_, T(0));
    std::fill(w.dor, w.dor + W * ev_pad_, T(0));
    const T* q = p_.q + o.q + first * p_.q_row;
    const T* dout = bp_.grad_out.data + bp_.offset(bp_.grad_out, b, false) + first * bp_.grad_out.row;
    const T* out = bp_.out.data + bp_.offset(bp_.out, b, false) + first * bp_.out.row;
    const T* lse = bp_.logsumexp + b * p_.query_len + first;
    for (Index i = 0; i < rows; ++i, q += p_.q_row, dout += bp_.grad_out.row, out += bp_.out.row) {
      for (Index e = 0; e < E; ++e) {
        const T x = q[e * p_.q_col] * scale;
        w.qt[e * W + i] = x;
        w.qs[i * e_pad_ + e] = x;
      }
      T d = T(0);
      for (Index e = 0; e < Ev; ++e) {
        const T x = dout[e * bp_.grad_out.col];
        w.dot[e * W + i] = x;
        w.dor[i * ev_pad_ + e] = x;
        d += x * out[e * bp_.out.col];
      }
      w.d[i] = d;
      w.lse[i] = lse[i] == -inf ? inf : lse[i];
    }
    for (Index i = rows; i < W; ++i) w.d[i] = T(0), w.lse[i] = inf;
  }

  // 2a–2d for `n` keys from `key` (block-relative: key − kb) against one panel.
  void tile(const Offsets& o, Index first, Index rows, Index key, Index kb, Index n, const Scratch& w, T* dq) const {
    const Index j0 = key - kb;
    Index j = 0;
    for (; j + R <= n; j += R) probabilities<R>(o, first, key + j, j0 + j, j, w);
    probabilities_rest<R - 1>(o, first, key + j, j0 + j, j, n - j, w);
    // c. dV_tile += Pᵀ·dO, dK_tile += dSᵀ·(s·Q): rows are keys, the reduction the panel's rows.
    gemm_add<false>(w.dv + j0 * ev_pad_, ev_pad_, n, ev_pad_ / lanes, w.pt, W, 1, w.dor, ev_pad_, rows);
    gemm_add<false>(w.dk + j0 * e_pad_, e_pad_, n, e_pad_ / lanes, w.st, W, 1, w.qs, e_pad_, rows);
    // d. dQ_panel += dS·K_tile: rows are queries (lanes of dSᵀ), the reduction the keys.
    gemm_add<true>(dq, e_pad_, rows, e_pad_ / lanes, w.st, 1, W, w.kc + j0 * e_pad_, e_pad_, n);
  }

  template <int Rest>
  void probabilities_rest(const Offsets& o, Index first, Index key, Index jb, Index j, Index count,
                          const Scratch& w) const {
    if constexpr (Rest > 0) {
      if (count == Rest) probabilities<Rest>(o, first, key, jb, j, w);
      else probabilities_rest<Rest - 1>(o, first, key, jb, j, count, w);
    }
  }

  // a, b. Pᵀ and dSᵀ rows [j, j + Rows) of the tile: keys `key`.. (block row jb..).
  template <int Rows>
  void probabilities(const Offsets& o, Index first, Index key, Index jb, Index j, const Scratch& w) const {
    P acc[extent<Rows>][extent<NP>];
    outer_block<Rows, NP, false, T>(acc, w.kc + jb * e_pad_, e_pad_, 1, w.qt, W, p_.head_dim);
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
    for (int p = 0; p < NP; ++p) {
      const P lse = simd::pload<P>(w.lse + p * lanes);
      for (int r = 0; r < Rows; ++r) {
        acc[r][p] = pexp_clamped(simd::psub(acc[r][p], lse));
        simd::pstore(w.pt + (j + r) * W + p * lanes, acc[r][p]);
      }
    }
    P dp[extent<Rows>][extent<NP>];
    outer_block<Rows, NP, false, T>(dp, w.vc + jb * ev_pad_, ev_pad_, 1, w.dot, W, p_.value_dim);
    for (int p = 0; p < NP; ++p) {
      const P d = simd::pload<P>(w.d + p * lanes);
      for (int r = 0; r < Rows; ++r)
        simd::pstore(w.st + (j + r) * W + p * lanes, simd::pmul(acc[r][p], simd::psub(dp[r][p], d)));
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
        for (Index i = 0; i < rows; ++i) lane_values[i] = p_.additive_mask[base + i * p_.mask_row];
      }
      std::fill(lane_values + rows, lane_values + W, T(0));
      for (int p = 0; p < NP; ++p) acc[r][p] = simd::padd(acc[r][p], simd::pload<P>(lane_values + p * lanes));
    }
  }

  // c[r·c_row + q·lanes] += Σ_{t < n} b[r·b_r + t·b_t] · a[t·a_t + q·lanes] for r < rows,
  // q < packets: outer_block over blocks of R rows × NP packets, and the rest.
  template <bool UnitR>
  static void gemm_add(T* c, Index c_row, Index rows, Index packets, const T* b, Index b_r, Index b_t, const T* a,
                       Index a_t, Index n) {
    Index r = 0;
    for (; r + R <= rows; r += R) gemm_rows<R, UnitR>(c + r * c_row, c_row, packets, b + r * b_r, b_r, b_t, a, a_t, n);
    gemm_rows_rest<R - 1, UnitR>(rows - r, c + r * c_row, c_row, packets, b + r * b_r, b_r, b_t, a, a_t, n);
  }

  template <int Rest, bool UnitR>
  static void gemm_rows_rest(Index count, T* c, Index c_row, Index packets, const T* b, Index b_r, Index b_t,
                             const T* a, Index a_t, Index n) {
    if constexpr (Rest > 0) {
      if (count == Rest) gemm_rows<Rest, UnitR>(c, c_row, packets, b, b_r, b_t, a, a_t, n);
      else gemm_rows_rest<Rest - 1, UnitR>(count, c, c_row, packets, b, b_r, b_t, a, a_t, n);
    }
  }

  template <int Rows, bool UnitR>
  static void gemm_rows(T* c, Index c_row, Index packets, const T* b, Index b_r, Index b_t, const T* a, Index a_t,
                        Index n) {
    Index q = 0;
    for (; q + NP <= packets; q += NP) add_block<Rows, NP, UnitR>(c + q * lanes, c_row, b, b_r, b_t, a + q * lanes, a_t, n);
    gemm_packets_rest<Rows, NP - 1, UnitR>(packets - q, c + q * lanes, c_row, b, b_r, b_t, a + q * lanes, a_t, n);
  }

  template <int Rows, int Rest, bool UnitR>
  static void gemm_packets_rest(Index count, T* c, Index c_row, const T* b, Index b_r, Index b_t, const T* a,
                                Index a_t, Index n) {
    if constexpr (Rest > 0) {
      if (count == Rest) add_block<Rows, Rest, UnitR>(c, c_row, b, b_r, b_t, a, a_t, n);
      else gemm_packets_rest<Rows, Rest - 1, UnitR>(count, c, c_row, b, b_r, b_t, a, a_t, n);
    }
  }

  template <int Rows, int Packets, bool UnitR>
  static void add_block(T* c, Index c_row, const T* b, Index b_r, Index b_t, const T* a, Index a_t, Index n) {
    P acc[extent<Rows>][extent<Packets>];
    outer_block<Rows, Packets, UnitR, T>(acc, b, b_r, b_t, a, a_t, n);
    for (int r = 0; r < Rows; ++r)
      for (int q = 0; q < Packets; ++q) {
        T* at = c + r * c_row + q * lanes;
        simd::pstore(at, simd::padd(simd::pload<P>(at), acc[r][q]));
      }
  }

  // 3. The block's dK and dV to the caller's rows, or to the group's own.
  void store_kv(const Group& g, Index group, Index kb, Index nb, const Scratch& w) const {
    for (int which = 0; which < 2; ++which) {
      const StridedOperand<T>& to = which == 0 ? bp_.grad_k : bp_.grad_v;
      const Index cols = which == 0 ? p_.head_dim : p_.value_dim, stride = which == 0 ? e_pad_ : ev_pad_;
      const T* from = which == 0 ? w.dk : w.dv;
      T* base;
      Index row, col;
      if (direct_) base = to.data + (which == 0 ? g.dk : g.dv), row = to.row, col = to.col;
      else base = shared_rows(group, which), row = cols, col = 1;
      for (Index j = 0; j < nb; ++j)
        for (Index e = 0; e < cols; ++e) base[(kb + j) * row + e * col] = from[j * stride + e];
    }
  }

  const BackwardProblem<T>& bp_;
  const AttentionProblem<T>& p_;
  std::vector<Group> groups_;
  bool direct_ = true;
  Index e_pad_ = 0, ev_pad_ = 0, panels_ = 0, tile_ = 0, chunk_ = 0, chunks_ = 0, block_ = 0;
  T* partial_ = nullptr;
  T* shared_kv_ = nullptr;
};

/// Runs the backward pass: the tasks, then the reductions of dQ (and of shared dK, dV).
/// L and S must be positive (the caller fills the gradients of empty problems).
template <class T>
void flash_backward(const BackwardProblem<T>& bp, AttentionWorkspace* workspace) {
  FlashBackward<T> kernel(bp);
  const std::size_t partial = (kernel.partial_bytes() + 63) / 64 * 64;
  char* shared = static_cast<char*>(call_scratch(workspace, partial + kernel.shared_kv_bytes()));
  kernel.set_buffers(reinterpret_cast<T*>(shared), reinterpret_cast<T*>(shared + partial));
  const double flops = 2.5 * bp.p.flops();
  parallel_for(kernel.tasks(), flops, workspace, kernel.scratch_bytes(),
               [&](std::ptrdiff_t task, void* scratch) { kernel.run_task(task, scratch); });
  const double reduce_flops = double(kernel.chunks()) * double(bp.p.batch_count()) * double(bp.p.query_len) *
                              double(bp.p.head_dim);
  parallel_for(kernel.reduce_tasks(), reduce_flops, workspace, 0,
               [&](std::ptrdiff_t task, void*) { kernel.reduce_task(task); });
  kernel.reduce_shared_kv();
}

}  // namespace qkv::detail
