#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Compile time of qkv's headers beside a plain Eigen file, as a Markdown table.
#
#   bench/compile_time.sh [RUNS]        (default 5; QKV_CXX, QKV_CXXFLAGS override the compiler and flags)
#
# Each translation unit is compiled RUNS times, interleaved, and its best CPU time (user +
# system) kept; the ratio is to the Eigen file (<Eigen/Dense>, two 16 x 16 matrices
# multiplied). The units:
# the Eigen file; <qkv/qkv.hpp> with one attention call; each public header on its own with
# a call of its main function where one is simple. Compiled to an object file with
# `g++ -std=c++17 -O2 -march=native -fopenmp`.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-5}
cxx=${QKV_CXX:-g++}
read -r -a flags <<<"${QKV_CXXFLAGS:--std=c++17 -O2 -march=native -fopenmp}"
eigen_include=$(pkg-config --cflags-only-I eigen3 2>/dev/null | sed 's/^ *-I//; s/ *$//' || true)
eigen_include=${eigen_include:-/usr/include/eigen3}
work=$(mktemp -d /tmp/qkv_compile_time.XXXXXX)
trap 'rm -rf "$work"' EXIT

# unit NAME CODE: writes $work/NAME.cpp
unit() { printf '%s\n' "$2" >"$work/${1//\//_}.cpp"; names+=("$1"); }
names=()
unit "Eigen/Dense" '#include <Eigen/Dense>
Eigen::Matrix<float, 16, 16> f(const Eigen::Matrix<float, 16, 16>& a, const Eigen::Matrix<float, 16, 16>& b) { return a * b; }'
unit "qkv/qkv.hpp" '#include <qkv/qkv.hpp>
qkv::Tensor<float> f(const qkv::Tensor<float>& q, const qkv::Tensor<float>& k, const qkv::Tensor<float>& v) {
  return qkv::scaled_dot_product_attention(q, k, v);
}'
unit "qkv/attention.hpp" '#include <qkv/attention.hpp>
qkv::Tensor<float> f(const qkv::Tensor<float>& q, const qkv::Tensor<float>& k, const qkv::Tensor<float>& v) {
  return qkv::scaled_dot_product_attention(q, k, v);
}'
unit "qkv/attention_backward.hpp" '#include <qkv/attention_backward.hpp>
qkv::AttentionGradients<float> f(const qkv::Tensor<float>& g, const qkv::Tensor<float>& q, const qkv::Tensor<float>& k,
                                 const qkv::Tensor<float>& v, const qkv::Tensor<float>& o, const qkv::Tensor<float>& lse) {
  return qkv::scaled_dot_product_attention_backward(g, q, k, v, o, lse);
}'
unit "qkv/kernel.hpp" '#include <qkv/kernel.hpp>'
unit "qkv/tensor.hpp" '#include <qkv/tensor.hpp>
qkv::Tensor<float> f() { return qkv::Tensor<float>::zeros({2, 3}); }'
unit "qkv/tensor_view.hpp" '#include <qkv/tensor_view.hpp>
qkv::Index f(qkv::TensorView<float> t) { return t.transpose(0, 1).size(0); }'
unit "qkv/shape.hpp" '#include <qkv/shape.hpp>
qkv::Index f() { return qkv::Shape{2, 3}.numel(); }'
unit "qkv/half.hpp" '#include <qkv/half.hpp>
float f(float x) { return static_cast<float>(qkv::bfloat16(x)); }'
unit "qkv/ops.hpp" '#include <qkv/ops.hpp>
qkv::Tensor<float> f(const qkv::Tensor<float>& a, const qkv::Tensor<float>& b) { return qkv::matmul(a, b) + a; }'
unit "qkv/softmax.hpp" '#include <qkv/softmax.hpp>
qkv::Tensor<float> f(const qkv::Tensor<float>& a) { return qkv::softmax(a, -1); }'
unit "qkv/parallel.hpp" '#include <qkv/parallel.hpp>
void f() { qkv::set_num_threads(2); }'
unit "qkv/layers.hpp" '#include <qkv/layers.hpp>
qkv::Tensor<float> f(const qkv::ScaledDotProductAttention<float>& m, const qkv::Tensor<float>& x) { return m.forward(x).output; }'
unit "qkv/multi_head_attention.hpp" '#include <qkv/multi_head_attention.hpp>
qkv::Tensor<float> f(const qkv::MultiHeadAttention<float>& m, const qkv::Tensor<float>& x) { return m.forward(x).output; }'
unit "qkv/kv_cache.hpp" '#include <qkv/kv_cache.hpp>
qkv::Tensor<float> f(qkv::KVCache<float>& c, const qkv::Tensor<float>& q) { return qkv::cached_attention(c, q, q, q); }'
unit "qkv/rope.hpp" '#include <qkv/rope.hpp>
void f(const qkv::RotaryEmbedding<float>& r, qkv::Tensor<float>& x) { r.apply(x.view()); }'
unit "qkv/npy.hpp" '#include <qkv/npy.hpp>
qkv::Tensor<float> f() { return qkv::load_npy<float>("x.npy"); }'
unit "qkv/print.hpp" '#include <qkv/print.hpp>
std::string f(const qkv::Tensor<float>& t) { return qkv::torch_repr(t); }'
unit "qkv/random.hpp" '#include <qkv/random.hpp>
qkv::Tensor<float> f() { qkv::NumpyRandom rng(0); return rng.randn<float>({2, 3}); }'
unit "qkv/version.hpp" '#include <qkv/version.hpp>
int f() { return QKV_VERSION; }'

declare -A best
for ((run = 0; run < runs; ++run)); do
  for name in "${names[@]}"; do
    # CPU time (user + system) of the compiler, which other processes on a busy machine
    # inflate much less than wall time.
    TIMEFORMAT='%3U %3S'
    { time "$cxx" "${flags[@]}" -I"$repo/include" -isystem "$eigen_include" -c "$work/${name//\//_}.cpp" \
        -o "$work/out.o" 2>"$work/err"; } 2>"$work/time" || { cat "$work/err" >&2; exit 1; }
    ms=$(awk '{ printf "%d", ($1 + $2) * 1000 }' "$work/time")
    if [[ -z ${best[$name]:-} || $ms -lt ${best[$name]} ]]; then best[$name]=$ms; fi
  done
done

echo "| translation unit | CPU seconds, best of $runs | / Eigen file |"
echo "| --- | ---: | ---: |"
base=${best["Eigen/Dense"]}
for name in "${names[@]}"; do
  case $name in
    Eigen/Dense) label="\`<Eigen/Dense>\`, a 16 × 16 product" ;;
    qkv/qkv.hpp) label="\`<qkv/qkv.hpp>\`, one attention call" ;;
    *) label="\`<$name>\` alone" ;;
  esac
  awk -v l="$label" -v t="${best[$name]}" -v b="$base" 'BEGIN { printf "| %s | %.2f | %.2f |\n", l, t / 1000, t / b }'
done
echo
echo "($cxx $("$cxx" -dumpfullversion), ${flags[*]}; $(date -u +%Y-%m-%d))"
