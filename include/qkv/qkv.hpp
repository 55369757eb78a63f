// SPDX-License-Identifier: MIT
// qkv: scaled dot-product attention for C++17 on Eigen. This header includes them all.
#pragma once

#include "attention.hpp"
#include "attention_backward.hpp"
#include "half.hpp"
#include "kernel.hpp"
#include "kv_cache.hpp"
#include "layers.hpp"
#include "multi_head_attention.hpp"
#include "npy.hpp"
#include "ops.hpp"
#include "parallel.hpp"
#include "print.hpp"
#include "random.hpp"
#include "rope.hpp"
#include "shape.hpp"
#include "softmax.hpp"
#include "tensor.hpp"
#include "tensor_view.hpp"
#include "version.hpp"

/// \file
/// Includes every public header of qkv.

/// Scaled dot-product attention with PyTorch's semantics: tensors, their operations,
/// attention, the modules built on it, and their input and output. Names in qkv::detail
/// are internals, not part of the API.
namespace qkv {}
