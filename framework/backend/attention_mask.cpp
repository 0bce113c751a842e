// MaskPlan: validation of a MaskSpec, the per-pair rule, tile classification and partial-tile fill.
#include "framework/backend/attention_mask.h"

#include <algorithm>

#include "framework/core/error.h"
#include "framework/core/random.h"

namespace strand {
namespace {

std::string list_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

bool has_window(MaskKind k) {
  return k == MaskKind::Sliding || k == MaskKind::Dilated || k == MaskKind::Longformer || k == MaskKind::BigBird;
}

// Does some multiple of m lie in [lo, hi]?
bool multiple_in(int64_t lo, int64_t hi, int64_t m) {
  if (lo > hi) return false;
  const int64_t r = ((lo % m) + m) % m;
  return r == 0 || lo + (m - r) <= hi;
}

}  // namespace

MaskSpec mask_from_pattern_name(const std::string& name) {
  MaskSpec m;
  if (name == "full" || name == "none") return m;
  if (name == "causal") return MaskSpec::causal_mask();
  if (name == "sliding") m.kind = MaskKind::Sliding;
  else if (name == "dilated") m.kind = MaskKind::Dilated;
  else if (name == "longformer") m.kind = MaskKind::Longformer;
  else if (name == "bigbird") m.kind = MaskKind::BigBird;
  else
    throw ValueError("attention: unknown mask pattern '" + name +
                     "' (expected full, causal, sliding, dilated, longformer or bigbird)");
  return m;
}

const char* mask_pattern_name(const MaskSpec& mask) {
  switch (mask.kind) {
    case MaskKind::None: return mask.causal ? "causal" : "full";
    case MaskKind::Sliding: return "sliding";
    case MaskKind::Dilated: return "dilated";
    case MaskKind::Longformer: return "longformer";
    case MaskKind::BigBird: return "bigbird";
  }
  return "?";
}

MaskPlan::MaskPlan(const MaskSpec& spec, int64_t batch, int64_t q_len, int64_t k_len, const char* op)
    : spec_(spec), batch_(batch), q_len_(q_len), k_len_(k_len) {
  STRAND_CHECK(spec.q_offset >= 0, ValueError, op, ": mask.q_offset = ", spec.q_offset, " must be >= 0");
  STRAND_CHECK(spec.k_offset >= 0, ValueError, op, ": mask.k_offset = ", spec.k_offset, " must be >= 0");
  const int64_t reach = std::max(spec.q_offset + q_len, spec.k_offset + k_len);
  seq_len_ = spec.seq_len > 0 ? spec.seq_len : reach;
  STRAND_CHECK(spec.seq_len >= 0 && reach <= seq_len_, ValueError, op, ": mask.seq_len = ", spec.seq_len,
               " is shorter than the positions in use (queries [", spec.q_offset, ", ", spec.q_offset + q_len,
               "), keys [", spec.k_offset, ", ", spec.k_offset + k_len, "))");
  if (has_window(spec.kind)) {
    STRAND_CHECK(spec.window_left >= 0, ValueError, op, ": mask.window_left = ", spec.window_left, " must be >= 0");
    STRAND_CHECK(spec.window_right >= 0, ValueError, op, ": mask.window_right = ", spec.window_right,
                 " must be >= 0");
  }
  if (spec.kind == MaskKind::Dilated)
    STRAND_CHECK(spec.dilation >= 1, ValueError, op, ": mask.dilation = ", spec.dilation, " must be >= 1");
  if (spec.kind == MaskKind::Longformer || spec.kind == MaskKind::BigBird) {
    is_global_.assign(static_cast<size_t>(seq_len_), 0);
    for (size_t i = 0; i < spec.global_tokens.size(); ++i) {
      const int64_t g = spec.global_tokens[i];
      STRAND_CHECK(g >= 0 && g < seq_len_, ValueError, op, ": mask.global_tokens[", i, "] = ", g,
                   " is outside the sequence [0, ", seq_len_, ")");
      is_global_[static_cast<size_t>(g)] = 1;
    }
    sorted_globals_ = spec.global_tokens;
    std::sort(sorted_globals_.begin(), sorted_globals_.end());
    sorted_globals_.erase(std::unique(sorted_globals_.begin(), sorted_globals_.end()), sorted_globals_.end());
  }
  if (spec.kind == MaskKind::BigBird) {
    STRAND_CHECK(spec.block_size >= 1, ValueError, op, ": mask.block_size = ", spec.block_size, " must be >= 1");
    STRAND_CHECK(spec.random_blocks >= 0, ValueError, op, ": mask.random_blocks = ", spec.random_blocks,
                 " must be >= 0");
    const int64_t bs = spec.block_size;
    const int64_t key_blocks = (seq_len_ + bs - 1) / bs;
    random_per_block_ = std::min(spec.random_blocks, key_blocks);
    if (random_per_block_ > 0 && q_len > 0) {
      first_query_block_ = spec.q_offset / bs;
      const int64_t last_query_block = (spec.q_offset + q_len - 1) / bs;
      for (int64_t qb = first_query_block_; qb <= last_query_block; ++qb) {
        // Distinct key blocks drawn from the counter-based stream of (seed, query block): the same
        // on every rank and in forward and backward.
        std::vector<int64_t> chosen;
        for (uint64_t counter = 0; static_cast<int64_t>(chosen.size()) < random_per_block_; ++counter) {
          for (uint32_t word : random::philox4x32(spec.seed, static_cast<uint64_t>(qb), counter)) {
            const int64_t kb = static_cast<int64_t>(word % static_cast<uint64_t>(key_blocks));
            if (static_cast<int64_t>(chosen.size()) < random_per_block_ &&
                std::find(chosen.begin(), chosen.end(), kb) == chosen.end())
              chosen.push_back(kb);
          }
        }
        std::sort(chosen.begin(), chosen.end());
        random_key_blocks_.insert(random_key_blocks_.end(), chosen.begin(), chosen.end());
      }
    }
  }
  if (!spec.key_lengths.empty()) {
    STRAND_CHECK(static_cast<int64_t>(spec.key_lengths.size()) == batch, ValueError, op, ": mask.key_lengths has ",
                 spec.key_lengths.size(), " entries ", list_str(spec.key_lengths), ", expected one per batch row (",
                 batch, ")");
    for (size_t b = 0; b < spec.key_lengths.size(); ++b)
      STRAND_CHECK(spec.key_lengths[b] >= 0 && spec.key_lengths[b] <= seq_len_, ValueError, op,
                   ": mask.key_lengths[", b, "] = ", spec.key_lengths[b], " is outside [0, ", seq_len_, "]");
    has_padding_ = true;
  }
  if (!spec.cu_seqlens.empty()) {
    STRAND_CHECK(spec.cu_seqlens.size() == 1 || static_cast<int64_t>(spec.cu_seqlens.size()) == batch, ValueError,
                 op, ": mask.cu_seqlens has ", spec.cu_seqlens.size(), " lists, expected 1 or one per batch row (",
                 batch, ")");
    for (size_t b = 0; b < spec.cu_seqlens.size(); ++b) {
      const std::vector<int64_t>& cu = spec.cu_seqlens[b];
      STRAND_CHECK(cu.size() >= 2 && cu.front() == 0 && cu.back() == seq_len_, ValueError, op, ": mask.cu_seqlens[",
                   b, "] = ", list_str(cu), " must run from 0 to the sequence length ", seq_len_);
      for (size_t i = 1; i < cu.size(); ++i)
        STRAND_CHECK(cu[i] >= cu[i - 1], ValueError, op, ": mask.cu_seqlens[", b, "] = ", list_str(cu),
                     " decreases at entry ", i);
    }
    has_packing_ = true;
  }
}

int64_t MaskPlan::doc_of(int64_t b, int64_t pos) const {
  const std::vector<int64_t>& cu = bounds(b);
  return static_cast<int64_t>(std::upper_bound(cu.begin(), cu.end(), pos) - cu.begin()) - 1;
}

int64_t MaskPlan::globals_in(int64_t p0, int64_t p1) const {
  return static_cast<int64_t>(std::lower_bound(sorted_globals_.begin(), sorted_globals_.end(), p1) -
                              std::lower_bound(sorted_globals_.begin(), sorted_globals_.end(), p0));
}

bool MaskPlan::random_hit(int64_t q, int64_t k) const {
  if (random_per_block_ == 0) return false;
  const int64_t qb = q / spec_.block_size - first_query_block_, kb = k / spec_.block_size;
  const int64_t* r = random_key_blocks_.data() + qb * random_per_block_;
  for (int64_t t = 0; t < random_per_block_; ++t)
    if (r[t] == kb) return true;
  return false;
}

bool MaskPlan::base_attends(int64_t q, int64_t k) const {
  switch (spec_.kind) {
    case MaskKind::None: return true;
    case MaskKind::Sliding: return in_window(q, k);
    case MaskKind::Dilated: return in_window(q, k) && (q - k) % spec_.dilation == 0;
    case MaskKind::Longformer: return in_window(q, k) || is_global(q) || is_global(k);
    case MaskKind::BigBird: return in_window(q, k) || is_global(q) || is_global(k) || random_hit(q, k);
  }
  return false;
}

TileClass MaskPlan::classify(int64_t b, int64_t q0, int64_t q1, int64_t k0, int64_t k1) const {
  if (q0 >= q1 || k0 >= k1) return TileClass::Empty;
  bool full = true;
  if (spec_.causal) {
    if (k0 > q1 - 1) return TileClass::Empty;
    full = k1 - 1 <= q0;
  }
  if (has_padding_) {
    const int64_t len = spec_.key_lengths[static_cast<size_t>(b)];
    if (k0 >= len) return TileClass::Empty;
    full = full && k1 <= len;
  }
  if (has_packing_) {
    const int64_t dq0 = doc_of(b, q0), dq1 = doc_of(b, q1 - 1), dk0 = doc_of(b, k0), dk1 = doc_of(b, k1 - 1);
    if (dq1 < dk0 || dk1 < dq0) return TileClass::Empty;
    full = full && dq0 == dq1 && dk0 == dk1 && dq0 == dk0;
  }
  // q - k over the block runs from dmin to dmax.
  const int64_t dmin = q0 - (k1 - 1), dmax = (q1 - 1) - k0;
  const int64_t wl = spec_.window_left, wr = spec_.window_right;
  const bool window_empty = dmax < -wr || dmin > wl;
  const bool window_full = dmin >= -wr && dmax <= wl;
  bool base_empty = false, base_full = false;
  switch (spec_.kind) {
    case MaskKind::None: base_full = true; break;
    case MaskKind::Sliding:
      base_empty = window_empty;
      base_full = window_full;
      break;
    case MaskKind::Dilated:
      base_empty = window_empty || !multiple_in(std::max(dmin, -wr), std::min(dmax, wl), spec_.dilation);
      base_full = window_full && spec_.dilation == 1;
      break;
    case MaskKind::Longformer:
    case MaskKind::BigBird: {
      const int64_t gq = globals_in(q0, q1), gk = globals_in(k0, k1);
      base_full = window_full || gq == q1 - q0 || gk == k1 - k0;
      base_empty = window_empty && gq == 0 && gk == 0;
      if (base_empty && spec_.kind == MaskKind::BigBird && random_per_block_ > 0) {
        const int64_t bs = spec_.block_size;
        for (int64_t qb = q0 / bs; qb <= (q1 - 1) / bs && base_empty; ++qb) {
          const int64_t* r = random_key_blocks_.data() + (qb - first_query_block_) * random_per_block_;
          for (int64_t t = 0; t < random_per_block_; ++t)
            if (r[t] >= k0 / bs && r[t] <= (k1 - 1) / bs) base_empty = false;
        }
      }
      break;
    }
  }
  if (base_empty) return TileClass::Empty;
  return full && base_full ? TileClass::Full : TileClass::Partial;
}

void MaskPlan::key_reach(int64_t b, int64_t q0, int64_t q1, int64_t& first, int64_t& last) const {
  first = 0;
  last = seq_len_;
  switch (spec_.kind) {
    case MaskKind::Sliding:
    case MaskKind::Dilated:
      first = q0 - spec_.window_left;
      last = q1 + spec_.window_right;
      break;
    default: break;  // global tokens and random blocks reach anywhere
  }
  if (spec_.causal) last = std::min(last, q1);
  if (has_padding_) last = std::min(last, spec_.key_lengths[static_cast<size_t>(b)]);
  if (has_packing_ && q0 < q1) {
    const std::vector<int64_t>& cu = bounds(b);
    first = std::max(first, cu[static_cast<size_t>(doc_of(b, q0))]);
    last = std::min(last, cu[static_cast<size_t>(doc_of(b, q1 - 1)) + 1]);
  }
}

void MaskPlan::query_reach(int64_t b, int64_t k0, int64_t k1, int64_t& first, int64_t& last) const {
  first = 0;
  last = seq_len_;
  switch (spec_.kind) {
    case MaskKind::Sliding:
    case MaskKind::Dilated:
      first = k0 - spec_.window_right;
      last = k1 + spec_.window_left;
      break;
    default: break;
  }
  if (spec_.causal) first = std::max(first, k0);
  if (has_padding_ && k0 >= spec_.key_lengths[static_cast<size_t>(b)]) last = first;
  if (has_packing_ && k0 < k1) {
    const std::vector<int64_t>& cu = bounds(b);
    first = std::max(first, cu[static_cast<size_t>(doc_of(b, k0))]);
    last = std::min(last, cu[static_cast<size_t>(doc_of(b, k1 - 1)) + 1]);
  }
}

template <class T>
void MaskPlan::mask_tile(int64_t b, int64_t q0, int64_t nq, int64_t k0, int64_t nk, T* s, int64_t ld) const {
  constexpr T kMasked = -std::numeric_limits<T>::infinity();
  const MaskKind kind = spec_.kind;
  const bool with_globals = kind == MaskKind::Longformer || kind == MaskKind::BigBird;
  // Work per key row is O(nq) simple stores: each key keeps one interval of queries (intersected
  // with its document and padding), thinned to every dilation-th query for Dilated, or widened by
  // the global query columns and BigBird's random query blocks into a keep-list.
  std::vector<int64_t> global_cols;
  std::vector<uint8_t> keep;
  if (with_globals) {
    for (auto it = std::lower_bound(sorted_globals_.begin(), sorted_globals_.end(), q0);
         it != sorted_globals_.end() && *it < q0 + nq; ++it)
      global_cols.push_back(*it - q0);
    keep.resize(static_cast<size_t>(nq));
  }
  for (int64_t j = 0; j < nk; ++j) {
    const int64_t k = k0 + j;
    T* row = s + j * ld;
    int64_t lo = q0, hi = q0 + nq;  // queries [lo, hi) may attend key k
    if (has_padding_ && k >= spec_.key_lengths[static_cast<size_t>(b)]) hi = lo;
    if (has_packing_) {
      const std::vector<int64_t>& cu = bounds(b);
      const int64_t d = doc_of(b, k);
      lo = std::max(lo, cu[static_cast<size_t>(d)]);
      hi = std::min(hi, cu[static_cast<size_t>(d) + 1]);
    }
    if (spec_.causal) lo = std::max(lo, k);
    const int64_t rlo = std::clamp(lo - q0, int64_t{0}, nq), rhi = std::clamp(hi - q0, rlo, nq);  // row limits
    if (with_globals && rlo < rhi && !is_global(k)) {
      std::fill(keep.begin(), keep.end(), uint8_t{0});
      const int64_t wlo = std::max(rlo, k - spec_.window_right - q0), whi = std::min(rhi, k + spec_.window_left + 1 - q0);
      for (int64_t i = wlo; i < whi; ++i) keep[static_cast<size_t>(i)] = 1;
      for (int64_t i : global_cols)
        if (i >= rlo && i < rhi) keep[static_cast<size_t>(i)] = 1;
      if (kind == MaskKind::BigBird && random_per_block_ > 0) {
        const int64_t bs = spec_.block_size, kb = k / bs;
        for (int64_t qb = (q0 + rlo) / bs; rlo < rhi && qb <= (q0 + rhi - 1) / bs; ++qb) {
          const int64_t* r = random_key_blocks_.data() + (qb - first_query_block_) * random_per_block_;
          if (!std::binary_search(r, r + random_per_block_, kb)) continue;
          for (int64_t i = std::max(rlo, qb * bs - q0); i < std::min(rhi, (qb + 1) * bs - q0); ++i)
            keep[static_cast<size_t>(i)] = 1;
        }
      }
      #pragma omp simd
      for (int64_t i = 0; i < nq; ++i) row[i] = keep[static_cast<size_t>(i)] ? row[i] : kMasked;
      continue;
    }
    if (kind == MaskKind::Sliding || kind == MaskKind::Dilated) {
      lo = std::max(lo, k - spec_.window_right);
      hi = std::min(hi, k + spec_.window_left + 1);
    }
    const int64_t ilo = std::clamp(lo - q0, int64_t{0}, nq), ihi = std::clamp(hi - q0, ilo, nq);
    for (int64_t i = 0; i < ilo; ++i) row[i] = kMasked;
    for (int64_t i = ihi; i < nq; ++i) row[i] = kMasked;
    if (kind == MaskKind::Dilated && spec_.dilation > 1) {
      const int64_t dil = spec_.dilation;
      int64_t phase = ((q0 + ilo - k) % dil + dil) % dil;  // (q - k) mod dilation, 0 = kept
      for (int64_t i = ilo; i < ihi; ++i) {
        if (phase != 0) row[i] = kMasked;
        phase = phase + 1 == dil ? 0 : phase + 1;
      }
    }
  }
}

template void MaskPlan::mask_tile<float>(int64_t, int64_t, int64_t, int64_t, int64_t, float*, int64_t) const;
template void MaskPlan::mask_tile<double>(int64_t, int64_t, int64_t, int64_t, int64_t, double*, int64_t) const;

int64_t MaskPlan::count_pairs(int64_t b) const {
  constexpr int64_t kTile = 64;
  const int64_t qo = spec_.q_offset, ko = spec_.k_offset;
  int64_t pairs = 0;
  for (int64_t i0 = 0; i0 < q_len_; i0 += kTile) {
    const int64_t i1 = std::min(q_len_, i0 + kTile);
    int64_t first, last;
    key_reach(b, qo + i0, qo + i1, first, last);
    const int64_t j_begin = std::max<int64_t>(0, first - ko) / kTile * kTile;
    const int64_t j_end = std::min(k_len_, last - ko);
    for (int64_t j0 = j_begin; j0 < j_end; j0 += kTile) {
      const int64_t j1 = std::min(k_len_, j0 + kTile);
      const TileClass c = classify(b, qo + i0, qo + i1, ko + j0, ko + j1);
      if (c == TileClass::Full) pairs += (i1 - i0) * (j1 - j0);
      if (c != TileClass::Partial) continue;
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) pairs += attends(b, qo + i, ko + j) ? 1 : 0;
    }
  }
  return pairs;
}

}  // namespace strand
