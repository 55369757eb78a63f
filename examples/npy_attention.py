#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# The PyTorch side of npy_attention.cpp: writes its inputs and checks its output.
#
#   python3 npy_attention.py inputs                 # q.npy, k.npy, v.npy from torch.randn
#   ./npy_attention q.npy k.npy v.npy out.npy       # qkv computes the attention
#   python3 npy_attention.py check                  # compares out.npy with PyTorch's
#
# "check" also works after running npy_attention without arguments (its demo inputs).
# Needs NumPy and PyTorch; torch 1.13 has no F.scaled_dot_product_attention, so the
# reference is written out (with PyTorch >= 2.0, F.scaled_dot_product_attention(q, k, v)
# gives the same).
import math
import sys

import numpy as np
import torch


def write_inputs():
    torch.manual_seed(0)
    q = torch.randn(2, 3, 4)  # (heads, L, E), float32 as PyTorch's default
    k = torch.randn(2, 5, 4)  # (heads, S, E)
    v = torch.randn(2, 5, 4)  # (heads, S, Ev)
    for name, tensor in (("q", q), ("k", k), ("v", v)):
        np.save(f"{name}.npy", tensor.numpy())
    print("wrote q.npy, k.npy, v.npy; now run: npy_attention q.npy k.npy v.npy out.npy")


def check_output():
    q, k, v = (torch.from_numpy(np.load(f"{name}.npy")) for name in ("q", "k", "v"))
    out = torch.from_numpy(np.load("out.npy"))
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    expected = torch.softmax(scores, dim=-1) @ v
    same = out.shape == expected.shape and torch.allclose(out, expected, rtol=1e-5, atol=1e-6)
    print(f"out.npy {tuple(out.shape)} matches PyTorch: {same}"
          f" (max |difference| {(out - expected).abs().max().item():.2e})")
    return 0 if same else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["inputs"]:
        write_inputs()
    elif sys.argv[1:] == ["check"]:
        sys.exit(check_output())
    else:
        sys.exit("usage: python3 npy_attention.py inputs|check")
