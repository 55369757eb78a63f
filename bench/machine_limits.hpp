// SPDX-License-Identifier: MIT
// The limits that qkv's benchmark figures are divided by, measured in the same run: the
// FP32 FMA peak, the bf16 dot-product peak (vdpbf16ps, where the compiler targets
// AVX512_BF16), the memory read bandwidth (the best of a few read patterns) and Eigen's
// SGEMM rate (the roofline and the "fraction of peak" of FlashAttention papers and of
// ggml's peer benchmark), plus the CPU time other processes take meanwhile, so that a
// noisy figure can be spotted.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef __AVX512BF16__
#include <immintrin.h>
#endif

namespace qkv::bench {

inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// Threads an OpenMP parallel region can have (1 without OpenMP).
inline int available_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

namespace detail {

using FloatPacket = Eigen::internal::packet_traits<float>::type;
inline constexpr int float_lanes = Eigen::internal::packet_traits<float>::size;

// Independent FMA chains per thread. A core keeps latency × pipes FMAs in flight
// (4 × 2 on Zen 4/5 and recent Intel cores): 16 chains cover that with room to spare on
// AVX-512's 32 registers; 12 with the two constants fit in the 16 of SSE/AVX2 (more would
// spill to memory and measure the spills).
#ifdef EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS
inline constexpr int fma_chains = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 16 : 12;
#else
inline constexpr int fma_chains = 12;
#endif

template <std::size_t... I>
EIGEN_ALWAYS_INLINE void fma_step(FloatPacket (&acc)[sizeof...(I)], const FloatPacket& b, const FloatPacket& c,
                                  std::index_sequence<I...>) {
  // Unrolled by the pack expansion, so the accumulators stay in registers.
  ((acc[I] = Eigen::internal::pmadd(acc[I], b, c)), ...);
}

// acc ← acc·b + c, `steps` times on each chain; b < 1 keeps the values near 1 (no
// overflow, no denormals). Returns the sum so the work cannot be dropped.
EIGEN_DONT_INLINE inline float run_fma_chains(long steps, float seed) {
  FloatPacket acc[fma_chains];
  for (int i = 0; i < fma_chains; ++i) acc[i] = Eigen::internal::pset1<FloatPacket>(seed + 0.01f * float(i + 1));
  const FloatPacket b = Eigen::internal::pset1<FloatPacket>(0.999999f);
  const FloatPacket c = Eigen::internal::pset1<FloatPacket>(1e-6f);
  for (long s = 0; s < steps; ++s) fma_step(acc, b, c, std::make_index_sequence<fma_chains>());
  FloatPacket sum = acc[0];
  for (int i = 1; i < fma_chains; ++i) sum = Eigen::internal::padd(sum, acc[i]);
  return Eigen::internal::predux(sum);
}

// Packets summed at once by the bandwidth probe, over all its streams: enough loads in
// flight to cover the memory latency, and registers left over on SSE/AVX2's 16.
#ifdef EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS
inline constexpr int read_accumulators = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 16 : 8;
#else
inline constexpr int read_accumulators = 8;
#endif

// Sum of n floats at an aligned address, read as `Streams` concurrent streams (the equal
// parts of the range, interleaved step by step), read_accumulators / Streams packets of
// each per step. Which count reads fastest depends on the core's prefetchers: one stream
// leaves part of the memory parallelism unused on some cores, many streams overflow the
// prefetchers' tracking on others.
template <int Streams>
EIGEN_DONT_INLINE float sum_floats(const float* data, std::size_t n) {
  constexpr int packets = read_accumulators / Streams > 0 ? read_accumulators / Streams : 1;
  constexpr std::size_t step = packets * float_lanes;
  const std::size_t per_stream = n / Streams / step * step;
  FloatPacket acc[std::size_t(Streams)][std::size_t(packets)];
  for (auto& stream : acc)
    for (auto& a : stream) a = Eigen::internal::pset1<FloatPacket>(0.0f);
  for (std::size_t i = 0; i < per_stream; i += step)
    for (int s = 0; s < Streams; ++s)
      for (int p = 0; p < packets; ++p)
        acc[s][p] = Eigen::internal::padd(
            acc[s][p], Eigen::internal::pload<FloatPacket>(data + std::size_t(s) * per_stream + i + std::size_t(p) * float_lanes));
  FloatPacket sum = Eigen::internal::pset1<FloatPacket>(0.0f);
  for (auto& stream : acc)
    for (auto& a : stream) sum = Eigen::internal::padd(sum, a);
  float total = Eigen::internal::predux(sum);
  for (std::size_t i = Streams * per_stream; i < n; ++i) total += data[i];
  return total;
}

/// The stream counts the bandwidth probe tries; it keeps the fastest.
inline constexpr int read_patterns[] = {1, 2, 4, 8};

inline float sum_floats(const float* data, std::size_t n, int streams) {
  switch (streams) {
    case 1: return sum_floats<1>(data, n);
    case 2: return sum_floats<2>(data, n);
    case 4: return sum_floats<4>(data, n);
    default: return sum_floats<8>(data, n);
  }
}

// Runs body(thread, threads) on `threads` OpenMP threads and returns the wall time from
// the moment all of them are ready (a barrier) to the moment the last one is done.
template <class Body>
double timed_parallel(int threads, Body&& body) {
  double start = 0, stop = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  {
#pragma omp barrier
#pragma omp master
    start = now_seconds();
    body(omp_get_thread_num(), omp_get_num_threads());
#pragma omp barrier
#pragma omp master
    stop = now_seconds();
  }
#else
  (void)threads;
  start = now_seconds();
  body(0, 1);
  stop = now_seconds();
#endif
  return stop - start;
}

inline volatile float probe_sink;  // results of the probes go here, so no work is dropped

}  // namespace detail

/// One FMA-peak trial: `steps` × fma_chains packet FMAs on each of `threads` threads. Returns
/// {seconds, floating-point operations} (2 per lane per FMA).
inline std::pair<double, double> fma_trial(int threads, long steps) {
  std::vector<float> sums(static_cast<std::size_t>(std::max(threads, 1)));
  int ran = 1;
  const double seconds = detail::timed_parallel(threads, [&](int thread, int team) {
    sums[static_cast<std::size_t>(thread)] = detail::run_fma_chains(steps, float(thread));
    if (thread == 0) ran = team;
  });
  float total = 0;
  for (float s : sums) total += s;
  detail::probe_sink = total;
  const double flops = 2.0 * detail::float_lanes * detail::fma_chains * double(steps) * ran;
  return {seconds, flops};
}

/// Steps of one FMA trial: about 0.1 s at 200 GFLOP/s per thread.
inline constexpr long fma_trial_steps = 40'000'000;

/// The machine's FP32 FMA peak on `threads` threads, GFLOP/s: the best of `trials`.
inline double fma_peak_gflops(int threads, int trials = 5) {
  double best = 0;
  for (int t = 0; t < trials; ++t) {
    const auto [seconds, flops] = fma_trial(threads, fma_trial_steps);
    best = std::max(best, flops / seconds * 1e-9);
  }
  return best;
}

#ifdef __AVX512BF16__
/// Whether this build can measure the bf16 dot-product peak (the compiler targets
/// AVX512_BF16: Zen 4/5, Intel Cooper Lake, Sapphire Rapids and later).
inline constexpr bool has_bf16_dot = true;

namespace detail {

// Independent vdpbf16ps chains, as the FMA probe's: the instruction's latency × pipes (about
// 6 × 2 on Zen 4/5) is covered by 16 with room to spare.
inline constexpr int bf16_dot_chains = 16;

template <std::size_t... I>
__attribute__((always_inline)) inline void bf16_dot_step(__m512 (&acc)[sizeof...(I)], __m512bh a, __m512bh b,
                                                         std::index_sequence<I...>) {
  ((acc[I] = _mm512_dpbf16_ps(acc[I], a, b)), ...);
}

// acc ← acc + a₀·b₀ + a₁·b₁ in each float lane (32 bf16 pairs, 64 FLOP per instruction),
// `steps` times on each chain. The products (2⁻²⁰ each) keep the sums small and exact
// enough; vdpbf16ps flushes denormals, so no operand can slow it down. Returns the sum so
// the work cannot be dropped.
EIGEN_DONT_INLINE inline float run_bf16_dot_chains(long steps, float seed) {
  __m512 acc[bf16_dot_chains];
  for (int i = 0; i < bf16_dot_chains; ++i) acc[i] = _mm512_set1_ps(seed + 0.01f * float(i + 1));
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0x1p-10f), _mm512_set1_ps(0x1p-10f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0x1p-10f), _mm512_set1_ps(0x1p-10f));
  for (long s = 0; s < steps; ++s) bf16_dot_step(acc, a, b, std::make_index_sequence<bf16_dot_chains>());
  __m512 sum = acc[0];
  for (int i = 1; i < bf16_dot_chains; ++i) sum = _mm512_add_ps(sum, acc[i]);
  return _mm512_reduce_add_ps(sum);
}

}  // namespace detail

