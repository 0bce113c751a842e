// Attention analysis of a trained GPT on one token sequence (`strand analyze`): per layer and
// head, the mean attention entropy and mean attention distance over the query rows, from the
// kernel's statistics in key blocks (no N x N buffer at long N); for a short input also the
// attention maps, drawn as a layers x heads grid (the head view), and attention rollout
// (Abnar & Zuidema 2020) across the layers.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "framework/io/image.h"
#include "models/gpt/gpt.h"

namespace strand::train {

struct AnalyzeOptions {
  int64_t row_stride = 1;       // statistics over every row_stride-th query row (a sample at long N)
  int64_t map_tokens = 128;     // maps, head view and rollout only for inputs up to this many tokens
  std::function<void(int64_t, int64_t)> on_layer;  // (layers done, layers): a long input's progress
};

struct HeadSummary {
  double entropy = 0;   // mean over the sampled rows, nats
  double distance = 0;  // mean over the sampled rows, token positions
};

struct AttentionAnalysis {
  int64_t tokens = 0;
  int64_t rows = 0;                                    // query rows sampled per head
  std::vector<std::vector<HeadSummary>> heads;         // [layer][head]
  // Only when tokens <= map_tokens: maps[layer][head] is N x N row-major (row = query), and
  // rollout the product of (A_l + I) / 2 over the layers, A_l the head mean of layer l.
  std::vector<std::vector<std::vector<double>>> maps;
  std::vector<double> rollout;
  bool has_maps() const { return !rollout.empty(); }
};

// Runs `model` (evaluation mode, no dropout, no gradients) over ids, one row, in one process.
AttentionAnalysis analyze_attention(models::Gpt& model, std::span<const int32_t> ids, const AnalyzeOptions& options);

// R = (A_L + I)/2 . ... . (A_1 + I)/2 for the head-averaged maps A_l (N x N, row = query), in
// layer order: rollout[i][j] is how much of token j reaches position i through the layers.
std::vector<double> attention_rollout(const std::vector<std::vector<double>>& layer_maps, int64_t n);

// The head view: one panel per layer (rows) and head (columns), each map coloured by its own
// largest value, labelled "L<layer> H<head>".
io::Image head_view_image(const AttentionAnalysis& analysis);
// One N x N map with a title, and token labels along both axes when they fit (N <= 64).
io::Image heatmap_image(std::span<const double> map, int64_t n, const std::vector<std::string>& labels,
                        const std::string& title);

// Head importance as bars, one row of bars per layer (Michel et al. scores of a prune round,
// normalised per layer): scores[layer][i] for the layer's heads heads[layer][i]; bars of heads in
// removed[layer] (the ones the round pruned) drawn grey.
io::Image importance_image(const std::vector<std::vector<double>>& scores,
                           const std::vector<std::vector<int64_t>>& heads,
                           const std::vector<std::vector<int64_t>>& removed);

// {"tokens": N, "rows": r, "layers": [{"layer": l, "heads": [{"head": h, "entropy": e,
// "distance": d}, ...]}, ...]}: the numbers of the statistics; with maps, also "maps"
// ([layer][head][i][j]) and "rollout" ([i][j]), four significant digits, and "labels".
std::string analysis_json(const AttentionAnalysis& analysis, const std::vector<std::string>& labels);

}  // namespace strand::train
