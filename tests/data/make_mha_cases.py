#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Writes tests/data/mha_cases.inc: torch.nn.MultiheadAttention(batch_first=True) cases that
# tests/test_multi_head_attention.cpp runs qkv::MultiHeadAttention on. Each case stores its
# sizes, the inputs, the module's weights in PyTorch's layout, the masks, and PyTorch's
# output and attention weights computed in float32 and, on a .double() copy of the same
# module and inputs, in float64.
#
# Weights come from torch's own initialisation (torch.manual_seed per case), with the biases
# then redrawn (PyTorch zeroes them, which would leave the bias path untested). Inputs and
# weights are rounded to 4 decimals and then to float32, so that their float literals
# ("0.2115f", the shortest that read back as the same float32) stay short; they are exact in
# float and in double. Float64 results are printed with repr(), which round-trips.
#
# The module runs in training mode (dropout is 0) so that PyTorch takes the documented
# slow path, not the fused fast path, whose padded outputs differ.
#
# Run with an interpreter that has PyTorch and NumPy (on the development machine:
# /usr/bin/python3, torch 1.13):
#   /usr/bin/python3 tests/data/make_mha_cases.py > tests/data/mha_cases.inc
import copy
import math

import numpy as np
import torch
import torch.nn as nn

# name, sizes, and what the case exercises. B=None is unbatched input; S=None is
# self-attention (query is key is value).
CASES = [
    dict(name="self_attention", seed=1, E=8, H=2, B=2, L=4),
    dict(name="cross_attention", seed=2, E=8, H=4, B=2, L=3, S=5),
    dict(name="kdim_vdim", seed=3, E=8, H=2, B=2, L=3, S=4, kdim=5, vdim=7),
    dict(name="key_padding_mask", seed=4, E=8, H=2, B=2, L=4, padding=[[0, 0, 1, 1], [0, 0, 0, 1]]),
    dict(name="bool_attn_mask", seed=5, E=8, H=2, B=2, L=3, S=5, attn="bool"),
    dict(name="float_attn_mask", seed=6, E=8, H=2, B=2, L=3, S=5, attn="float"),
    dict(name="bool_3d_attn_mask_and_padding", seed=7, E=8, H=2, B=2, L=3, S=4, attn="bool3d",
         padding=[[0, 0, 0, 1], [0, 1, 0, 0]]),
    dict(name="float_3d_attn_mask_and_padding", seed=8, E=8, H=2, B=2, L=3, S=4, attn="float3d",
         padding=[[0, 0, 1, 0], [0, 0, 0, 1]]),
    dict(name="float_attn_mask_and_padding", seed=9, E=8, H=4, B=2, L=3, S=4, attn="float",
         padding=[[1, 0, 0, 0], [0, 0, 0, 0]]),
    dict(name="causal", seed=10, E=8, H=2, B=2, L=5, causal=True),
    dict(name="causal_with_padding", seed=11, E=8, H=2, B=2, L=4, causal=True, padding=[[0, 0, 0, 1], [0, 0, 0, 0]]),
    dict(name="per_head_weights", seed=12, E=8, H=4, B=2, L=3, S=4, average=False),
    dict(name="no_bias", seed=13, E=8, H=2, B=2, L=3, S=4, bias=False),
    dict(name="unbatched", seed=14, E=8, H=2, B=None, L=3, S=4, padding=[0, 0, 1, 0]),
    dict(name="unbatched_3d_attn_mask", seed=15, E=8, H=2, B=None, L=3, S=4, attn="bool3d", average=False),
    dict(name="one_head", seed=16, E=6, H=1, B=2, L=3),
    dict(name="four_heads_odd_head_dim", seed=17, E=12, H=4, B=1, L=4, S=3),
    dict(name="odd_head_dim_kdim", seed=18, E=10, H=2, B=2, L=3, S=4, kdim=3, vdim=4),
    # Query row 1 of every batch element may see no key: PyTorch 1.13 gives NaN there.
    dict(name="fully_masked_row", seed=19, E=8, H=2, B=2, L=3, S=4, attn="bool_hidden_row"),
]


def short(t):
    """t rounded to 4 decimals, in float32."""
    return (torch.round(t.double() * 1e4) / 1e4).float()


def floats(t):
    values = t.detach().to(torch.float32).numpy().ravel()
    return ", ".join(cpp_float(v) for v in values)


def cpp_float(v):
    if np.isnan(v):
        return "kNaN"
    if np.isinf(v):
        return "kInf" if v > 0 else "-kInf"
    return str(np.float32(v)) + "f"


def doubles(t):
    values = t.detach().to(torch.float64).numpy().ravel()
    return ", ".join("kNaN" if np.isnan(v) else ("-kInf" if v == -np.inf else repr(float(v))) for v in values)


def array(name, t, as_double=False):
    shape = ", ".join(str(d) for d in t.shape)
    values = doubles(t) if as_double else floats(t)
    return f'  {{"{name}", {{{{{shape}}}, {{{values}}}}}}}'