/// One bf16 dot-product trial: `steps` × bf16_dot_chains vdpbf16ps on 512 bits on each of
/// `threads` threads. Returns {seconds, floating-point operations} (64 per instruction:
/// 32 multiplies and 32 adds into 16 float lanes).
inline std::pair<double, double> bf16_dot_trial(int threads, long steps) {
  std::vector<float> sums(static_cast<std::size_t>(std::max(threads, 1)));
  int ran = 1;
  const double seconds = detail::timed_parallel(threads, [&](int thread, int team) {
    sums[static_cast<std::size_t>(thread)] = detail::run_bf16_dot_chains(steps, float(thread));
    if (thread == 0) ran = team;
  });
  float total = 0;
  for (float s : sums) total += s;
  detail::probe_sink = total;
  return {seconds, 64.0 * detail::bf16_dot_chains * double(steps) * ran};
}
#else
inline constexpr bool has_bf16_dot = false;
#endif

/// Steps of one bf16 dot trial: about 0.1 s at 450 GFLOP/s per thread.
inline constexpr long bf16_dot_trial_steps = 40'000'000;

/// A large float array for the bandwidth probe, first touched by the threads that read it
/// (each its own slice), so that pages sit where their reader runs.
class ReadBuffer {
 public:
  ReadBuffer(std::size_t bytes, int threads)
      : count_(bytes / sizeof(float) / slice_align * slice_align),
        data_(static_cast<float*>(std::aligned_alloc(64, count_ * sizeof(float)))) {
    if (!data_) throw std::bad_alloc();
    detail::timed_parallel(threads, [&](int thread, int team) {
      const auto [begin, end] = slice(thread, team);
      for (std::size_t i = begin; i < end; ++i) data_.get()[i] = float(i & 1023) * 1e-3f;
    });
  }
  std::size_t bytes() const noexcept { return count_ * sizeof(float); }

