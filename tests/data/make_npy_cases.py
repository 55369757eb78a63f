#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Writes the .npy files in tests/data/npy/ that tests/test_npy.cpp reads: arrays saved by
# NumPy itself, so that qkv::load_npy is tested on NumPy's bytes and qkv::save_npy's
# bytes are compared with NumPy's.
# Run with an interpreter that has NumPy (on the development machine: /usr/bin/python3,
# NumPy 1.24; np.save's header layout, including the spare spaces after the dict, is
# that version's). The outputs are committed; the C++ test does not need Python.
#
# Every floating-point array holds value(i) = (i + 1) / 3 - 2 at C-order position i,
# computed in float64 and then rounded to the file's dtype, which the test recomputes as
# static_cast<T>((i + 1.0) / 3.0 - 2.0): no data is pasted, and every mantissa bit is used.
# For float16 ('<f2') the test's cast goes through float32, so the script checks that
# rounding to float16 directly and through float32 agree on these values.
# f2_all_bits.npy holds every float16 bit pattern (i at position i: ±0, subnormals, ±inf,
# NaNs): what qkv must read bit for bit and write back byte for byte.
# NumPy has no bfloat16, so there are no bfloat16 files.
import os

import numpy as np

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "npy")


def values(shape, dtype):
    n = int(np.prod(shape, dtype=np.int64))
    exact = (np.arange(n, dtype=np.float64) + 1) / 3 - 2
    if np.dtype(dtype).itemsize == 2:
        assert (exact.astype(dtype) == exact.astype(np.float32).astype(dtype)).all()
    return exact.astype(dtype).reshape(shape)


def save(name, array):
    np.save(os.path.join(HERE, name), array)


def write(name, array, version):
    with open(os.path.join(HERE, name), "wb") as f:
        np.lib.format.write_array(f, array, version=version)


def main():
    os.makedirs(HERE, exist_ok=True)
    shapes = {
        "scalar": (),
        "5": (5,),
        "3x4": (3, 4),
        "2x3x4": (2, 3, 4),
        "0x3": (0, 3),
        "rank8": (1, 2, 1, 2, 1, 2, 1, 2),
    }
    for tag in ("f4", "f8", "f2"):
        dtype = "<" + tag
        for name, shape in shapes.items():
            save(f"{tag}_{name}.npy", values(shape, dtype))
        # What the test's save_npy of a transposed view must reproduce byte for byte.
        save(f"{tag}_3x4_transposed.npy", np.ascontiguousarray(values((3, 4), dtype).T))
        # The same array in the later format versions (4-byte header length; 3.0 is UTF-8).
        write(f"{tag}_2x3x4_v2.npy", values((2, 3, 4), dtype), (2, 0))
        write(f"{tag}_2x3x4_v3.npy", values((2, 3, 4), dtype), (3, 0))
        # Files qkv refuses, each with its own message.
        save(f"{tag}_3x4_fortran.npy", np.asfortranarray(values((3, 4), dtype)))
        save(f"{tag}_3x4_big_endian.npy", values((3, 4), ">" + tag))
    save("f2_all_bits.npy", np.arange(65536, dtype="<u2").view("<f2").reshape(256, 256))
    save("f8_rank9.npy", values((1,) * 9, "<f8"))
    save("bool_2x3.npy", np.array([[True, False, True], [False, True, True]]))
    save("i4_6.npy", np.arange(6, dtype="<i4"))
    save("i8_6.npy", np.arange(6, dtype="<i8"))


if __name__ == "__main__":
    main()
