// SPDX-License-Identifier: MIT
// Attention benchmark: qkv::scaled_dot_product_attention (the fused kernel) on the cases of
// the fast-kernel issue, beside the unfused formula softmax(Q·Kᵀ·scale [+ mask])·V and the
// machine's limits measured in the same run, ending with one Markdown table in which
// every figure comes with its ratio to its limit (and to ggml's, when given its output).
//
// Benchmarks, as --benchmark_filter sees them:
//   BM_fma_peak, BM_bf16_dot_peak, BM_read_bandwidth, BM_eigen_sgemm_2048 /threads:{1,2}
//                                  the limits (BM_bf16_dot_peak where the compiler targets
//                                  AVX512_BF16: vdpbf16ps)
//   BM_sdpa, BM_unfused_formula /L:{512,2048,4096}/E:{64,128}/causal:{0,1}/threads:{1,2}
//                                  B = 1, H = 8, L = S
//   BM_sdpa_bf16, BM_sdpa_f16 /L:{2048,4096}/E:{64,128}/causal:{0,1}/threads:{1,2}, and
//                  /L:512/E:64/causal:1/threads:{1,2}: q, k, v and the output all in
//                                  qkv::bfloat16 or all in qkv::half
//   BM_sdpa_1head, BM_unfused_1head /L:{64,256,1024,4096}/E:{64,128}   one head, 1 thread
//   BM_long_causal/threads:{1,2}   H = 1, L = S = 32768, E = 64, causal; peak resident memory
//   BM_decode/threads:{1,2}        one query against S = 4096 keys, H = 32, E = 128
//   BM_decode_bf16kv, BM_decode_f16kv /threads:{1,2}   the same with K and V in bfloat16
//                                  or half under float queries (a 16-bit KV cache)
//   BM_notebook                    the 6 × 3 input of the notebooks, ns per call
//   BM_variant/<kind>/L:4096/E:{64,128}/threads:{1,2}   H = 8, full, each attention variant
//                                  (softcap 30, sinks, ALiBi, a user's relative-position
//                                  bias from a table) beside kind "plain" in the same run
//   BM_variant/{plain,window}/L:32768/E:64/causal/threads:{1,2}   H = 1, a window of 4096
//                                  keys against the plain causal kernel; GFLOP/s of the
//                                  visible pairs only
//   BM_variant_decode/<kind>/threads:{1,2}   decode (L = 1, S = 4096, E = 128, H = 32) with
//                                  each variant; GB/s of the keys it reads (a window of
//                                  1024 reads a quarter of them)
//
// Convention (the one ggml's peer benchmark uses): a full pass is 4·L·S·E·H floating-point
// operations (the two products), a causal one half that; decode reports GB/s of K and V read.
// Inputs are uniform in [-1, 1), as ggml's (16-bit cases: those values rounded to the
// type). Each qkv case is checked once before it is timed, and the program stops if it is
// wrong: float against the unfused formula (max|diff| <= 1e-4·max|ref|); all-bf16 and
// all-f16 against the unfused formula in float on the same rounded inputs (2⁻⁷ and 2⁻¹⁰
// ·max|ref|, issue 15's bounds); float queries with 16-bit K/V against a direct
// double-precision formula on the rounded K/V (1e-5·max|ref|). qkv's cases stand by the
// median of `qkv_repetitions` repetitions, as ggml_fa_bench reports its median: on a
// shared machine one repetition can land on a slow second (the limits are best-of-N, the
// unfused formula one repetition). Google
// Benchmark's flags all work (--benchmark_filter, _min_time, ...); the summary covers
// what ran. Flags of its own:
//   --qkv_ggml_output=FILE   the output of ../shared/peer/ggml_fa_bench, whose figures are
//                            then put beside qkv's (bench/compare_with_ggml.sh does this)
//   --qkv_fresh_memory       let freed memory go back to the system (glibc's default), so
//                            that the unfused formula pays for page faults on every call
#include <qkv/attention.hpp>
#include <qkv/ops.hpp>
#include <qkv/parallel.hpp>
#include <qkv/softmax.hpp>

#include <benchmark/benchmark.h>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <malloc.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "machine_limits.hpp"

extern char** environ;

namespace {

using qkv::Index;
using qkv::Tensor;
namespace mb = qkv::bench;

#ifndef QKV_BENCH_BUILD_FLAGS
#define QKV_BENCH_BUILD_FLAGS "(not recorded)"
#endif

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "bench_attention: %s\n", message.c_str());
  std::exit(EXIT_FAILURE);
}

// ---- cases, inputs and the unfused reference -------------------------------------------

/// Element types of a case: f32 is float, bf16 qkv::bfloat16, f16 qkv::half.
enum class Dtype { f32, bf16, f16 };

const char* dtype_name(Dtype t) { return t == Dtype::bf16 ? "bf16" : t == Dtype::f16 ? "f16" : "f32"; }
double dtype_bytes(Dtype t) { return t == Dtype::f32 ? 4.0 : 2.0; }

/// One attention problem: B = 1, H heads, L query rows, S keys, head size E; the query's
/// element type (also the output's) and that of K and V.
struct Case {
  Index heads, query_len, key_len, head_dim;
  bool causal;
  Dtype q_type = Dtype::f32, kv_type = Dtype::f32;

  auto key() const { return std::tie(heads, query_len, key_len, head_dim, causal, q_type, kv_type); }
  bool operator<(const Case& other) const { return key() < other.key(); }
  bool operator==(const Case& other) const { return key() == other.key(); }

  qkv::Shape shape(Index rows) const { return {1, heads, rows, head_dim}; }
  /// 4·L·S·E·H for a full pass, half for causal.
  double flops() const {
    return (causal ? 2.0 : 4.0) * double(query_len) * double(key_len) * double(head_dim) * double(heads);
  }
  /// Bytes of K and V in their type, what a decode step has to read.
  double kv_bytes() const { return 2.0 * double(key_len) * double(head_dim) * double(heads) * dtype_bytes(kv_type); }
  /// The same problem with other element types.
  Case with_types(Dtype q, Dtype kv) const {
    Case c = *this;
    c.q_type = q, c.kv_type = kv;
    return c;
  }
};

template <class T>
constexpr Dtype dtype_of() {
  return std::is_same_v<T, qkv::bfloat16> ? Dtype::bf16 : std::is_same_v<T, qkv::half> ? Dtype::f16 : Dtype::f32;
}

/// Uniform values in [-1, 1) from xorshift64: generating 100 M of them takes a fraction of
/// a second (NumpyRandom's exact Gaussians would take longer than some cases).
Tensor<float> uniform(const qkv::Shape& shape, std::uint64_t seed) {
  Tensor<float> t(shape);
  std::uint64_t x = 0x9E3779B97F4A7C15ull ^ (seed * 0xBF58476D1CE4E5B9ull);
  for (float& value : t) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    value = float(double(x >> 40) * (1.0 / double(1 << 24))) * 2.0f - 1.0f;
  }
  return t;
}

/// q in Q, k and v in KV.
template <class Q, class KV>
struct TypedInputs {
  Tensor<Q> q;
  Tensor<KV> k, v;
};
using Inputs = TypedInputs<float, float>;

Inputs random_inputs(const Case& c) {
  return {uniform(c.shape(c.query_len), 1), uniform(c.shape(c.key_len), 2), uniform(c.shape(c.key_len), 3)};
}

