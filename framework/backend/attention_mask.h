// Mask decisions, device-free (kernels of every device and the ring's schedule read them): a
// MaskSpec checked and prepared for one call (MaskPlan), the per-pair rule, the per-tile
// classification that lets kernels skip wholly masked tiles and drop per-element work on wholly
// unmasked ones, and the -inf fill of partial tiles.
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "framework/backend/attention.h"

namespace strand {

enum class TileClass : uint8_t { Empty, Partial, Full };

// The mask of a pattern name as `bench attention --pattern` spells it: full (or none), causal
// (MaskKind::None with MaskSpec::causal), sliding, dilated, longformer, bigbird. Throws
// ValueError otherwise. mask_pattern_name is the inverse (a causal windowed kind keeps its kind's name).
MaskSpec mask_from_pattern_name(const std::string& name);
const char* mask_pattern_name(const MaskSpec& mask);

// A MaskSpec checked against the sizes of one call, with its lookups built: the global-token
// bitmap, BigBird's random key blocks for the query blocks in reach, and the document bounds.
// All positions are global (local row + q_offset / k_offset).
class MaskPlan {
 public:
  // Throws ValueError naming `op`, the MaskSpec field and its value when the spec does not fit
  // (negative window, dilation < 1, a global token outside the sequence, cu_seqlens that do not
  // start at 0, decrease or do not end at the sequence length, wrong count of key_lengths, ...).
  MaskPlan(const MaskSpec& spec, int64_t batch, int64_t q_len, int64_t k_len, const char* op = "attention");

  // Does the query at global position q of batch row b attend to the key at global position k?
  bool attends(int64_t b, int64_t q, int64_t k) const {
    if (spec_.causal && k > q) return false;
    if (has_padding_ && k >= spec_.key_lengths[static_cast<size_t>(b)]) return false;
    if (has_packing_ && doc_of(b, q) != doc_of(b, k)) return false;
    return base_attends(q, k);
  }

  // Classifies the block [q0, q1) x [k0, k1) of global positions for batch row b. Empty and Full
  // are exact; Partial may also be returned for a block that turns out empty or full.
  TileClass classify(int64_t b, int64_t q0, int64_t q1, int64_t k0, int64_t k1) const;

  // Global key positions [first, last) outside which no query of [q0, q1) attends (row b).
  void key_reach(int64_t b, int64_t q0, int64_t q1, int64_t& first, int64_t& last) const;
  // Global query positions [first, last) outside which no query attends a key of [k0, k1).
  void query_reach(int64_t b, int64_t k0, int64_t k1, int64_t& first, int64_t& last) const;

  // Sets the masked entries of a partial score tile to -inf. The tile is stored keys by queries:
  // s[j * ld + i] is the score of query q0 + i against key k0 + j (global positions).
  template <class T>
  void mask_tile(int64_t b, int64_t q0, int64_t nq, int64_t k0, int64_t nk, T* s, int64_t ld) const;

  // Number of attending (query, key) pairs of batch row b over the call's whole Nq x Nk block.
  int64_t count_pairs(int64_t b) const;

  const MaskSpec& spec() const { return spec_; }
  int64_t q_offset() const { return spec_.q_offset; }
  int64_t k_offset() const { return spec_.k_offset; }
  int64_t seq_len() const { return seq_len_; }

 private:
  bool in_window(int64_t q, int64_t k) const {
    const int64_t d = q - k;
    return d <= spec_.window_left && -d <= spec_.window_right;
  }
  bool is_global(int64_t pos) const { return is_global_[static_cast<size_t>(pos)] != 0; }
  bool random_hit(int64_t q, int64_t k) const;
  bool base_attends(int64_t q, int64_t k) const;
  // Index of the document holding global position pos in batch row b.
  int64_t doc_of(int64_t b, int64_t pos) const;
  const std::vector<int64_t>& bounds(int64_t b) const {
    return spec_.cu_seqlens.size() == 1 ? spec_.cu_seqlens[0] : spec_.cu_seqlens[static_cast<size_t>(b)];
  }
  int64_t globals_in(int64_t p0, int64_t p1) const;  // global tokens in [p0, p1)

  MaskSpec spec_;
  int64_t batch_ = 0, q_len_ = 0, k_len_ = 0, seq_len_ = 0;
  bool has_padding_ = false, has_packing_ = false;
  std::vector<uint8_t> is_global_;        // [seq_len], Longformer and BigBird
  std::vector<int64_t> sorted_globals_;   // the global tokens, sorted and unique
  int64_t first_query_block_ = 0;         // BigBird: the query blocks in reach start here
  int64_t random_per_block_ = 0;          // BigBird: min(random_blocks, key block count)
  std::vector<int64_t> random_key_blocks_;  // [query block - first][random_per_block_], sorted
};

}  // namespace strand
