// SPDX-License-Identifier: MIT
// Backward benchmark: qkv::scaled_dot_product_attention_backward (the fused FlashAttention-2
// kernel) on the cases of issue 17, beside qkv's forward pass, the unfused backward (P
// materialised, Eigen GEMMs: the formula a user would write) and the FMA peak measured in
// the same run.
//
// Benchmarks, as --benchmark_filter sees them:
//   BM_fma_peak/threads:{1,2}                                        the limit
//   BM_forward, BM_backward, BM_unfused_backward
//       /L:4096/E:{64,128}/causal:{0,1}/threads:{1,2}                B = 1, H = 8, L = S
//   BM_backward_long/threads:{1,2}   H = 1, L = S = 32768, E = 64, causal; peak resident memory
//   BM_backward_small                a small case, for the smoke test
//
// Convention (FlashAttention-2's): the forward is 4·L·S·E·H floating-point operations, the
// backward 2.5 times that, a causal pass half. Inputs are uniform in [-1, 1). Each fused
// backward case is checked once before it is timed: against the unfused backward
// (max|diff| <= 1e-4·max|ref| per gradient), or for the long case, dQ rows computed
// directly in double; the program stops if it is wrong. The qkv cases report the median of
// 3 repetitions.
#include <qkv/attention.hpp>
#include <qkv/attention_backward.hpp>
#include <qkv/parallel.hpp>

#include <benchmark/benchmark.h>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "machine_limits.hpp"

extern char** environ;

namespace {

using qkv::Index;
using qkv::Tensor;
namespace mb = qkv::bench;

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "bench_backward: %s\n", message.c_str());
  std::exit(EXIT_FAILURE);
}

/// One attention problem: B = 1, H heads, L = S, head size E (= Ev).
struct Case {
  Index heads, len, head_dim;
  bool causal;

  qkv::Shape shape() const { return {1, heads, len, head_dim}; }
  double forward_flops() const {
    return (causal ? 2.0 : 4.0) * double(len) * double(len) * double(head_dim) * double(heads);
  }
  double backward_flops() const { return 2.5 * forward_flops(); }
};

/// Uniform values in [-1, 1) from xorshift64.
Tensor<float> uniform(const qkv::Shape& shape, std::uint64_t seed) {
  Tensor<float> t(shape);
  std::uint64_t x = 0x9E3779B97F4A7C15ull ^ (seed * 0xBF58476D1CE4E5B9ull);
  for (float& value : t) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    value = float(double(x >> 40) * (1.0 / double(1 << 24))) * 2.0f - 1.0f;
  }
  return t;
}

/// q, k, v, the incoming gradient, and the forward's output and log-sum-exp.
struct Inputs {
  Tensor<float> q, k, v, grad_out, out, lse;
  qkv::AttentionOptions<float> options;

  explicit Inputs(const Case& c)
      : q(uniform(c.shape(), 1)), k(uniform(c.shape(), 2)), v(uniform(c.shape(), 3)), grad_out(uniform(c.shape(), 4)) {
    options.causal = c.causal ? qkv::Causal::upper_left : qkv::Causal::none;
    auto forward = qkv::scaled_dot_product_attention_with_logsumexp(q, k, v, options);
    out = std::move(forward.output);
    lse = std::move(forward.logsumexp);
  }
};

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Map = Eigen::Map<Matrix>;
using ConstMap = Eigen::Map<const Matrix>;