/// The float inputs of `c` rounded to Q and KV (the same values, rounded, for every type).
template <class Q, class KV>
TypedInputs<Q, KV> random_inputs_as(const Case& c) {
  Inputs in = random_inputs(c);
  if constexpr (std::is_same_v<Q, float> && std::is_same_v<KV, float>) return in;
  else return {qkv::to<Q>(in.q), qkv::to<KV>(in.k), qkv::to<KV>(in.v)};
}

/// The rounded inputs widened back to float, exactly: what the references compute on.
template <class Q, class KV>
Inputs widened(const TypedInputs<Q, KV>& in) {
  return {qkv::to<float>(in.q), qkv::to<float>(in.k), qkv::to<float>(in.v)};
}

template <class T = float>
qkv::AttentionOptions<T> options_for(const Case& c) {
  qkv::AttentionOptions<T> options;
  options.causal = c.causal ? qkv::Causal::upper_left : qkv::Causal::none;
  return options;
}

/// The hidden keys of a causal pass, (L, S): key j is hidden from query i when j > i.
Tensor<bool> causal_hidden(const Case& c) {
  return qkv::triu(Tensor<bool>::ones({c.query_len, c.key_len}), 1);
}

/// The textbook formula with qkv's ops: Eigen GEMMs (on Eigen's threads) and a row
/// softmax, materialising the (1, H, L, S) scores.
Tensor<float> unfused_attention(const Inputs& in, const Case& c, const Tensor<bool>& hidden) {
  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  auto scores = qkv::matmul(in.q, qkv::transpose(in.k)) * scale;
  if (c.causal) scores = qkv::masked_fill(scores, hidden, -std::numeric_limits<float>::infinity());
  return qkv::matmul(qkv::softmax(scores, -1), in.v);
}

/// The accuracy a case's output must reach, relative to max|ref|: issue 15's bounds for
/// the 16-bit types (all-bf16 2⁻⁷, all-f16 2⁻¹⁰, float queries with 16-bit K/V 1e-5),
/// and 1e-4 for float.
double tolerance(const Case& c) {
  if (c.q_type == Dtype::bf16) return 0x1p-7;
  if (c.q_type == Dtype::f16) return 0x1p-10;
  if (c.kv_type != Dtype::f32) return 1e-5;
  return 1e-4;
}

/// Stops the program unless max|got − ref| <= bound·max|ref| (NaN fails).
void check_close(const std::string& what, const float* got, const double* ref, std::size_t n, double bound = 1e-4) {
  double max_diff = 0, max_ref = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double diff = std::abs(double(got[i]) - ref[i]);
    if (!(diff <= max_diff)) max_diff = diff;  // keeps a NaN
    max_ref = std::max(max_ref, std::abs(ref[i]));
  }
  if (!(max_diff <= bound * max_ref)) {
    char numbers[160];
    std::snprintf(numbers, sizeof numbers, "max|diff| %.3g > %.3g * max|ref| (max|ref| = %.3g)", max_diff, bound,
                  max_ref);
    die(what + ": qkv's result differs from the reference: " + numbers);
  }
}

void check_close(const std::string& what, const Tensor<float>& got, const Tensor<float>& ref, double bound) {
  if (got.shape() != ref.shape()) die(what + ": shape " + got.shape().str() + " != reference " + ref.shape().str());
  const std::vector<double> wide(ref.begin(), ref.end());
  check_close(what, got.data(), wide.data(), wide.size(), bound);
}

/// The unfused formula on `in`, kept for the next thread count of the same case (a case's
/// inputs are always the same).
const Tensor<float>& unfused_reference(const Case& c, const Inputs& in) {
  static Case last{};
  static Tensor<float> reference;
  if (!(last == c) || reference.empty()) {
    const int previous = Eigen::nbThreads();
    Eigen::setNbThreads(mb::available_threads());
    reference = unfused_attention(in, c, causal_hidden(c));
    Eigen::setNbThreads(previous);
    last = c;
  }
  return reference;
}

/// `rows` of every head of an L = S or decode pass (causal: upper-left) computed directly
/// in double, for cases whose unfused formula would need L·S floats (32768² = 4 GiB) or
/// whose float rounding would not meet the bound (16-bit K/V under float queries).
void check_rows_directly(const std::string& name, const Case& c, const Inputs& in, const Tensor<float>& out,
                         const std::vector<Index>& rows) {
  const Index L = c.query_len, S = c.key_len, E = c.head_dim;
  const double scale = 1.0 / std::sqrt(double(E));
  std::vector<float> got;
  std::vector<double> ref;
  for (Index h = 0; h < c.heads; ++h) {
    const float* q = in.q.data() + h * L * E;
    const float* k = in.k.data() + h * S * E;
    const float* v = in.v.data() + h * S * E;
    for (Index row : rows) {
      const Index visible = c.causal ? std::min(row + 1, S) : S;
      std::vector<double> weights(static_cast<std::size_t>(visible));
      double max_score = -std::numeric_limits<double>::infinity();
      for (Index j = 0; j < visible; ++j) {
        double dot = 0;
        for (Index e = 0; e < E; ++e) dot += double(q[row * E + e]) * double(k[j * E + e]);
        weights[std::size_t(j)] = dot * scale;
        max_score = std::max(max_score, dot * scale);
      }
      double total = 0;
      for (double& w : weights) total += (w = std::exp(w - max_score));
      for (Index e = 0; e < E; ++e) {
        double acc = 0;
        for (Index j = 0; j < visible; ++j) acc += weights[std::size_t(j)] * double(v[j * E + e]);
        ref.push_back(acc / total);
        got.push_back(out.data()[(h * L + row) * E + e]);
      }
    }
  }
  check_close(name, got.data(), ref.data(), ref.size(), tolerance(c));
}

/// Checks qkv's output on (c, threads) once per run: against the unfused formula in float
/// on the same (rounded) inputs, or, for float queries with 16-bit K/V, against the formula
/// in double on every row.
template <class Q, class KV>
void check_once(const std::string& name, const Case& c, int threads, const TypedInputs<Q, KV>& in,
                const Tensor<Q>& out) {
  static std::set<std::pair<Case, int>> checked;
  if (!checked.insert({c, threads}).second) return;
  const std::string what = name + " at " + std::to_string(threads) + " threads";
  if constexpr (std::is_same_v<Q, float> && std::is_same_v<KV, float>) {
    check_close(what, out, unfused_reference(c, in), tolerance(c));
  } else {
    const Inputs wide = widened(in);
    const Tensor<float> got = qkv::to<float>(out);
    if constexpr (std::is_same_v<Q, float>) {
      std::vector<Index> rows(static_cast<std::size_t>(c.query_len));
      for (Index i = 0; i < c.query_len; ++i) rows[std::size_t(i)] = i;
      check_rows_directly(what, c, wide, got, rows);
    } else {
      check_close(what, got, unfused_reference(c, wide), tolerance(c));
    }
  }
}

// ---- counters ------------------------------------------------------------------------

