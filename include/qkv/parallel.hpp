// SPDX-License-Identifier: MIT
// Threads and scratch memory of qkv's kernels: qkv::set_num_threads (as torch.set_num_threads)
// and qkv::AttentionWorkspace, the per-thread scratch a caller may own and pass in.
#pragma once

#include "version.hpp"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace qkv {

namespace detail {

inline std::atomic<int>& requested_threads() {
  static std::atomic<int> n{0};
  return n;
}

/// A growable 64-byte aligned byte buffer that never shrinks, so that a kernel called
/// again with the same sizes touches memory that is already mapped.
class ScratchBuffer {
 public:
  void* reserve(std::size_t bytes) {
    if (bytes > capacity_) {
      data_.reset(static_cast<char*>(::operator new(bytes, std::align_val_t(alignment))));
      capacity_ = bytes;
    }
    return data_.get();
  }
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  static constexpr std::size_t alignment = 64;
  struct Delete {
    void operator()(char* p) const noexcept { ::operator delete(p, std::align_val_t(alignment)); }
  };
  std::unique_ptr<char, Delete> data_;
  std::size_t capacity_ = 0;
};

inline int thread_index() noexcept {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

}  // namespace detail

/// Sets how many threads qkv's kernels use: n >= 1, or 0 for OpenMP's default
/// (OMP_NUM_THREADS, else one per core). Results do not depend on it, bit for bit.
/// Without OpenMP, qkv runs on the calling thread whatever is set here.
/// \throws std::invalid_argument when n < 0.
inline void set_num_threads(int n) {
  if (n < 0) throw std::invalid_argument("qkv::set_num_threads: " + std::to_string(n) + " threads");
  detail::requested_threads() = n;
}

/// The number of threads a kernel call would use now (1 without OpenMP).
inline int get_num_threads() noexcept {
#ifdef _OPENMP
  const int n = detail::requested_threads();
  return n > 0 ? n : omp_get_max_threads();
#else
  return 1;
#endif
}

/// \brief Scratch memory for attention calls, one buffer per thread plus one for the call.
///
/// By default each thread keeps its own scratch (thread_local) and reuses it across
/// calls. A caller that wants to own that memory — to bound it, free it, or keep it
/// apart per model — creates a workspace and sets AttentionOptions::workspace. A
/// workspace serves one call at a time. It grows to the largest call it has served.
class AttentionWorkspace {
 public:
  /// Bytes held across all buffers.
  std::size_t bytes() const noexcept {
    std::size_t total = shared_.capacity();
    for (const auto& b : per_thread_) total += b.capacity();
    return total;
  }

  /// Scratch of thread `index` of the kernel's team, at least `size` bytes; call
  /// prepare() first.
  void* thread_scratch(int index, std::size_t size) { return per_thread_[static_cast<std::size_t>(index)].reserve(size); }
  /// Scratch shared by the threads of one call (e.g. split-key partial results).
  void* shared_scratch(std::size_t size) { return shared_.reserve(size); }
  /// Makes room for `threads` threads; called by the kernel before its parallel region.
  void prepare(int threads) {
    if (static_cast<int>(per_thread_.size()) < threads) per_thread_.resize(static_cast<std::size_t>(threads));
  }

 private:
  std::vector<detail::ScratchBuffer> per_thread_;
  detail::ScratchBuffer shared_;
};

namespace detail {

/// Scratch of thread `index` of a kernel's team: the caller's workspace, else the
/// thread's own.
inline void* thread_scratch(AttentionWorkspace* workspace, int index, std::size_t bytes) {
  if (workspace) return workspace->thread_scratch(index, bytes);
  thread_local ScratchBuffer own;
  return own.reserve(bytes);
}

/// Scratch shared across one call's threads, owned by the calling thread.
inline void* call_scratch(AttentionWorkspace* workspace, std::size_t bytes) {
  if (workspace) return workspace->shared_scratch(bytes);
  thread_local ScratchBuffer own;
  return own.reserve(bytes);
}

/// Work below which a thread is not worth waking: starting and joining an OpenMP team
/// costs microseconds, as much as ~10^6 floating-point operations.
inline constexpr double min_flops_per_thread = 1 << 21;

/// Runs body(task, scratch) for task in [0, count) on up to get_num_threads() threads,
/// handing out tasks one at a time in order (the caller orders them heaviest first).
/// `scratch` is the running thread's scratch of `scratch_bytes`, which every thread of
/// the team reserves before its first task, so that a second call of the same size
/// allocates nothing. `flops`, the work of all tasks, caps the threads so that small
/// calls stay on the caller.
template <class Body>
void parallel_for(std::ptrdiff_t count, double flops, AttentionWorkspace* workspace, std::size_t scratch_bytes,
                  Body&& body) {
  if (count == 1) {  // a small call: none of the thread-count arithmetic below (~10 % of the notebooks' 6 × 3)
    if (workspace) workspace->prepare(1);
    body(0, thread_scratch(workspace, 0, scratch_bytes));
    return;
  }
  const double useful = std::max(1.0, flops / min_flops_per_thread);
  const int threads = static_cast<int>(
      std::min<double>({static_cast<double>(get_num_threads()), static_cast<double>(count), useful}));
  if (workspace) workspace->prepare(std::max(threads, 1));
#ifdef _OPENMP
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    {
      void* scratch = thread_scratch(workspace, thread_index(), scratch_bytes);
#pragma omp for schedule(dynamic, 1)
      for (std::ptrdiff_t task = 0; task < count; ++task) body(task, scratch);
    }
    return;
  }
#endif
  void* scratch = thread_scratch(workspace, 0, scratch_bytes);  // 0 even inside a caller's team
  for (std::ptrdiff_t task = 0; task < count; ++task) body(task, scratch);
}

}  // namespace detail
}  // namespace qkv