/// The unfused backward, head by head: S and P (L × S) materialised, Eigen's GEMMs (on
/// Eigen's threads) and row-wise softmax arithmetic, as a user would write it from the
/// formulas. Writes dQ, dK, dV.
void unfused_backward(const Inputs& in, const Case& c, Tensor<float>& dq, Tensor<float>& dk, Tensor<float>& dv) {
  const Index L = c.len, E = c.head_dim;
  const float scale = 1.0f / std::sqrt(float(E));
  Matrix p(L, L), dp(L, L);
  for (Index h = 0; h < c.heads; ++h) {
    const Index at = h * L * E;
    ConstMap q(in.q.data() + at, L, E), k(in.k.data() + at, L, E), v(in.v.data() + at, L, E);
    ConstMap o(in.out.data() + at, L, E), go(in.grad_out.data() + at, L, E);
    p.noalias() = (q * k.transpose()) * scale;
    if (c.causal) p.triangularView<Eigen::StrictlyUpper>().setConstant(-std::numeric_limits<float>::infinity());
    const Eigen::VectorXf row_max = p.rowwise().maxCoeff();
    p = (p.colwise() - row_max).array().exp().matrix();
    const Eigen::VectorXf row_sum = p.rowwise().sum();
    p = row_sum.cwiseInverse().asDiagonal() * p;
    Map(dv.data() + at, L, E).noalias() = p.transpose() * go;
    dp.noalias() = go * v.transpose();
    const Eigen::VectorXf d = (go.array() * o.array()).rowwise().sum();
    dp = (p.array() * (dp.colwise() - d).array()).matrix();  // dS
    Map(dq.data() + at, L, E).noalias() = (dp * k) * scale;
    Map(dk.data() + at, L, E).noalias() = (dp.transpose() * q) * scale;
  }
}

/// Stops the program unless max|got − ref| <= 1e-4·max|ref| (NaN fails).
void check_close(const std::string& what, const float* got, const double* ref, std::size_t n) {
  double max_diff = 0, max_ref = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double diff = std::abs(double(got[i]) - ref[i]);
    if (!(diff <= max_diff)) max_diff = diff;
    max_ref = std::max(max_ref, std::abs(ref[i]));
  }
  if (!(max_diff <= 1e-4 * max_ref)) {
    char numbers[160];
    std::snprintf(numbers, sizeof numbers, "max|diff| %.3g > 1e-4 * max|ref| (max|ref| = %.3g)", max_diff, max_ref);
    die(what + ": qkv's gradient differs from the reference: " + numbers);
  }
}

void check_close(const std::string& what, const Tensor<float>& got, const Tensor<float>& ref) {
  const std::vector<double> wide(ref.begin(), ref.end());
  check_close(what, got.data(), wide.data(), wide.size());
}

/// dQ rows of one head computed directly in double from the formulas (each dQ row needs
/// only its own row of P): for cases too long for the unfused backward.
void check_rows_directly(const std::string& name, const Case& c, const Inputs& in, const Tensor<float>& dq) {
  const Index L = c.len, E = c.head_dim;
  const double scale = 1.0 / std::sqrt(double(E));
  std::vector<float> got;
  std::vector<double> ref;
  for (Index row : {Index(0), Index(1), L / 3, L / 2, L - 1}) {
    const Index visible = c.causal ? row + 1 : L;
    std::vector<double> p(static_cast<std::size_t>(visible)), dp(static_cast<std::size_t>(visible));
    double m = -std::numeric_limits<double>::infinity(), sum = 0, d = 0;
    for (Index j = 0; j < visible; ++j) {
      double s = 0, x = 0;
      for (Index e = 0; e < E; ++e) {
        s += double(in.q.data()[row * E + e]) * double(in.k.data()[j * E + e]);
        x += double(in.grad_out.data()[row * E + e]) * double(in.v.data()[j * E + e]);
      }
      p[std::size_t(j)] = s * scale, dp[std::size_t(j)] = x;
      m = std::max(m, s * scale);
    }
    for (double& x : p) sum += (x = std::exp(x - m));
    for (Index j = 0; j < visible; ++j) d += (p[std::size_t(j)] /= sum) * dp[std::size_t(j)];
    for (Index e = 0; e < E; ++e) {
      double acc = 0;
      for (Index j = 0; j < visible; ++j)
        acc += p[std::size_t(j)] * (dp[std::size_t(j)] - d) * double(in.k.data()[j * E + e]);
      ref.push_back(acc * scale);
      got.push_back(dq.data()[row * E + e]);
    }
  }
  check_close(name + " dQ rows", got.data(), ref.data(), ref.size());
}

