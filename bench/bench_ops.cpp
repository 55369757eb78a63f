// SPDX-License-Identifier: MIT
// The core operations the attention formula is made of, at attention's shapes:
// scores = Q·Kᵀ (L×E times E×L) and the row softmax of an L×L score matrix.
// Arguments: L (sequence length), E (head size).
#include <qkv/ops.hpp>
#include <qkv/random.hpp>
#include <qkv/softmax.hpp>

#include <benchmark/benchmark.h>

namespace {

void BM_matmul_scores(benchmark::State& state) {
  const qkv::Index L = state.range(0), E = state.range(1);
  qkv::NumpyRandom rng(0);
  const auto q = rng.randn<float>({L, E}), k = rng.randn<float>({L, E});
  const auto k_t = qkv::transpose(k);
  for (auto _ : state) benchmark::DoNotOptimize(qkv::matmul(q, k_t).data());
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * double(L) * double(L) * double(E), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_softmax_rows(benchmark::State& state) {
  const qkv::Index L = state.range(0);
  qkv::NumpyRandom rng(0);
  const auto scores = rng.randn<float>({L, L});
  for (auto _ : state) benchmark::DoNotOptimize(qkv::softmax(scores, -1).data());
  // max, subtract, exp, sum, divide: about 5 floating-point operations per element.
  state.counters["FLOP/s"] = benchmark::Counter(5.0 * double(L) * double(L), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["elements/s"] = benchmark::Counter(static_cast<double>(L * L), benchmark::Counter::kIsIterationInvariantRate);
}

void sizes(benchmark::internal::Benchmark* b) {
  for (long L : {64, 256, 1024, 4096})
    for (long E : {64, 128}) b->Args({L, E});
  b->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK(BM_matmul_scores)->Apply(sizes);
BENCHMARK(BM_softmax_rows)->Apply(sizes);
BENCHMARK_MAIN();