void set_flops(benchmark::State& state, double flops) {
  state.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

void set_bytes(benchmark::State& state, double bytes) {
  state.counters["B/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
}

/// Measures the share of the machine other processes took while a benchmark ran; not
/// reported for runs shorter than 0.2 s, which /proc/stat's 10 ms ticks cannot resolve.
class LoadMeter {
 public:
  LoadMeter() : start_(mb::CpuSnapshot::now()) {}
  void report(benchmark::State& state) const {
    const auto stop = mb::CpuSnapshot::now();
    if (stop.wall - start_.wall >= 0.2) state.counters["other%"] = mb::other_percent(start_, stop);
  }

 private:
  mb::CpuSnapshot start_;
};

bool enough_threads(benchmark::State& state, int threads) {
  if (threads <= mb::available_threads()) return true;
  state.SkipWithError(("needs " + std::to_string(threads) + " threads; OpenMP offers " +
                       std::to_string(mb::available_threads()))
                          .c_str());
  return false;
}

void use_threads(int threads) {
  qkv::set_num_threads(threads);
  Eigen::setNbThreads(threads);
}

// ---- the machine's limits ------------------------------------------------------------
// One iteration each, whose time is the best of a few trials: noise only slows a probe.

void BM_fma_peak(benchmark::State& state, int threads) {
  if (!enough_threads(state, threads)) return;
  const LoadMeter load;
  double flops = 0;
  for (auto _ : state) {
    double best = std::numeric_limits<double>::infinity();
    for (int trial = 0; trial < 5; ++trial) {
      const auto [seconds, trial_flops] = mb::fma_trial(threads, mb::fma_trial_steps);
      best = std::min(best, seconds);
      flops = trial_flops;
    }
    state.SetIterationTime(best);
  }
  set_flops(state, flops);
  load.report(state);
}

#ifdef __AVX512BF16__
/// The vdpbf16ps peak, as BM_fma_peak: 64 FLOP per 512-bit instruction.
void BM_bf16_dot_peak(benchmark::State& state, int threads) {
  if (!enough_threads(state, threads)) return;
  const LoadMeter load;
  double flops = 0;
  for (auto _ : state) {
    double best = std::numeric_limits<double>::infinity();
    for (int trial = 0; trial < 5; ++trial) {
      const auto [seconds, trial_flops] = mb::bf16_dot_trial(threads, mb::bf16_dot_trial_steps);
      best = std::min(best, seconds);
      flops = trial_flops;
    }
    state.SetIterationTime(best);
  }
  set_flops(state, flops);
  load.report(state);
}
#endif

/// The bandwidth probe's 1 GiB, first touched once by all threads (each its slice) and
/// shared by every probe of the run: touching 1 GiB afresh costs seconds in this VM.
const mb::ReadBuffer& probe_buffer() {
  static const mb::ReadBuffer buffer(mb::read_buffer_bytes, mb::available_threads());
  return buffer;
}

/// The best of 3 rounds of the 4 read patterns (mb::best_read), after one untimed pass;
/// the counter `streams` says which pattern won.
void BM_read_bandwidth(benchmark::State& state, int threads) {
  if (!enough_threads(state, threads)) return;
  const mb::ReadBuffer& buffer = probe_buffer();
  buffer.read_seconds(threads);
  const LoadMeter load;
  int streams = 0;
  for (auto _ : state) {
    const mb::BestRead best = mb::best_read(buffer, threads, 3);
    state.SetIterationTime(best.seconds);
    streams = best.streams;
  }
  set_bytes(state, double(buffer.bytes()));
  state.counters["streams"] = streams;
  load.report(state);
}

void BM_eigen_sgemm_2048(benchmark::State& state, int threads) {
  if (!enough_threads(state, threads)) return;
  mb::SgemmOperands operands(2048);
  mb::sgemm_seconds(operands, threads);
  const LoadMeter load;
  for (auto _ : state) {
    double best = std::numeric_limits<double>::infinity();
    for (int trial = 0; trial < 3; ++trial) best = std::min(best, mb::sgemm_seconds(operands, threads));
    state.SetIterationTime(best);
  }
  set_flops(state, operands.flops());
  load.report(state);
}

// ---- attention -----------------------------------------------------------------------

/// qkv on one case (prefill, decode or the notebook's), into a preallocated output.
template <class Q, class KV>
void BM_qkv(benchmark::State& state, const std::string& name, const Case& c, int threads,
            const TypedInputs<Q, KV>& in) {
  if (!enough_threads(state, threads)) return;
  use_threads(threads);
  Tensor<Q> out(c.shape(c.query_len));
  const auto options = options_for<Q>(c);
  qkv::scaled_dot_product_attention_out(out.view(), in.q, in.k, in.v, options);
  check_once(name, c, threads, in, out);
  const LoadMeter load;
  for (auto _ : state) {
    qkv::scaled_dot_product_attention_out(out.view(), in.q, in.k, in.v, options);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  load.report(state);
}

/// qkv on a prefill case in c's types (all float, all bf16 or all f16).
template <class T>
void BM_sdpa(benchmark::State& state, const std::string& name, const Case& c, int threads) {
  BM_qkv(state, name, c, threads, random_inputs_as<T, T>(c));
  set_flops(state, c.flops());
}

void BM_unfused_formula(benchmark::State& state, const Case& c, int threads) {
  if (!enough_threads(state, threads)) return;
  use_threads(threads);
  const Inputs in = random_inputs(c);
  const Tensor<bool> hidden = causal_hidden(c);  // built once, as a model's buffer
  const LoadMeter load;
  for (auto _ : state) benchmark::DoNotOptimize(unfused_attention(in, c, hidden).data());
  set_flops(state, c.flops());
  load.report(state);
}

/// The read bandwidth at `threads` right now, GB/s: one round of the 4 read patterns
/// over 1 GiB (mb::best_read), then a second pass of the one that won.
double read_bandwidth_now(int threads) {
  const mb::ReadBuffer& buffer = probe_buffer();
  const mb::BestRead first = mb::best_read(buffer, threads, 1);
  const double again = buffer.read_seconds(threads, first.streams);
  return double(buffer.bytes()) / std::min(first.seconds, again) * 1e-9;
}

/// Decode is bounded by the read bandwidth, which drifts by tens of percent from one
/// second to the next on this shared host; it is measured again right after the case.
/// KV is the type of K and V (float queries); GB/s counts their bytes in that type.
template <class KV>
void BM_decode(benchmark::State& state, const std::string& name, const Case& c, int threads) {
  BM_qkv(state, name, c, threads, random_inputs_as<float, KV>(c));
  set_bytes(state, c.kv_bytes());
  if (!state.error_occurred()) state.counters["read_GB/s"] = read_bandwidth_now(threads);
}

/// The notebooks' input: the six 3-d token embeddings of notebook 003, q = k = v = x.
void BM_notebook(benchmark::State& state) {
  const Tensor<float> x = {{0.43f, 0.15f, 0.89f}, {0.55f, 0.87f, 0.66f}, {0.57f, 0.85f, 0.64f},
                           {0.22f, 0.58f, 0.33f}, {0.77f, 0.25f, 0.10f}, {0.05f, 0.80f, 0.55f}};
  const Tensor<float> x4 = x.reshape({1, 1, 6, 3});
  BM_qkv(state, "BM_notebook", Case{1, 6, 6, 3, false}, 1, Inputs{x4, x4, x4});
}

// ---- the long causal case, in a child process ----------------------------------------
// Its peak resident memory is the point, and this process's peak is that of the unfused
// formula at L = 4096 (gigabytes). A forked child inherits that peak (fork copies the
// page tables, and Linux carries the old high-water mark across exec into ru_maxrss), so
// the child is this program exec'd afresh, and it reads its own VmHWM.

const char* const long_child_flag = "--qkv_long_causal_child=";

Case long_case() { return Case{1, 32768, 32768, 64, true}; }

struct ChildReport {
  long rss_start_kib = -1, rss_peak_kib = -1;
  double other_percent = 0;
  std::vector<double> seconds;
};

/// The child: times `calls` calls after a checked warm-up; prints its report on stdout.
int long_causal_child(int threads, int calls) {
  const long rss_start = mb::peak_rss_kib();
  const Case c = long_case();
  const Inputs in = random_inputs(c);
  Tensor<float> out(c.shape(c.query_len));
  qkv::set_num_threads(threads);
  const auto options = options_for(c);
  qkv::scaled_dot_product_attention_out(out.view(), in.q, in.k, in.v, options);
  const Index L = c.query_len;
  check_rows_directly("BM_long_causal (child)", c, in, out, {0, 1, L / 3, L / 2, 2 * L / 3, L - 2, L - 1});
  std::vector<double> seconds;
  const auto load_start = mb::CpuSnapshot::now();
  for (int i = 0; i < calls; ++i) {
    const double start = mb::now_seconds();
    qkv::scaled_dot_product_attention_out(out.view(), in.q, in.k, in.v, options);
    seconds.push_back(mb::now_seconds() - start);
  }
  const double other = mb::other_percent(load_start, mb::CpuSnapshot::now());
  std::printf("%ld %ld %.6f", rss_start, mb::peak_rss_kib(), other);
  for (double s : seconds) std::printf(" %.9f", s);
  std::printf("\n");
  return 0;
}

ChildReport run_long_causal_child(int threads, int calls) {
  char self[4096];
  const ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
  if (length <= 0) die("BM_long_causal: cannot find this program through /proc/self/exe");
  self[length] = '\0';
  std::string flag = long_child_flag + std::to_string(threads) + "," + std::to_string(calls);
  char* argv[] = {self, flag.data(), nullptr};

  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) die("BM_long_causal: pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, self, &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  if (spawned != 0) die("BM_long_causal: cannot start " + std::string(self));

  std::string text;
  char buffer[512];
  for (ssize_t n; (n = read(pipe_fds[0], buffer, sizeof buffer)) > 0;) text.append(buffer, std::size_t(n));
  close(pipe_fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("BM_long_causal: the child process failed");

  ChildReport report;
  std::istringstream fields(text);
  fields >> report.rss_start_kib >> report.rss_peak_kib >> report.other_percent;
  for (double s; fields >> s;) report.seconds.push_back(s);
  if (report.seconds.size() != std::size_t(calls)) die("BM_long_causal: unreadable child report '" + text + "'");
  return report;
}

void BM_long_causal(benchmark::State& state, int threads) {
  if (!enough_threads(state, threads)) return;
  const Case c = long_case();
  const ChildReport child = run_long_causal_child(threads, int(state.max_iterations));
  std::size_t i = 0;
  for (auto _ : state) state.SetIterationTime(child.seconds[i++ % child.seconds.size()]);
  set_flops(state, c.flops());
  const double io_kib = 4.0 * double(c.query_len) * double(c.head_dim) * sizeof(float) / 1024.0;  // q, k, v, out
  state.counters["peak_RSS_MiB"] = double(child.rss_peak_kib) / 1024.0;
  state.counters["start_RSS_MiB"] = double(child.rss_start_kib) / 1024.0;
  state.counters["RSS/io"] = double(child.rss_peak_kib) / io_kib;
  state.counters["other%"] = child.other_percent;
}

// ---- variants ------------------------------------------------------------------------

enum class VariantKind { plain, softcap, sinks, alibi, score_table, window };

const char* variant_name(VariantKind k) {
  switch (k) {
    case VariantKind::plain: return "plain";
    case VariantKind::softcap: return "softcap";
    case VariantKind::sinks: return "sinks";
    case VariantKind::alibi: return "alibi";
    case VariantKind::score_table: return "score_table";
    case VariantKind::window: return "window";
  }
  return "?";
}

constexpr Index bench_window = 4096;         // prefill: keys i − 4095 … i
constexpr Index bench_decode_window = 1024;  // decode: the last 1024 keys

/// A relative-position bias per (head, clamped distance) read from a small table, as T5's:
/// the user-defined score modifier.
struct TableBias {
  const float* table;  // (heads, 2·max_distance + 1)
  Index max_distance;
  float operator()(float s, Index, Index head, Index i, Index j) const {
    const Index d = std::clamp<Index>(i - j, -max_distance, max_distance) + max_distance;
    return s + table[head * (2 * max_distance + 1) + d];
  }
};

const std::vector<float>& bias_table(Index heads, Index max_distance) {
  static std::vector<float> table;
  table.resize(std::size_t(heads * (2 * max_distance + 1)));
  for (std::size_t i = 0; i < table.size(); ++i) table[i] = float(i % 17) / 17.0f - 0.5f;
  return table;
}

qkv::AttentionOptions<float> variant_options(VariantKind kind, const Case& c, Index window) {
  qkv::AttentionOptions<float> o = options_for(c);
  if (kind == VariantKind::softcap) o.softcap = 30.0;  // Gemma 2's attention cap (50) bites less on uniform inputs
  if (kind == VariantKind::sinks) o.sinks.assign(std::size_t(c.heads), 0.5);
  if (kind == VariantKind::alibi) o.alibi_slopes = qkv::alibi_slopes(c.heads);
  if (kind == VariantKind::window) o.window.left = window - 1;
  return o;
}

/// One call of `kind` into out.
void run_variant(VariantKind kind, const Case& c, Index window, const Inputs& in, Tensor<float>& out) {
  const auto options = variant_options(kind, c, window);
  if (kind == VariantKind::score_table) {
    const TableBias bias{bias_table(c.heads, 128).data(), 128};
    out = qkv::scaled_dot_product_attention(in.q, in.k, in.v, options, qkv::score_mod(bias));
  } else {
    qkv::scaled_dot_product_attention_out(out.view(), in.q, in.k, in.v, options);
  }
}

/// Checks the variant's kernel at these flags (packet widths, the user's modifier inlined)
/// on a small case of the same kind against the reference loop, which applies each
/// variant from its formula; stops the program if they differ.
void check_variant(VariantKind kind, const Case& c, Index window) {
  static std::set<std::pair<int, Index>> checked;
  if (!checked.insert({int(kind), c.head_dim}).second) return;
  Case small = c;
  small.heads = std::min<Index>(c.heads, 2), small.query_len = small.key_len = 777;
  const Inputs in = random_inputs(small);
  Tensor<float> fused(small.shape(small.query_len)), naive(small.shape(small.query_len));
  run_variant(kind, small, std::min<Index>(window, 100), in, fused);
  auto& config = qkv::detail::kernel_config();
  const double saved = config.naive_max_flops;
  config.naive_max_flops = std::numeric_limits<double>::infinity();
  run_variant(kind, small, std::min<Index>(window, 100), in, naive);
  config.naive_max_flops = saved;
  check_close(std::string("BM_variant/") + variant_name(kind), fused, naive, 1e-4);
}

/// Visible (query, key) pairs of a causal pass of L = S rows with a window of w keys.
double window_pairs(Index len, Index w) {
  const double full = double(std::min(len, w));
  return full * (full + 1) / 2 + double(len - std::min(len, w)) * double(w);
}

void BM_variant(benchmark::State& state, VariantKind kind, const Case& c, Index window, int threads) {
  if (!enough_threads(state, threads)) return;
  use_threads(threads);
  check_variant(kind, c, window);
  const Inputs in = random_inputs(c);
  Tensor<float> out(c.shape(c.query_len));
  run_variant(kind, c, window, in, out);
  const LoadMeter load;
  for (auto _ : state) {
    run_variant(kind, c, window, in, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  const double pairs = kind == VariantKind::window ? window_pairs(c.query_len, window)
                                                   : c.flops() / (4.0 * double(c.head_dim) * double(c.heads));
  set_flops(state, 4.0 * pairs * double(c.head_dim) * double(c.heads));
  load.report(state);
}

void BM_variant_decode(benchmark::State& state, VariantKind kind, const Case& c, int threads) {
  if (!enough_threads(state, threads)) return;
  use_threads(threads);
  const Inputs in = random_inputs(c);
  Tensor<float> out(c.shape(c.query_len));
  run_variant(kind, c, bench_decode_window, in, out);
  const LoadMeter load;
  for (auto _ : state) {
    run_variant(kind, c, bench_decode_window, in, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  const double keys = kind == VariantKind::window ? double(bench_decode_window) : double(c.key_len);
  set_bytes(state, c.kv_bytes() * keys / double(c.key_len));
  load.report(state);
}

// ---- registration ----------------------------------------------------------------------

/// What the summary shows for one row and where its figures come from (benchmark names).
struct Row {
  enum Kind { limit, prefill, decode, long_context, notebook } kind;
  std::string label;
  int threads = 1;
  Case c{};
  std::string qkv, unfused;  // benchmark names; unfused may be empty
  std::string ggml_label;    // the case's name in ggml's table when it is not `label`
};

std::vector<Row>& rows() {
  static std::vector<Row> all;
  return all;
}

std::string case_label(const char* prefix, const Case& c) {
  return std::string(prefix) + " L=S=" + std::to_string(c.query_len) + " E=" + std::to_string(c.head_dim) +
         " H=" + std::to_string(c.heads) + (c.causal ? " causal" : " full");
}

std::string args_name(const Case& c, int threads) {
  return "/L:" + std::to_string(c.query_len) + "/E:" + std::to_string(c.head_dim) +
         "/causal:" + std::to_string(int(c.causal)) + "/threads:" + std::to_string(threads);
}

template <class Fn>
benchmark::internal::Benchmark* add(const std::string& name, Fn&& fn) {
  return benchmark::RegisterBenchmark(name.c_str(), std::forward<Fn>(fn));
}

constexpr int qkv_repetitions = 5;

/// A qkv case: timed `qkv_repetitions` times; the summary takes their median.
template <class Fn>
benchmark::internal::Benchmark* add_repeated(const std::string& name, Fn&& fn) {
  return add(name, std::forward<Fn>(fn))->Repetitions(qkv_repetitions)->DisplayAggregatesOnly(true);
}

void register_limits() {
  for (int threads : {1, 2}) {
    const std::string t = "/threads:" + std::to_string(threads);
    add("BM_fma_peak" + t, [threads](benchmark::State& s) { BM_fma_peak(s, threads); })
        ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
    rows().push_back({Row::limit, "FMA peak, FP32", threads, {}, "BM_fma_peak" + t, "", ""});
  }
#ifdef __AVX512BF16__
  for (int threads : {1, 2}) {
    const std::string t = "/threads:" + std::to_string(threads);
    add("BM_bf16_dot_peak" + t, [threads](benchmark::State& s) { BM_bf16_dot_peak(s, threads); })
        ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
    rows().push_back({Row::limit, "bf16 dot peak, vdpbf16ps", threads, {}, "BM_bf16_dot_peak" + t, "", ""});
  }
#endif
  for (int threads : {1, 2}) {
    const std::string t = "/threads:" + std::to_string(threads);
    add("BM_read_bandwidth" + t, [threads](benchmark::State& s) { BM_read_bandwidth(s, threads); })
        ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
    rows().push_back({Row::limit, "read bandwidth, 1 GiB", threads, {}, "BM_read_bandwidth" + t, "", ""});
  }
  for (int threads : {1, 2}) {
    const std::string t = "/threads:" + std::to_string(threads);
    add("BM_eigen_sgemm_2048" + t, [threads](benchmark::State& s) { BM_eigen_sgemm_2048(s, threads); })
        ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
    rows().push_back({Row::limit, "Eigen SGEMM 2048³", threads, {}, "BM_eigen_sgemm_2048" + t, "", ""});
  }
}

/// qkv and the unfused formula on one case at 1 and 2 threads, one after the other so
/// that they share the machine's state.
void register_prefill(const char* prefix, const Case& c, std::vector<int> thread_counts) {
  const bool single_head = c.heads == 1;
  const std::string sdpa = single_head ? "BM_sdpa_1head" : "BM_sdpa";
  const std::string unfused = single_head ? "BM_unfused_1head" : "BM_unfused_formula";
  for (int threads : thread_counts) {
    const std::string name = sdpa + args_name(c, threads);
    add_repeated(name, [name, c, threads](benchmark::State& s) { BM_sdpa<float>(s, name, c, threads); })
        ->UseRealTime()->Unit(benchmark::kMillisecond);
  }
  for (int threads : thread_counts) {
    add(unfused + args_name(c, threads), [c, threads](benchmark::State& s) { BM_unfused_formula(s, c, threads); })
        ->UseRealTime()->Unit(benchmark::kMillisecond);
    rows().push_back({Row::prefill, case_label(prefix, c), threads, c, sdpa + args_name(c, threads),
                      unfused + args_name(c, threads), ""});
  }
}

/// qkv on one prefill case with q, k, v and the output all in T (bfloat16 or half), at 1
/// and 2 threads; registered right after the float case, whose rate it is compared with.
template <class T>
void register_half_prefill(const Case& float_case) {
  const Dtype type = dtype_of<T>();
  const Case c = float_case.with_types(type, type);
  const std::string sdpa = std::string("BM_sdpa_") + dtype_name(type);
  for (int threads : {1, 2}) {
    const std::string name = sdpa + args_name(c, threads);
    add_repeated(name, [name, c, threads](benchmark::State& s) { BM_sdpa<T>(s, name, c, threads); })
        ->UseRealTime()->Unit(benchmark::kMillisecond);
    rows().push_back({Row::prefill, case_label((std::string("prefill ") + dtype_name(type)).c_str(), c), threads, c,
                      name, "", case_label("prefill", c)});
  }
}

/// Each variant right after the plain kernel on the same case, so that they share the
/// machine's state; their ratio is the target.
void register_variants() {
  const auto add_variant = [](VariantKind kind, const Case& c, Index window, int threads, const std::string& args) {
    const std::string name = std::string("BM_variant/") + variant_name(kind) + args;
    add_repeated(name, [kind, c, window, threads](benchmark::State& s) { BM_variant(s, kind, c, window, threads); })
        ->UseRealTime()->Unit(benchmark::kMillisecond);
  };
  for (Index E : {64, 128})
    for (int threads : {1, 2}) {
      const Case c{8, 4096, 4096, E, false};
      const std::string args = "/L:4096/E:" + std::to_string(E) + "/threads:" + std::to_string(threads);
      for (VariantKind kind : {VariantKind::plain, VariantKind::softcap, VariantKind::sinks, VariantKind::alibi,
                               VariantKind::score_table})
        add_variant(kind, c, 0, threads, args);
    }
  for (int threads : {1, 2}) {
    const Case c{1, 32768, 32768, 64, true};
    const std::string args = "/L:32768/E:64/causal/threads:" + std::to_string(threads);
    for (VariantKind kind : {VariantKind::plain, VariantKind::window}) {
      const std::string name = std::string("BM_variant/") + variant_name(kind) + args;
      add(name, [kind, c, threads](benchmark::State& s) { BM_variant(s, kind, c, bench_window, threads); })
          ->UseRealTime()->Unit(benchmark::kMillisecond)->Repetitions(3)->DisplayAggregatesOnly(true);
    }
  }
  const Case decode{32, 1, 4096, 128, false};
  for (int threads : {1, 2})
    for (VariantKind kind : {VariantKind::plain, VariantKind::softcap, VariantKind::sinks, VariantKind::alibi,
                             VariantKind::score_table, VariantKind::window}) {
      const std::string name = std::string("BM_variant_decode/") + variant_name(kind) + "/threads:" + std::to_string(threads);
      add_repeated(name, [kind, decode, threads](benchmark::State& s) { BM_variant_decode(s, kind, decode, threads); })
          ->UseRealTime()->Unit(benchmark::kMicrosecond);
    }
}

void register_benchmarks() {
  register_limits();
  for (Index L : {512, 2048, 4096})
    for (Index E : {64, 128})
      for (bool causal : {false, true}) {
        const Case c{8, L, L, E, causal};
        register_prefill("prefill", c, {1, 2});
        // The 16-bit types at the long lengths, and at 512 on one small case (the smoke
        // test's), beside the float case they are compared with.
        if (L >= 2048 || (E == 64 && causal)) {
          register_half_prefill<qkv::bfloat16>(c);
          register_half_prefill<qkv::half>(c);
        }
      }
  // The first benchmark's sweep (one head, one thread), kept for comparison with it.
  for (Index L : {64, 256, 1024, 4096})
    for (Index E : {64, 128}) register_prefill("1 head", Case{1, L, L, E, false}, {1});

  for (int threads : {1, 2}) {
    const std::string name = "BM_long_causal/threads:" + std::to_string(threads);
    // Two timed calls of about a second each, after a checked one.
    add(name, [threads](benchmark::State& s) { BM_long_causal(s, threads); })
        ->UseManualTime()->Iterations(2)->Unit(benchmark::kMillisecond);
    rows().push_back({Row::long_context, case_label("long", long_case()), threads, long_case(), name, "", ""});
  }
  const Case decode{32, 1, 4096, 128, false};
  const std::string decode_label = "decode L=1 S=4096 E=128 H=32";
  for (int threads : {1, 2}) {
    const std::string name = "BM_decode/threads:" + std::to_string(threads);
    add_repeated(name, [name, decode, threads](benchmark::State& s) { BM_decode<float>(s, name, decode, threads); })
        ->UseRealTime()->Unit(benchmark::kMicrosecond);
    rows().push_back({Row::decode, decode_label, threads, decode, name, "", ""});
  }
  // A 16-bit KV cache: float queries, K and V in bfloat16 or half.
  const auto add_half_decode = [&](auto type_tag) {
    using KV = decltype(type_tag);
    const Case c = decode.with_types(Dtype::f32, dtype_of<KV>());
    for (int threads : {1, 2}) {
      const std::string name = std::string("BM_decode_") + dtype_name(c.kv_type) + "kv/threads:" + std::to_string(threads);
      add_repeated(name, [name, c, threads](benchmark::State& s) { BM_decode<KV>(s, name, c, threads); })
          ->UseRealTime()->Unit(benchmark::kMicrosecond);
      rows().push_back({Row::decode, "decode " + std::string(dtype_name(c.kv_type)) + " K/V L=1 S=4096 E=128 H=32",
                        threads, c, name, "", decode_label});
    }
  };
  add_half_decode(qkv::bfloat16{});
  add_half_decode(qkv::half{});
  register_variants();
  add_repeated("BM_notebook", BM_notebook)->UseRealTime()->Unit(benchmark::kNanosecond);
  rows().push_back({Row::notebook, "notebook 003, 6×3, q=k=v=x", 1, Case{1, 6, 6, 3, false}, "BM_notebook", "", ""});
}

// ---- results and the summary ---------------------------------------------------------

struct Result {
  double seconds = 0;  // per iteration
  std::map<std::string, double> counters;
};

/// The console reporter Google Benchmark would use, which also keeps every result.
class CollectingReporter : public benchmark::BenchmarkReporter {
 public:
  explicit CollectingReporter(benchmark::BenchmarkReporter* display) : display_(display) {}

  bool ReportContext(const Context& context) override {
    display_->SetOutputStream(&GetOutputStream());
    display_->SetErrorStream(&GetErrorStream());
    return display_->ReportContext(context);
  }
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) keep(run);
    display_->ReportRuns(runs);
  }
  void Finalize() override { display_->Finalize(); }

  const Result* find(const std::string& name) const {
    const auto it = results_.find(name);
    return it == results_.end() ? nullptr : &it->second;
  }

 private:
  // Keyed by the name given at registration (the arguments are part of it). Where a case
  // was repeated, the median of the repetitions stands for it.
  void keep(const Run& run) {
    if (run.error_occurred || run.iterations == 0) return;
    const bool median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
    if (run.run_type == Run::RT_Aggregate && !median) return;
    const std::string& name = run.run_name.function_name;
    if (!median && medians_.count(name)) return;
    if (median) medians_.insert(name);
    Result r;
    r.seconds = run.real_accumulated_time / double(run.iterations);
    for (const auto& [key, counter] : run.counters) r.counters[key] = counter.value;
    results_[name] = r;
  }

  benchmark::BenchmarkReporter* display_;
  std::map<std::string, Result> results_;
  std::set<std::string> medians_;
};

/// One row of ggml_fa_bench: its median time per call and the rates of that median.
struct GgmlRow {
  double gflops = 0, gbs = 0, median_ms = 0;
};

/// ggml_fa_bench's figures: (case, kv type, threads) -> its row, and its limits.
struct GgmlFigures {
  std::map<std::tuple<std::string, std::string, int>, GgmlRow> rates;
  std::vector<std::string> limit_lines;
  bool empty() const { return rates.empty(); }

  const GgmlRow* find(const std::string& label, const char* kv, int threads) const {
    const auto it = rates.find({label, kv, threads});
    return it == rates.end() ? nullptr : &it->second;
  }

  // Its rows are "%-40s %-4s %3d ..." (case, kv, threads, median_ms, best_ms, GFLOP/s,
  // ratio, GB/s, bw%, maxerr, reps, other%).
  static GgmlFigures read(const std::string& path) {
    GgmlFigures figures;
    std::ifstream file(path);
    if (!file) die("cannot read ggml's output " + path);
    for (std::string line; std::getline(file, line);) {
      if (line.rfind("LIMIT", 0) == 0) figures.limit_lines.push_back(line);
      if (line.size() < 41) continue;
      std::istringstream fields(line.substr(40));
      std::string kv, median, best, gflops, ratio, gbs;
      int threads = 0;
      if (!(fields >> kv >> threads >> median >> best >> gflops >> ratio >> gbs) || (kv != "f32" && kv != "f16"))
        continue;
      std::string label = line.substr(0, 40);
      label.erase(label.find_last_not_of(' ') + 1);
      figures.rates[{label, kv, threads}] = {std::atof(gflops.c_str()), gbs == "-" ? 0.0 : std::atof(gbs.c_str()),
                                             std::atof(median.c_str())};
    }
    return figures;
  }
};

std::string fixed(double value, int digits) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", digits, value);
  return text;
}

std::string eigen_simd() {
  std::string isa = Eigen::SimdInstructionSetsInUse();
  return isa.empty() ? "none" : isa;
}

std::string compiler() {
#if defined(__clang__)
  return std::string("clang++ ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("g++ ") + __VERSION__;
#else
  return "unknown compiler";
#endif
}

std::string openmp() {
#ifdef _OPENMP
  return "on (OpenMP " + std::to_string(_OPENMP) + ", " + std::to_string(mb::available_threads()) + " threads available)";
#else
  return "off (one thread)";
#endif
}

class Summary {
 public:
  Summary(const CollectingReporter& results, const GgmlFigures& ggml, bool keeps_freed)
      : results_(results), ggml_(ggml), keeps_freed_memory(keeps_freed) {}

  void print(double wall_seconds, double other_percent) const {
    std::printf("\n## qkv attention benchmark: summary\n\n");
    std::printf("- machine: %s, %ld online CPUs\n", mb::cpu_model().c_str(), sysconf(_SC_NPROCESSORS_ONLN));
    std::printf("- build: %s; flags `%s`; OpenMP %s; Eigen %d.%d.%d SIMD: %s\n", compiler().c_str(),
                QKV_BENCH_BUILD_FLAGS, openmp().c_str(), EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION,
                EIGEN_MINOR_VERSION, eigen_simd().c_str());
    std::printf("- memory: first touch of fresh memory costs %.1f µs per 4 KiB page (page fault and zeroing)%s\n",
                mb::first_touch_us_per_page(),
                keeps_freed_memory ? "; freed memory is kept in the process (see --qkv_fresh_memory)" : "");
    std::printf("- run: %.0f s wall; other processes and steal took %.0f%% of the machine meanwhile\n",
                wall_seconds, other_percent);
    for (const auto& line : ggml_.limit_lines) std::printf("- ggml's run: %s\n", line.c_str());
    std::printf(
        "- GFLOP/s = 4·L·S·E·H / time, causal half that; decode: GB/s of K and V read, in their type (2 bytes an "
        "element for bf16 and f16). \"of limit\": of the FMA peak at that thread count (%sdecode: of the read "
        "bandwidth at that thread count, measured right after it); \"time\": per call (decode: per step); "
        "\"vs qkv f32\": qkv's time on the same case in float in this run ÷ this time (prefill: the ratio of the "
        "rates; decode: of the float cache's step); \"of SGEMM\": of Eigen's SGEMM 2048³ at that thread count; causal/full and 2t/1t are rate ratios%s; "
        "other%%: CPU taken by other processes during the row (> a few %% = noisy)\n\n",
        has_bf16_peak() ? "bf16 prefill: of the bf16 dot-product peak, vdpbf16ps; " : "",
        ggml_.empty() ? ""
                      : "; qkv/ggml: rate ratios with ggml's f32 and f16 K/V on the same case (16-bit decode: "
                        "ggml's time per step ÷ qkv's, ggml's cells then in ms per step)");
    std::printf(
        "| case | threads | qkv | of limit | time | vs qkv f32 | of SGEMM | unfused | qkv/unfused | causal/full | 2t/1t "
        "|%s other%% | notes |\n",
        ggml_.empty() ? "" : " ggml f32 | ggml f16 | qkv/ggml f32 | qkv/ggml f16 |");
    std::printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |%s ---: | --- |\n",
                ggml_.empty() ? "" : " ---: | ---: | ---: | ---: |");
    for (const Row& row : rows())
      if (const Result* r = results_.find(row.qkv)) print_row(row, *r);
  }

 private:
  /// The measured limit (FMA peak, bandwidth, SGEMM) at `threads`, else the 1-thread one × threads.
  double limit(const char* bench, const char* counter, int threads) const {
    const std::string base = std::string(bench) + "/threads:";
    if (const Result* r = results_.find(base + std::to_string(threads))) return r->counters.at(counter);
    if (const Result* r = results_.find(base + "1")) return r->counters.at(counter) * threads;
    return 0;
  }

  bool has_bf16_peak() const { return results_.find("BM_bf16_dot_peak/threads:1") != nullptr; }

  /// qkv's rate of the same case with other causality or thread count, 0 if it did not run.
  double rate_of(const Row& row, bool causal, int threads) const {
    Case c = row.c;
    c.causal = causal;
    return rate_of(row.kind, c, threads);
  }

  /// qkv's rate of case `c` at `threads`, 0 if it did not run.
  double rate_of(Row::Kind kind, const Case& c, int threads) const {
    for (const Row& other : rows()) {
      if (other.kind != kind || other.threads != threads || !(other.c == c)) continue;
      const Result* r = results_.find(other.qkv);
      return r ? rate(other, *r) : 0;
    }
    return 0;
  }

  /// qkv's time per call of case `c` at `threads`, 0 if it did not run.
  double seconds_of(Row::Kind kind, const Case& c, int threads) const {
    for (const Row& other : rows()) {
      if (other.kind != kind || other.threads != threads || !(other.c == c)) continue;
      const Result* r = results_.find(other.qkv);
      return r ? r->seconds : 0;
    }
    return 0;
  }

  /// A call's (decode: a step's) time, with a unit that suits it.
  static std::string time_text(const Row& row, const Result& r) {
    switch (row.kind) {
      case Row::limit: return "-";
      case Row::decode: return fixed(r.seconds * 1e6, 0) + " µs";
      case Row::notebook: return fixed(r.seconds * 1e9, 0) + " ns";
      default: return fixed(r.seconds * 1e3, r.seconds < 0.1 ? 2 : 1) + " ms";
    }
  }

  static double rate(const Row& row, const Result& r) {
    switch (row.kind) {
      case Row::limit: return r.counters.count("FLOP/s") ? r.counters.at("FLOP/s") * 1e-9 : r.counters.at("B/s") * 1e-9;
      case Row::decode: return r.counters.at("B/s") * 1e-9;
      case Row::notebook: return r.seconds * 1e9;
      default: return r.counters.at("FLOP/s") * 1e-9;
    }
  }

  static std::string ratio(double a, double b) { return a > 0 && b > 0 ? fixed(a / b, 2) : "-"; }

  void print_row(const Row& row, const Result& r) const {
    const double value = rate(row, r);
    const bool bytes = row.kind == Row::decode || (row.kind == Row::limit && r.counters.count("B/s"));
    std::string shown = row.kind == Row::notebook ? fixed(value, 0) + " ns/call"
                                                  : fixed(value, 1) + (bytes ? " GB/s" : " GFLOP/s");
    std::string of_limit = "-", of_sgemm = "-", unfused = "-", vs_unfused = "-", causal_full = "-", speedup = "-";
    std::string vs_float = "-", notes;
    const bool bf16_peak = row.c.q_type == Dtype::bf16 && has_bf16_peak();
    if (row.kind == Row::prefill || row.kind == Row::long_context || (row.kind == Row::limit && !bytes)) {
      of_limit = ratio(value, limit(bf16_peak ? "BM_bf16_dot_peak" : "BM_fma_peak", "FLOP/s", row.threads) * 1e-9);
      if (row.kind != Row::limit) of_sgemm = ratio(value, limit("BM_eigen_sgemm_2048", "FLOP/s", row.threads) * 1e-9);
    }
    const bool typed = row.c.q_type != Dtype::f32 || row.c.kv_type != Dtype::f32;
    // The speed-up over float: of rates for prefill (the same FLOPs), of times for decode
    // (whose GB/s count different bytes).
    const double float_seconds = seconds_of(row.kind, row.c.with_types(Dtype::f32, Dtype::f32), row.threads);
    if (typed) vs_float = ratio(float_seconds, r.seconds);
    if (row.kind == Row::decode) {
      const double run_bandwidth = limit("BM_read_bandwidth", "B/s", row.threads) * 1e-9;
      const double adjacent = r.counters.count("read_GB/s") ? r.counters.at("read_GB/s") : 0.0;
      of_limit = ratio(value, adjacent > 0 ? adjacent : run_bandwidth);
      notes = "read bandwidth right after it: " + fixed(adjacent, 1) + " GB/s" +
              (run_bandwidth > 0 ? " (" + ratio(value, run_bandwidth) + " of the run's probe, " + fixed(run_bandwidth, 1) + " GB/s)" : "");
    }
    if (row.kind == Row::decode && typed) {
      // What decode users count: the time of a step, beside the float cache's and ggml's.
      notes = fixed(r.seconds * 1e6, 0) + " µs per step" +
              (float_seconds > 0 ? " = " + ratio(r.seconds, float_seconds) + "× the float cache's time" : "") +
              ggml_time_note(row, r.seconds) + "; " + notes;
    }
    if (row.kind == Row::limit && row.qkv.rfind("BM_fma_peak", 0) == 0) of_limit = "1.00";
    if (row.kind == Row::limit && row.qkv.rfind("BM_bf16_dot_peak", 0) == 0) {
      of_limit = "1.00";
      notes = ratio(value, limit("BM_fma_peak", "FLOP/s", row.threads) * 1e-9) + "× the FP32 FMA peak";
    }
    if (row.kind == Row::limit && bytes) {
      of_limit = "1.00";
      if (r.counters.count("streams"))
        notes = "best of 1, 2, 4 and 8 interleaved streams per thread: " + fixed(r.counters.at("streams"), 0) +
                " won";
    }
    if (!row.unfused.empty())
      if (const Result* u = results_.find(row.unfused)) {
        const double unfused_rate = rate(row, *u);
        unfused = fixed(unfused_rate, 1) + " GFLOP/s";
        vs_unfused = ratio(value, unfused_rate);
      }
    if (row.kind != Row::limit && row.kind != Row::notebook) {
      if (row.c.causal) causal_full = ratio(value, rate_of(row, false, row.threads));
      if (row.threads > 1) speedup = ratio(value, rate_of(row, row.c.causal, 1));
    }
    if (row.kind == Row::limit) speedup = row.threads > 1 ? ratio(value, limit_rate(row, 1)) : "-";
    if (row.kind == Row::long_context) notes = rss_note(row, r);
    if (row.kind == Row::notebook) notes = "target < 300 ns";
    std::printf("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |", row.label.c_str(), row.threads,
                shown.c_str(), of_limit.c_str(), time_text(row, r).c_str(), vs_float.c_str(), of_sgemm.c_str(),
                unfused.c_str(), vs_unfused.c_str(), causal_full.c_str(), speedup.c_str());
    if (!ggml_.empty()) std::printf("%s", ggml_cells(row, r, value).c_str());
    std::printf(" %s | %s |\n", r.counters.count("other%") ? fixed(r.counters.at("other%"), 0).c_str() : "-",
                notes.c_str());
  }

  double limit_rate(const Row& row, int threads) const {
    for (const Row& other : rows())
      if (other.kind == Row::limit && other.label == row.label && other.threads == threads)
        if (const Result* r = results_.find(other.qkv)) return rate(other, *r);
    return 0;
  }

  static std::string rss_note(const Row& row, const Result& r) {
    const double io_mib = 4.0 * double(row.c.query_len) * double(row.c.head_dim) * sizeof(float) / (1 << 20);
    const double peak = r.counters.at("peak_RSS_MiB"), start = r.counters.at("start_RSS_MiB");
    return "peak RSS " + fixed(peak, 1) + " MiB = " + fixed(peak / io_mib, 2) + "× q,k,v,out (" + fixed(io_mib, 0) +
           " MiB); " + fixed(peak - start, 1) + " MiB over the process before it allocated them = " +
           fixed((peak - start) / io_mib, 2) + "×";
  }

  const GgmlRow* ggml_row(const Row& row, const char* kv) const {
    if (row.kind != Row::prefill && row.kind != Row::decode) return nullptr;
    return ggml_.find(row.ggml_label.empty() ? row.label : row.ggml_label, kv, row.threads);
  }

  /// "; 0.52× ggml f16's (2.90 ms)": the step time against ggml's faster K/V type.
  std::string ggml_time_note(const Row& row, double seconds) const {
    const GgmlRow* best = nullptr;
    const char* best_kv = "";
    for (const char* kv : {"f32", "f16"})
      if (const GgmlRow* g = ggml_row(row, kv); g && g->median_ms > 0 && (!best || g->median_ms < best->median_ms))
        best = g, best_kv = kv;
    if (!best) return "";
    return ", " + ratio(seconds * 1e3, best->median_ms) + "× ggml " + best_kv + "'s (" + fixed(best->median_ms, 2) +
           " ms)";
  }

  // Prefill: ggml's GFLOP/s and the ratios of rates. Decode with float K/V: its GB/s and
  // their ratio (the rows as they were); decode with 16-bit K/V: its time per step and
  // ggml's time ÷ qkv's (the bytes differ, the step is the same).
  std::string ggml_cells(const Row& row, const Result& r, double value) const {
    std::string cells;
    const bool by_time = row.kind == Row::decode && row.c.kv_type != Dtype::f32;
    double figures[2] = {0, 0};
    const char* kinds[2] = {"f32", "f16"};
    for (int i = 0; i < 2; ++i) {
      if (const GgmlRow* g = ggml_row(row, kinds[i]))
        figures[i] = by_time ? g->median_ms : row.kind == Row::decode ? g->gbs : g->gflops;
      const std::string shown = by_time ? fixed(figures[i], 2) + " ms" : fixed(figures[i], 1);
      cells += " " + (figures[i] > 0 ? shown : std::string("-")) + " |";
    }
    for (double figure : figures) cells += " " + (by_time ? ratio(figure, r.seconds * 1e3) : ratio(value, figure)) + " |";
    return cells;
  }

  const CollectingReporter& results_;
  const GgmlFigures& ggml_;
  bool keeps_freed_memory;
};

/// Removes every argument starting with `prefix` from argv and returns what follows the
/// prefix in the last one ("" when absent).
std::string take_flag(int& argc, char** argv, const std::string& prefix) {
  std::string value;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind(prefix, 0) == 0) value = arg.substr(prefix.size());
    else argv[kept++] = argv[i];
  }
  argc = kept;
  argv[argc] = nullptr;
  return value;
}

bool take_switch(int& argc, char** argv, const std::string& name) {
  const int before = argc;
  take_flag(argc, argv, name);
  return argc != before;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string child = take_flag(argc, argv, long_child_flag);
  if (!child.empty()) {
    int threads = 1, calls = 1;
    if (std::sscanf(child.c_str(), "%d,%d", &threads, &calls) != 2) die("bad " + std::string(long_child_flag) + child);
    return long_causal_child(threads, calls);
  }
  // Freed memory stays in the process, so that the unfused formula's L×S temporaries and
  // Eigen's GEMM buffers are not page-faulted afresh on every call: a fault costs
  // ~20 µs per 4 KiB page in this sandboxed VM (~0.2 GB/s), which would otherwise dominate
  // them. qkv's kernel writes into preallocated memory and is unaffected.
  const bool keep_freed_memory = !take_switch(argc, argv, "--qkv_fresh_memory");
  if (keep_freed_memory) {
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, -1);
  }
  const std::string ggml_path = take_flag(argc, argv, "--qkv_ggml_output=");
  const GgmlFigures ggml = ggml_path.empty() ? GgmlFigures{} : GgmlFigures::read(ggml_path);

  register_benchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  const auto start = mb::CpuSnapshot::now();
  CollectingReporter reporter(benchmark::CreateDefaultDisplayReporter());
  benchmark::RunSpecifiedBenchmarks(&reporter);
  const auto stop = mb::CpuSnapshot::now();
  Summary(reporter, ggml, keep_freed_memory).print(stop.wall - start.wall, mb::other_percent(start, stop));
  benchmark::Shutdown();
  return 0;
}