void set_flops(benchmark::State& state, double flops) {
  state.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

/// The share of the machine other processes took while a benchmark ran (>= 0.2 s runs).
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
  state.SkipWithError(("needs " + std::to_string(threads) + " threads").c_str());
  return false;
}

void use_threads(int threads) {
  qkv::set_num_threads(threads);
  Eigen::setNbThreads(threads);
}

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

void BM_forward(benchmark::State& state, const Case& c, int threads) {
  if (!enough_threads(state, threads)) return;
  use_threads(threads);
  const Inputs in(c);
  Tensor<float> out(c.shape());
  const LoadMeter load;
  for (auto _ : state) {
    qkv::scaled_dot_product_attention_out(out.view(), in.q, in.k, in.v, in.options);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, c.forward_flops());
  load.report(state);
}

void BM_backward(benchmark::State& state, const std::string& name, const Case& c, int threads) {
  if (!enough_threads(state, threads)) return;
  use_threads(threads);
  const Inputs in(c);
  Tensor<float> dq(c.shape()), dk(c.shape()), dv(c.shape());
  const auto run = [&] {
    qkv::scaled_dot_product_attention_backward_out(dq.view(), dk.view(), dv.view(), in.grad_out, in.q, in.k, in.v,
                                                   in.out, in.lse, in.options);
  };
  run();
  {  // checked once per case, before timing
    Tensor<float> rq(c.shape()), rk(c.shape()), rv(c.shape());
    Eigen::setNbThreads(mb::available_threads());
    unfused_backward(in, c, rq, rk, rv);
    Eigen::setNbThreads(threads);
    check_close(name + " dQ", dq, rq), check_close(name + " dK", dk, rk), check_close(name + " dV", dv, rv);
  }
  const LoadMeter load;
  for (auto _ : state) {
    run();
    benchmark::DoNotOptimize(dq.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, c.backward_flops());
  load.report(state);
}

void BM_unfused_backward(benchmark::State& state, const Case& c, int threads) {
  if (!enough_threads(state, threads)) return;
  use_threads(threads);
  const Inputs in(c);
  Tensor<float> dq(c.shape()), dk(c.shape()), dv(c.shape());
  const LoadMeter load;
  for (auto _ : state) {
    unfused_backward(in, c, dq, dk, dv);
    benchmark::DoNotOptimize(dq.data());
  }
  set_flops(state, c.backward_flops());
  load.report(state);
}

// ---- the long causal case, in a child process ----------------------------------------
// Its peak resident memory is the point; this process's peak is the unfused backward's. So
// the child is this program exec'd afresh, which reads its own VmHWM (as bench_attention).

const char* const long_child_flag = "--qkv_backward_long_child=";

Case long_case() { return Case{1, 32768, 64, true}; }

struct ChildReport {
  long rss_peak_kib = -1;
  double other_percent = 0;
  std::vector<double> seconds;
};

int long_child(int threads, int calls) {
  const Case c = long_case();
  qkv::set_num_threads(threads);
  const Inputs in(c);
  Tensor<float> dq(c.shape()), dk(c.shape()), dv(c.shape());
  const auto run = [&] {
    qkv::scaled_dot_product_attention_backward_out(dq.view(), dk.view(), dv.view(), in.grad_out, in.q, in.k, in.v,
                                                   in.out, in.lse, in.options);
  };
  run();
  check_rows_directly("BM_backward_long (child)", c, in, dq);
  std::vector<double> seconds;
  const auto load_start = mb::CpuSnapshot::now();
  for (int i = 0; i < calls; ++i) {
    const double start = mb::now_seconds();
    run();
    seconds.push_back(mb::now_seconds() - start);
  }
  const double other = mb::other_percent(load_start, mb::CpuSnapshot::now());
  std::printf("%ld %.6f", mb::peak_rss_kib(), other);
  for (double s : seconds) std::printf(" %.9f", s);
  std::printf("\n");
  return 0;
}

ChildReport run_long_child(int threads, int calls) {
  char self[4096];
  const ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
  if (length <= 0) die("BM_backward_long: cannot find this program through /proc/self/exe");
  self[length] = '\0';
  std::string flag = long_child_flag + std::to_string(threads) + "," + std::to_string(calls);
  char* argv[] = {self, flag.data(), nullptr};
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) die("BM_backward_long: pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, self, &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  if (spawned != 0) die("BM_backward_long: cannot start " + std::string(self));
  std::string text;
  char buffer[512];
  for (ssize_t n; (n = read(pipe_fds[0], buffer, sizeof buffer)) > 0;) text.append(buffer, std::size_t(n));
  close(pipe_fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("BM_backward_long: the child process failed");
  ChildReport report;
  std::istringstream fields(text);
  fields >> report.rss_peak_kib >> report.other_percent;
  for (double s; fields >> s;) report.seconds.push_back(s);
  if (report.seconds.size() != std::size_t(calls)) die("BM_backward_long: unreadable child report '" + text + "'");
  return report;
}

void BM_backward_long(benchmark::State& state, int threads) {
  if (!enough_threads(state, threads)) return;
  const Case c = long_case();
  const ChildReport child = run_long_child(threads, int(state.max_iterations));
  std::size_t i = 0;
  for (auto _ : state) state.SetIterationTime(child.seconds[i++ % child.seconds.size()]);
  set_flops(state, c.backward_flops());
  // Inputs (q, k, v, out, grad_out) and gradients (dq, dk, dv): 8 · L · E floats.
  const double io_kib = 8.0 * double(c.len) * double(c.head_dim) * sizeof(float) / 1024.0;
  state.counters["peak_RSS_MiB"] = double(child.rss_peak_kib) / 1024.0;
  state.counters["RSS/io"] = double(child.rss_peak_kib) / io_kib;
  state.counters["other%"] = child.other_percent;
}

std::string args_name(const Case& c, int threads) {
  return "/L:" + std::to_string(c.len) + "/E:" + std::to_string(c.head_dim) + "/causal:" + std::to_string(int(c.causal)) +
         "/threads:" + std::to_string(threads);
}

template <class Fn>
benchmark::internal::Benchmark* add(const std::string& name, Fn&& fn) {
  return benchmark::RegisterBenchmark(name.c_str(), std::forward<Fn>(fn));
}

void register_all() {
  for (int threads : {1, 2})
    add("BM_fma_peak/threads:" + std::to_string(threads), [threads](benchmark::State& s) { BM_fma_peak(s, threads); })
        ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
  {
    const Case small{2, 256, 64, true};
    add("BM_backward_small" + args_name(small, 2),
        [small](benchmark::State& s) { BM_backward(s, "BM_backward_small", small, 2); })
        ->UseRealTime()->Unit(benchmark::kMillisecond);
  }
  for (Index e : {64, 128})
    for (bool causal : {false, true}) {
      const Case c{8, 4096, e, causal};
      for (int threads : {1, 2}) {
        const std::string name = "BM_backward" + args_name(c, threads);
        add("BM_forward" + args_name(c, threads), [c, threads](benchmark::State& s) { BM_forward(s, c, threads); })
            ->UseRealTime()->Unit(benchmark::kMillisecond)->Repetitions(3)->DisplayAggregatesOnly(true);
        add(name, [name, c, threads](benchmark::State& s) { BM_backward(s, name, c, threads); })
            ->UseRealTime()->Unit(benchmark::kMillisecond)->Repetitions(3)->DisplayAggregatesOnly(true);
        add("BM_unfused_backward" + args_name(c, threads),
            [c, threads](benchmark::State& s) { BM_unfused_backward(s, c, threads); })
            ->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(1);
      }
    }
  for (int threads : {1, 2})
    add("BM_backward_long/threads:" + std::to_string(threads),
        [threads](benchmark::State& s) { BM_backward_long(s, threads); })
        ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind(long_child_flag, 0) == 0) {
      int threads = 1, calls = 1;
      if (std::sscanf(arg.c_str() + std::string(long_child_flag).size(), "%d,%d", &threads, &calls) != 2)
        die("bad " + arg);
      return long_child(threads, calls);
    }
  }
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::printf("machine: %s\n", mb::cpu_model().c_str());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
