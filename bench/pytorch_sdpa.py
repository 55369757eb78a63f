#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The cases of bench/bench_attention.cpp through PyTorch, for users who have it.

    /usr/bin/python3 bench/pytorch_sdpa.py            # all cases, 1 and 2 threads (minutes)
    /usr/bin/python3 bench/pytorch_sdpa.py --quick    # L = S = 512 only

Times torch.nn.functional.scaled_dot_product_attention when the installed PyTorch has it
(>= 2.0; its fused CPU kernel arrived in 2.1, 2.0 runs its math fallback), else the
formula softmax(q @ kᵀ · scale + mask) @ v, and says which path it timed. Debian 12's
python3-torch is 1.13: the formula. Same conventions as the C++ benchmark: B = 1, inputs
uniform in [-1, 1), GFLOP/s = 4·L·S·E·H / time (causal: half), decode GB/s = bytes of K
and V / time; the median of the timed calls.
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")
VERSION = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
FUSED_CPU = HAS_SDPA and VERSION >= (2, 1)
MATH_PATH_LIMIT = 8 << 30  # bytes of L×S temporaries beyond which the formula is skipped


def path_name():
    if FUSED_CPU:
        return "F.scaled_dot_product_attention (fused CPU kernel, PyTorch >= 2.1)"
    if HAS_SDPA:
        return "F.scaled_dot_product_attention (math fallback of PyTorch 2.0)"
    return "formula softmax(q @ k^T * scale + mask) @ v (PyTorch < 2.0 has no SDPA)"


def formula(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(q.shape[-1]))
    if mask is not None:
        scores = scores + mask
    return torch.softmax(scores, dim=-1) @ v


def attention(q, k, v, causal, mask):
    if HAS_SDPA:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return formula(q, k, v, mask)


def causal_mask(length):
    """Additive (L, S) mask, built once as a model's buffer: -inf above the diagonal."""
    return torch.full((length, length), float("-inf")).triu(1)


def inputs(heads, query_len, key_len, head_dim, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shape = lambda rows: (1, heads, rows, head_dim)
    return [torch.rand(shape(n), generator=gen) * 2 - 1 for n in (query_len, key_len, key_len)]


def time_calls(fn, min_time, min_calls=3, max_calls=50, batch=1):
    """Median seconds per call over timed batches of `batch` calls, after a warm-up; one
    timed call is enough when the warm-up alone took min_time."""
    start = time.perf_counter()
    fn()
    if time.perf_counter() - start >= min_time:
        min_calls = 1
    times = []
    while len(times) < max_calls and (len(times) < min_calls or sum(times) * batch < min_time):
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        times.append((time.perf_counter() - start) / batch)
    return statistics.median(times), len(times) * batch


def check(q, k, v, causal, mask, out):
    """max|out - ref| <= 1e-4·max|ref| against the formula in float64."""
    ref = formula(q.double(), k.double(), v.double(), None if mask is None else mask.double())
    diff = (out.double() - ref).abs().max().item()
    assert diff <= 1e-4 * ref.abs().max().item(), f"differs from the float64 formula by {diff}"


def blas_info():
    config = torch.__config__.show()
    start = config.find("BLAS_INFO=")
    return config[start:].split(",")[0] if start >= 0 else "BLAS_INFO unknown"


def sgemm_gflops(n=2048):
    """torch's own float32 matrix product at n³ on one thread: the BLAS it is linked with."""
    torch.set_num_threads(1)
    a, b = torch.rand(n, n), torch.rand(n, n)
    seconds, _ = time_calls(lambda: a @ b, 0.0, min_calls=2)
    return 2 * n**3 / seconds * 1e-9


def temporaries_bytes(heads, query_len, key_len):
    # scores, scaled, + mask, softmax: four (H, L, S) floats, plus the (L, S) mask
    return 4 * (4 * heads + 1) * query_len * key_len


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="L = S = 512 only")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds of timed calls per case")
    args = parser.parse_args()

    print(f"# torch {torch.__version__}; timed path: {path_name()}")
    print(f"# {blas_info()}; torch SGEMM 2048³ on 1 thread: {sgemm_gflops():.1f} GFLOP/s; "
          f"GFLOP/s = 4·L·S·E·H / median time (causal: half)")
    print("| case | threads | ms | rate | calls |")
    print("| --- | ---: | ---: | ---: | ---: |")

    cases = []
    for length in ([512] if args.quick else [512, 2048, 4096]):
        for head_dim in (64, 128):
            for causal in (False, True):
                cases.append(("prefill", 8, length, length, head_dim, causal))
    if not args.quick:
        cases.append(("long", 1, 32768, 32768, 64, True))
        cases.append(("decode", 32, 1, 4096, 128, False))

    for kind, heads, query_len, key_len, head_dim, causal in cases:
        if kind == "decode":
            name = f"decode L=1 S={key_len} E={head_dim} H={heads}"
        else:
            name = f"{kind} L=S={query_len} E={head_dim} H={heads} {'causal' if causal else 'full'}"
        if not FUSED_CPU and temporaries_bytes(heads, query_len, key_len) > MATH_PATH_LIMIT:
            need = temporaries_bytes(heads, query_len, key_len) / (1 << 30)
            print(f"| {name} | - | - | skipped: the unfused path needs ~{need:.0f} GiB of L×S temporaries (> 8 GiB) | - |")
            continue
        q, k, v = inputs(heads, query_len, key_len, head_dim)
        mask = causal_mask(query_len) if causal else None
        if query_len <= 512 or kind == "decode":
            with torch.no_grad():
                check(q, k, v, causal, mask, attention(q, k, v, causal, mask))
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with torch.no_grad():
                seconds, calls = time_calls(lambda: attention(q, k, v, causal, mask), args.min_time)
            if kind == "decode":
                rate = f"{2 * key_len * head_dim * heads * 4 / seconds * 1e-9:.1f} GB/s"
            else:
                flops = (2 if causal else 4) * query_len * key_len * head_dim * heads
                rate = f"{flops / seconds * 1e-9:.1f} GFLOP/s"
            print(f"| {name} | {threads} | {seconds * 1e3:.2f} | {rate} | {calls} |", flush=True)

    x = torch.tensor([[0.43, 0.15, 0.89], [0.55, 0.87, 0.66], [0.57, 0.85, 0.64],
                      [0.22, 0.58, 0.33], [0.77, 0.25, 0.10], [0.05, 0.80, 0.55]]).view(1, 1, 6, 3)
    torch.set_num_threads(1)
    with torch.no_grad():
        seconds, calls = time_calls(lambda: attention(x, x, x, False, None), args.min_time, batch=1000)
    print(f"| notebook 003, 6×3, q=k=v=x | 1 | {seconds * 1e3:.4f} | {seconds * 1e9:.0f} ns/call | {calls} |")


if __name__ == "__main__":
    main()