  /// One pass over the whole array by `threads` threads, each reading its slice as
  /// `streams` interleaved streams (1, 2, 4 or 8), seconds.
  double read_seconds(int threads, int streams = 4) const {
    std::vector<float> sums(static_cast<std::size_t>(std::max(threads, 1)));
    const double seconds = detail::timed_parallel(threads, [&](int thread, int team) {
      const auto [begin, end] = slice(thread, team);
      sums[static_cast<std::size_t>(thread)] = detail::sum_floats(data_.get() + begin, end - begin, streams);
    });
    float total = 0;
    for (float s : sums) total += s;
    detail::probe_sink = total;
    return seconds;
  }

 private:
  static constexpr std::size_t slice_align = 1024;  // floats: keeps every slice 64-byte aligned
  std::pair<std::size_t, std::size_t> slice(int thread, int team) const {
    const std::size_t per = (count_ / std::size_t(team) + slice_align - 1) / slice_align * slice_align;
    const std::size_t begin = std::min(count_, per * std::size_t(thread));
    return {begin, std::min(count_, begin + per)};
  }
  struct Free {
    void operator()(float* p) const noexcept { std::free(p); }
  };
  std::size_t count_;
  std::unique_ptr<float, Free> data_;
};

/// Bytes of the bandwidth probe's array: 1 GiB, far beyond the last-level cache (32 MiB
/// per Zen 5 CCD; this VM's CPUID even claims ~508 MiB, which 1 GiB still clears).
inline constexpr std::size_t read_buffer_bytes = std::size_t(1) << 30;

/// The fastest read of a ReadBuffer: its time and the stream count that achieved it.
struct BestRead {
  double seconds = 0;
  int streams = 0;
  double gbs(const ReadBuffer& buffer) const { return seconds > 0 ? double(buffer.bytes()) / seconds * 1e-9 : 0.0; }
};

/// The best of `rounds` rounds, each one pass per read pattern (1, 2, 4 and 8 streams per
/// thread), on `threads` threads: "of bandwidth" is then against the fastest way this core
/// reads, not against one pattern it happens to dislike. The patterns alternate within a
/// round, so that the machine's drift (tens of percent per second on a shared host) does
/// not favour one. 1 GiB at ~30 GB/s: some 35 ms a pass.
inline BestRead best_read(const ReadBuffer& buffer, int threads, int rounds) {
  BestRead best{std::numeric_limits<double>::infinity(), 0};
  for (int round = 0; round < rounds; ++round)
    for (int streams : detail::read_patterns) {
      const double seconds = buffer.read_seconds(threads, streams);
      if (seconds < best.seconds) best = {seconds, streams};
    }
  return best;
}

/// The memory read bandwidth on `threads` threads, GB/s (1e9 bytes/s): the best of
/// `rounds` rounds of best_read over a 1 GiB array, after one untimed pass.
inline double read_bandwidth_gbs(int threads, int rounds = 3) {
  const ReadBuffer buffer(read_buffer_bytes, threads);
  buffer.read_seconds(threads);
  return best_read(buffer, threads, rounds).gbs(buffer);
}

