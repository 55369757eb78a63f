#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Prints the expected strings of tests/test_print.cpp from real PyTorch and NumPy.

Run with Debian's interpreter, which has PyTorch 1.13 and NumPy 1.24:
    /usr/bin/python3 tests/data/make_print_cases.py
Each case prints its name, the C++ literals of its input where the test spells them out,
and the string to paste into the test as a raw string literal. The test never runs this.

The bfloat16 and float16 cases are written as a file the test includes:
    /usr/bin/python3 tests/data/make_print_cases.py --half > tests/data/print_half_cases.inc
Each holds its input as 16-bit patterns, so the test builds the very same tensor without
converting anything, and the strings repr(t) prints (and, for float16, repr and str of
t.numpy()).
"""
import sys

import numpy as np
import torch


def cpp_floats(values):
    """Shortest literals that read back as the same float32 values."""
    return ", ".join(repr(np.float32(v)) + "f" for v in np.asarray(values, np.float32).ravel())


def cpp_doubles(values):
    return ", ".join(repr(float(v)) for v in np.asarray(values, np.float64).ravel())


def case(name, text, literals=None):
    print(f"--- {name}")
    if literals is not None:
        print(f"    values: {literals}")
    print(f'R"({text})"')


def torch_cases():
    case("torch_vector", repr(torch.tensor([0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865])))

    # The notebook's toy embeddings and their attention scores and weights.
    inputs = torch.tensor([[0.43, 0.15, 0.89], [0.55, 0.87, 0.66], [0.57, 0.85, 0.64],
                           [0.22, 0.58, 0.33], [0.77, 0.25, 0.10], [0.05, 0.80, 0.55]])
    scores = inputs @ inputs.T
    case("torch_scores_6x6", repr(scores), cpp_floats(scores))
    weights = torch.softmax(scores, dim=-1)
    case("torch_weights_6x6", repr(weights), cpp_floats(weights))
    # The float just below 1, as a row of softmax weights may sum to.
    case("torch_scalar_rounds_to_one", repr(torch.tensor(0.99999994)))

    case("torch_zeros", repr(torch.zeros(3)))
    case("torch_scalar_one", repr(torch.tensor(1.0)))
    case("torch_scalar_int64", repr(torch.tensor(42)))

    g = torch.Generator().manual_seed(7)
    signed = torch.randn(3, 4, generator=g)
    case("torch_negative", repr(signed), cpp_floats(signed))

    case("torch_sci_tiny", repr(torch.tensor([1e-5, 0.5, 2.0])))
    case("torch_sci_huge", repr(torch.tensor([1.5e9, -2.25])))
    case("torch_sci_int_mode", repr(torch.tensor([1.0, 1e5])))

    row = torch.randn(30, generator=g)
    case("torch_wrap_30", repr(row), cpp_floats(row))
    case("torch_wrap_arange_30", repr(torch.arange(30.0)))

    cube = torch.randn(2, 3, 4, generator=g)
    case("torch_rank3", repr(cube), cpp_floats(cube))

    case("torch_summarize_matrix", repr(torch.arange(2000.0).reshape(40, 50) / 7))
    case("torch_summarize_vector_int64", repr(torch.arange(2000)))
    case("torch_summarize_rank3", repr(torch.arange(2000.0).reshape(10, 10, 20)))

    case("torch_double", repr(torch.tensor([1.5, 2.25], dtype=torch.float64)))
    wide = torch.randn(8, generator=g, dtype=torch.float64)
    case("torch_double_suffix_wraps", repr(wide), cpp_doubles(wide))

    case("torch_bool", repr(torch.tensor([True, False])))
    case("torch_bool_matrix", repr(torch.tensor([[True, True], [False, True]])))

    inf, nan = float("inf"), float("nan")
    case("torch_nonfinite", repr(torch.tensor([1.5, inf, -inf, nan])))
    case("torch_nonfinite_int_mode", repr(torch.tensor([1.0, inf, nan])))
    case("torch_all_nan", repr(torch.tensor([nan, nan])))

    case("torch_empty", repr(torch.tensor([])))
    case("torch_empty_matrix", repr(torch.zeros(2, 0)))
    case("torch_empty_double", repr(torch.zeros(0, dtype=torch.float64)))

    case("torch_int64", repr(torch.tensor([[1, -20], [300, 4]])))
    case("torch_int32", repr(torch.tensor([[1, -20], [300, 4]], dtype=torch.int32)))
    case("torch_uint8", repr(torch.tensor([0, 7, 255], dtype=torch.uint8)))

    m = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    case("torch_transposed_view", repr(m.T))


def numpy_cases():
    notebook = np.array([[1.64020774, -2.18397742, -0.18962513, 0.31165462],
                         [3.31990305, -2.97388912, -0.33052934, -1.45691831],
                         [-0.68953308, 0.84267554, 0.41194343, -1.13147334],
                         [-3.68400046, 3.9732582, 0.77784592, -0.57205458]])
    case("numpy_notebook_repr", repr(notebook))
    case("numpy_notebook_str", str(notebook))

    # Magnitudes spanning less than 1000x stay positional...
    close = np.array([[5.33206782e-02, 1.16432213e-03], [2.86007927e-01, 5.28468200e-04]])
    case("numpy_positional_small", repr(close))
    # ... and more than 1000x switch to exponential notation with shared digits.
    exp = np.array([[5.33206782e-02, 1.16432213e-03], [6.86007927e-01, 5.28468200e-04]])
    case("numpy_exp_repr", repr(exp))
    case("numpy_exp_str", str(exp))
    case("numpy_exp_tiny", repr(np.array([1e-5, 0.5, 2.0])))
    case("numpy_exp_huge", repr(np.array([1.5e9, -2.25])))

    wide = np.random.default_rng(1).standard_normal((4, 8))
    case("numpy_wrap_4x8", repr(wide), cpp_doubles(wide))
    case("numpy_wrap_4x8_str", str(wide))

    case("numpy_padded_fraction", repr(np.array([0.0120713, 0.12345678, 1.5])))

    single = np.array([[0.1, 0.25], [1 / 3, -2]], dtype=np.float32)
    case("numpy_float32", repr(single))
    case("numpy_float32_exp", repr(np.array([1.2345678e-5, 0.1], dtype=np.float32)))
    case("numpy_float32_dtype_wraps", repr(np.arange(6, dtype=np.float32) / 7))

    case("numpy_nonfinite", repr(np.array([1.5, np.inf, -np.inf, np.nan])))
    case("numpy_scalar_repr", repr(np.array(1.5)))
    case("numpy_scalar_str", str(np.array(1.5)))
    case("numpy_scalar_float32_repr", repr(np.array(0.1, dtype=np.float32)))
    case("numpy_scalar_large_str", str(np.array(1e16)))

    case("numpy_rank3", repr(np.arange(24.0).reshape(2, 3, 4) / 7))
    case("numpy_rank3_str", str(np.arange(24.0).reshape(2, 3, 4) / 7))
    case("numpy_summarize", repr(np.arange(2000.0).reshape(40, 50) / 7))

    case("numpy_empty", repr(np.zeros(0)))
    case("numpy_empty_matrix", repr(np.zeros((2, 0))))
    case("numpy_empty_str", str(np.zeros((2, 0))))


def half_cases(dtype):
    """(name, tensor to print, transpose) for one 16-bit dtype."""
    inf, nan = float("inf"), float("nan")
    f16 = dtype == torch.float16
    g = torch.Generator().manual_seed(15)
    t = lambda values: torch.tensor(values).to(dtype)  # rounded from float32, as PyTorch does
    cases = [
        ("matrix", t([[0.1, 0.2]]), False),
        ("tenths", t([0.1, 0.2, 0.3, 0.7, 1.1]), False),
        ("integers", t([1.0, 2.0, 3.0, -4.0]), False),
        ("negative_zero", t([-0.0, 1.0, 0.0]), False),
        ("zeros", torch.zeros(3, dtype=dtype), False),
        ("random_3x4", torch.randn(3, 4, generator=g).to(dtype), False),
        ("sci_tiny", t([1e-5, 0.5, 2.0]), False),
        ("sci_huge", t([1.5e4, -2.25] if f16 else [1.5e9, -2.25]), False),
        ("sci_int_mode", t([1.0, 1e4]), False),
        ("nonfinite", t([1.5, inf, -inf, nan]), False),
        ("nonfinite_int_mode", t([1.0, inf, nan]), False),
        ("all_nan", t([nan, nan]), False),
        # Subnormals: float16's smallest (2^-24) and a larger one; bfloat16's smallest (2^-133).
        ("subnormals", t([2.0**-24, 2.0**-20, 1.0] if f16 else [2.0**-133, 1e-39, 1.0]), False),
        ("extremes", t([65504.0, -65504.0, 2.0**-14] if f16 else [3.3895e38, -1.1755e-38, 1.0]), False),
        ("rounded_integers", t([4112.0, 2049.0, 1000.0] if f16 else [257.0, 1000.0, 12345.0]), False),
        # 2^-6 = 0.015625: NumPy's 4 shortest digits 1.563e-02, not the exact 1.562(5).
        ("power_of_two", t([2.0**-6, 2.0**-24, 3.0]), False),
        ("scalar", t(1.5), False),
        ("scalar_tenth", t(0.1), False),
        ("empty", torch.zeros(0, dtype=dtype), False),
        ("empty_matrix", torch.zeros(2, 0, dtype=dtype), False),
        ("wrap_30", torch.randn(30, generator=g).to(dtype), False),
        ("rank3", torch.randn(2, 3, 4, generator=g).to(dtype), False),
        ("transposed", t([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]), True),
        ("summarize_matrix", (torch.arange(1014.0).reshape(26, 39) / 7).to(dtype), False),
        ("summarize_vector", torch.arange(1001.0).to(dtype), False),
        ("summarize_rank3", torch.arange(1001.0).reshape(11, 7, 13).to(dtype), False),
    ]
    return cases


def cpp_string(text):
    assert ')"' not in text
    return f'R"({text})"'


def half_inc():
    print(f"// Generated by tests/data/make_print_cases.py --half (PyTorch {torch.__version__}, "
          f"NumPy {np.__version__}).")
    print("// {name, dtype, shape, bits in C order, transpose before printing, repr(t),")
    print("//  repr(t.numpy()), str(t.numpy())}; NumPy has no bfloat16, so its strings are null.")
    for dtype, dtype_name in ((torch.bfloat16, "bfloat16"), (torch.float16, "float16")):
        for name, tensor, transpose in half_cases(dtype):
            shown = tensor.T if transpose else tensor
            bits = [int(b) & 0xFFFF for b in tensor.contiguous().view(torch.int16).reshape(-1).tolist()]
            rows = [", ".join(f"0x{b:04x}" for b in bits[i:i + 12]) for i in range(0, len(bits), 12)]
            shape = ", ".join(str(d) for d in tensor.shape)
            if dtype == torch.float16:
                array = shown.numpy()
                numpy_strings = f"{cpp_string(repr(array))},\n {cpp_string(str(array))}"
            else:
                numpy_strings = "nullptr, nullptr"
            print(f'{{"{name}", "{dtype_name}", {{{shape}}},')
            print(" {" + ",\n  ".join(rows) + "},")
            print(f" {'true' if transpose else 'false'},")
            print(f" {cpp_string(repr(shown))},")
            print(f" {numpy_strings}}},")


if __name__ == "__main__":
    if sys.argv[1:] == ["--half"]:
        half_inc()
    else:
        torch_cases()
        numpy_cases()
