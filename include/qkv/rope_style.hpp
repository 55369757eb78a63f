// SPDX-License-Identifier: MIT
// qkv::RopeStyle: which coordinates rotary position embeddings (rope.hpp) rotate together.
// A header of its own so that half.hpp can declare it before the type qkv::half: g++ 12's
// -Wshadow takes the enumerator RopeStyle::half, declared after the type, for a shadow.
#pragma once

namespace qkv {

/// Which coordinates of a head vector RotaryEmbedding rotates together.
enum class RopeStyle {
  /// Pairs (x[2i], x[2i+1]): RoFormer, GPT-J, Meta's original Llama (view_as_complex).
  interleaved,
  /// Pairs (x[i], x[i + d/2]): GPT-NeoX, Hugging Face Llama's rotate_half.
  half,
};

}  // namespace qkv