/// Operands of an n × n × n SGEMM through Eigen (MatrixXf, C = A·B).
struct SgemmOperands {
  explicit SgemmOperands(Eigen::Index n) : a(Eigen::MatrixXf::Random(n, n)), b(Eigen::MatrixXf::Random(n, n)), c(n, n) {}
  Eigen::MatrixXf a, b, c;
  double flops() const { return 2.0 * double(a.rows()) * double(a.cols()) * double(b.cols()); }
};

/// One SGEMM on `threads` threads (Eigen's own OpenMP parallelisation), seconds.
inline double sgemm_seconds(SgemmOperands& m, int threads) {
  const int previous = Eigen::nbThreads();
  Eigen::setNbThreads(threads);
  const double start = now_seconds();
  m.c.noalias() = m.a * m.b;
  const double seconds = now_seconds() - start;
  Eigen::setNbThreads(previous);
  detail::probe_sink = m.c(0, 0);
  return seconds;
}

/// Eigen's SGEMM rate at n³ on `threads` threads, GFLOP/s: the best of `trials`, after one
/// untimed product.
inline double eigen_sgemm_gflops(Eigen::Index n, int threads, int trials = 3) {
  SgemmOperands m(n);
  sgemm_seconds(m, threads);
  double best = 0;
  for (int t = 0; t < trials; ++t) best = std::max(best, m.flops() / sgemm_seconds(m, threads) * 1e-9);
  return best;
}

/// What touching fresh memory costs: microseconds per 4 KiB page of a new anonymous
/// mapping (the kernel's page fault and zeroing), the best of `trials` over 4 MiB. It is
/// what a program pays for every large temporary it allocates and frees again.
inline double first_touch_us_per_page(int trials = 3) {
  constexpr std::size_t bytes = std::size_t(4) << 20, page = 4096;
  double best = std::numeric_limits<double>::infinity();
  for (int t = 0; t < trials; ++t) {
    void* map = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) return 0;
    auto* bytes_of = static_cast<volatile char*>(map);
    const double start = now_seconds();
    for (std::size_t i = 0; i < bytes; i += page) bytes_of[i] = 1;
    best = std::min(best, (now_seconds() - start) / double(bytes / page) * 1e6);
    munmap(map, bytes);
  }
  return best;
}

/// CPU time of the whole machine and of this process at one moment, to tell how much of
/// the machine other processes (and the hypervisor: steal) took between two moments.
struct CpuSnapshot {
  double machine_busy = 0;  // user + nice + system + irq + softirq of all CPUs, seconds
  double steal = 0;
  double own = 0;  // this process's user + system, all threads
  double wall = 0;

  static CpuSnapshot now(int who = RUSAGE_SELF) {
    CpuSnapshot s;
    std::ifstream stat("/proc/stat");
    std::string cpu;
    unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    if (stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal && cpu == "cpu") {
      const double hz = double(sysconf(_SC_CLK_TCK));
      s.machine_busy = double(user + nice + system + irq + softirq) / hz;
      s.steal = double(steal) / hz;
    }
    rusage usage{};
    getrusage(who, &usage);
    s.own = double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
            1e-6 * double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
    s.wall = now_seconds();
    return s;
  }
};

/// Percent of the machine (all online CPUs × wall time) that other processes and steal
/// took between `a` and `b`. /proc/stat counts in ticks of 10 ms, so intervals well under
/// a second are coarse.
inline double other_percent(const CpuSnapshot& a, const CpuSnapshot& b) {
  const double capacity = (b.wall - a.wall) * double(sysconf(_SC_NPROCESSORS_ONLN));
  const double other = (b.machine_busy - a.machine_busy) - (b.own - a.own) + (b.steal - a.steal);
  return capacity > 0 ? 100.0 * std::max(0.0, other) / capacity : 0.0;
}

/// The processor's name as /proc/cpuinfo gives it, with family and model when it is terse.
inline std::string cpu_model() {
  std::ifstream info("/proc/cpuinfo");
  std::string line, name, family, model;
  auto value = [](const std::string& l) {
    const auto colon = l.find(':');
    return colon == std::string::npos ? std::string() : l.substr(std::min(l.size(), colon + 2));
  };
  while (std::getline(info, line) && (name.empty() || family.empty() || model.empty())) {
    if (line.rfind("model name", 0) == 0) name = value(line);
    else if (line.rfind("cpu family", 0) == 0) family = value(line);
    else if (line.rfind("model", 0) == 0 && line.rfind("model name", 0) != 0) model = value(line);
  }
  if (name.empty()) name = "unknown CPU";
  if (!family.empty()) name += " (family " + family + ", model " + model + ")";
  return name;
}

/// The process's peak resident memory so far (VmHWM), KiB; -1 when unknown.
inline long peak_rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string key;
  long kib = -1;
  while (status >> key) {
    if (key == "VmHWM:") {
      status >> kib;
      break;
    }
    status.ignore(1 << 12, '\n');
  }
  return kib;
}

}  // namespace qkv::bench