def make_attn_mask(kind, B, H, L, S):
    batch = 1 if B is None else B
    if kind == "bool":
        mask = torch.rand(L, S) < 0.3
        mask[:, 0] = False  # every query keeps a key
        return mask
    if kind == "float":
        mask = short(torch.rand(L, S) * 4 - 2)
        mask[0, 1] = -math.inf
        return mask
    if kind in ("bool3d",):
        mask = torch.rand(batch * H, L, S) < 0.4
        mask[:, :, 2] = False  # a key no padding mask hides
        return mask
    if kind == "float3d":
        mask = short(torch.rand(batch * H, L, S) * 4 - 2)
        mask[0, 0, 1] = -math.inf
        return mask
    if kind == "bool_hidden_row":
        mask = torch.rand(L, S) < 0.3
        mask[:, 0] = False
        mask[1, :] = True
        return mask
    raise ValueError(kind)


def run(module, query, key, value, kpm, attn_mask, average):
    out, weights = module(query, key, value, key_padding_mask=kpm, attn_mask=attn_mask, need_weights=True,
                          average_attn_weights=average)
    return out, weights


def case(spec):
    torch.manual_seed(spec["seed"])
    E, H, B, L = spec["E"], spec["H"], spec["B"], spec["L"]
    self_attention = "S" not in spec
    S = L if self_attention else spec["S"]
    kdim, vdim = spec.get("kdim", E), spec.get("vdim", E)
    bias = spec.get("bias", True)
    average = spec.get("average", True)
    causal = spec.get("causal", False)

    module = nn.MultiheadAttention(E, H, bias=bias, kdim=kdim, vdim=vdim, batch_first=True)
    module.train()  # dropout 0: the same result, on the reference (slow) path
    with torch.no_grad():
        if bias:
            module.in_proj_bias.copy_(torch.randn(3 * E) * 0.5)
            module.out_proj.bias.copy_(torch.randn(E) * 0.5)
        for parameter in module.parameters():
            parameter.copy_(short(parameter))

    lead = () if B is None else (B,)
    query = short(torch.randn(*lead, L, E))
    key = query if self_attention else short(torch.randn(*lead, S, kdim))
    value = query if self_attention else short(torch.randn(*lead, S, vdim))

    kpm = torch.tensor(spec["padding"], dtype=torch.bool) if "padding" in spec else None
    attn_mask = make_attn_mask(spec["attn"], B, H, L, S) if "attn" in spec else None
    if causal:  # PyTorch 1.13's spelling of is_causal
        assert attn_mask is None
        attn_mask = torch.triu(torch.ones(L, S), 1).bool()

    out32, w32 = run(module, query, key, value, kpm, attn_mask, average)
    module64 = copy.deepcopy(module).double()
    as64 = (lambda t: t if t is None or t.dtype == torch.bool else t.double())
    out64, w64 = run(module64, query.double(), as64(key).double(), as64(value).double(), kpm, as64(attn_mask),
                     average)

    sizes = dict(embed_dim=E, num_heads=H, kdim=kdim, vdim=vdim, bias=int(bias), batched=int(B is not None),
                 self_attention=int(self_attention), causal=int(causal), average_attn_weights=int(average),
                 attn_mask_is_bool=int(attn_mask is not None and not causal and attn_mask.dtype == torch.bool))
    arrays = [array("query", query)]
    if not self_attention:
        arrays += [array("key", key), array("value", value)]
    if module._qkv_same_embed_dim:
        arrays.append(array("in_proj_weight", module.in_proj_weight))
    else:
        arrays += [array("q_proj_weight", module.q_proj_weight), array("k_proj_weight", module.k_proj_weight),
                   array("v_proj_weight", module.v_proj_weight)]
    arrays.append(array("out_proj_weight", module.out_proj.weight))
    if bias:
        arrays += [array("in_proj_bias", module.in_proj_bias), array("out_proj_bias", module.out_proj.bias)]
    if kpm is not None:
        arrays.append(array("key_padding_mask", kpm.float()))
    if attn_mask is not None and not causal:
        arrays.append(array("attn_mask", attn_mask.float()))
    arrays += [array("output_float", out32), array("output_double", out64, True),
               array("weights_float", w32), array("weights_double", w64, True)]

    size_text = ", ".join(f'{{"{k}", {v}}}' for k, v in sizes.items())
    body = ",\n".join(arrays)
    return f'{{"{spec["name"]}",\n {{{size_text}}},\n {{\n{body}}}}}'


def main():
    print(f"// Generated by tests/data/make_mha_cases.py (PyTorch {torch.__version__}, NumPy {np.__version__}).")
    print("// {name, sizes, arrays {name, {shape, values in C order}}}; masks hold 1 where PyTorch hides.")
    print(",\n".join(case(spec) for spec in CASES))


if __name__ == "__main__":
    main()
