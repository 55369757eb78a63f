#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# qkv's attention benchmark right after ggml's CPU flash attention on the same cases, so
# that both see the same machine state; ggml's figures also go into qkv's summary table.
# ggml's f32 and f16 K/V figures stand beside qkv's float, bf16 and f16 prefill rows (with
# the ratios of the rates); beside qkv's decode with a bf16 or f16 cache they are ggml's
# time per step (its median_ms), since the two read different bytes for the same step.
#
#   bench/compare_with_ggml.sh [BENCH_ATTENTION [OUT_DIR]] [-- bench_attention flags...]
#
#   BENCH_ATTENTION  qkv's benchmark program (default: build/bench/bench/bench_attention,
#                    from `cmake --workflow --preset bench`)
#   OUT_DIR          where ggml.txt, qkv.txt and chart.svg are saved (default: a new directory
#                    under /tmp); chart.svg (bench/summary_chart.awk) shows each case's qkv,
#                    ggml f32 and ggml f16 as fractions of the run's FMA peak (decode: of its
#                    read bandwidth)
#   QKV_GGML_BENCH   ggml's benchmark (default: ../shared/peer/ggml_fa_bench from the repo
#                    root); when it is absent, only qkv's benchmark runs
#   QKV_GGML_FLAGS   its flags (default: --threads 1,2 --kv f32,f16)
#
# e.g. bench/compare_with_ggml.sh build/bench/bench/bench_attention /tmp/cmp -- --benchmark_filter=4096
# Both runs together take about 10-15 minutes. It prints ggml's table, then qkv's summary.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
bench=build/bench/bench/bench_attention
out=""
if [[ $# -gt 0 && $1 != -- ]]; then bench=$1; shift; fi
if [[ $# -gt 0 && $1 != -- ]]; then out=$1; shift; fi
if [[ $# -gt 0 && $1 == -- ]]; then shift; fi
[[ $bench = /* ]] || bench=$repo/$bench
ggml=${QKV_GGML_BENCH:-$repo/../shared/peer/ggml_fa_bench}
read -r -a ggml_flags <<<"${QKV_GGML_FLAGS:---threads 1,2 --kv f32,f16}"
out=${out:-$(mktemp -d /tmp/qkv_vs_ggml.XXXXXX)}
mkdir -p "$out"

if [[ ! -x $bench ]]; then
  echo "compare_with_ggml.sh: no benchmark program at $bench; build it with: cmake --workflow --preset bench" >&2
  exit 1
fi

qkv_flags=("$@")
if [[ -x $ggml ]]; then
  echo "== ggml: $ggml ${ggml_flags[*]}  (output: $out/ggml.txt)"
  # The peer is built for one processor (-march=native); elsewhere it dies on its first
  # instruction (SIGILL, status 132), and qkv's benchmark still runs on its own.
  status=0
  "$ggml" "${ggml_flags[@]}" | tee "$out/ggml.txt" || status=$?
  if [[ $status -eq 0 ]]; then
    qkv_flags=(--qkv_ggml_output="$out/ggml.txt" "${qkv_flags[@]}")
  else
    hint=""; [[ $status -eq 132 ]] && hint=", SIGILL: built for another processor"
    echo "== ggml: skipped, $ggml exited with status $status$hint"
    rm -f "$out/ggml.txt"
  fi
else
  echo "== ggml: skipped, $ggml not found (set QKV_GGML_BENCH)"
fi

echo "== qkv: $bench ${qkv_flags[*]}  (output: $out/qkv.txt)"
"$bench" "${qkv_flags[@]}" | tee "$out/qkv.txt"

echo
if [[ -s $out/ggml.txt ]]; then
  echo "## ggml_fa_bench (its table as printed)"
  echo
  cat "$out/ggml.txt"
  echo
fi
sed -n '/^## qkv attention benchmark: summary/,$p' "$out/qkv.txt"
echo
if awk -f "$repo/bench/summary_chart.awk" "$out/qkv.txt" >"$out/chart.svg"; then
  echo "chart: $out/chart.svg"
else
  rm -f "$out/chart.svg"
fi
echo "(both outputs are in $out)"
