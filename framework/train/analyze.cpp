// Attention analysis: statistics per head, maps, rollout, pictures and JSON (analyze.h).
#include "framework/train/analyze.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "framework/autograd/grad_mode.h"
#include "framework/core/error.h"
#include "framework/core/json.h"
#include "framework/ops/attention.h"
#include "framework/ops/attention_stats.h"

namespace strand::train {

namespace {

constexpr io::Rgb kInk{40, 40, 40};
constexpr int64_t kMargin = 12;
constexpr int64_t kPanel = 128;  // head-view panel side in pixels

// Restores the model's training mode however the analysis ends.
class EvalMode {
 public:
  explicit EvalMode(nn::Module& m) : m_(m), was_(m.is_training()) { m_.train(false); }
  ~EvalMode() { m_.train(was_); }
  EvalMode(const EvalMode&) = delete;
  EvalMode& operator=(const EvalMode&) = delete;

 private:
  nn::Module& m_;
  bool was_;
};

// Draws an n x n map into a side x side square at (x0, y0): each pixel the mean of the cells it
// covers (side < n) or each cell a block of pixels (side >= n), coloured by sqrt(value / top) so
// that weak attention stays visible beside a strong one.
void draw_map(io::Image& img, int64_t x0, int64_t y0, int64_t side, std::span<const double> map, int64_t n, double top) {
  for (int64_t py = 0; py < side; ++py)
    for (int64_t px = 0; px < side; ++px) {
      const int64_t i0 = py * n / side, i1 = std::max(i0 + 1, (py + 1) * n / side);
      const int64_t j0 = px * n / side, j1 = std::max(j0 + 1, (px + 1) * n / side);
      double sum = 0;
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) sum += map[static_cast<size_t>(i * n + j)];
      const double mean = sum / static_cast<double>((i1 - i0) * (j1 - j0));
      img.set(x0 + px, y0 + py, io::heat_color(top > 0 ? std::sqrt(mean / top) : 0.0));
    }
}

double largest(std::span<const double> v) {
  double m = 0;
  for (double x : v) m = std::max(m, x);
  return m;
}

// Four significant digits keep the maps' JSON a few MB.
std::string short_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

std::string matrix_json(std::span<const double> m, int64_t n) {
  std::string s = "[";
  for (int64_t i = 0; i < n; ++i) {
    s += i ? ",[" : "[";
    for (int64_t j = 0; j < n; ++j) {
      if (j) s += ",";
      s += short_number(m[static_cast<size_t>(i * n + j)]);
    }
    s += "]";
  }
  return s + "]";
}

}  // namespace

AttentionAnalysis analyze_attention(models::Gpt& model, std::span<const int32_t> ids, const AnalyzeOptions& options) {
  const int64_t n = static_cast<int64_t>(ids.size());
  STRAND_CHECK(n >= 1, ValueError, "analyze: the input has no tokens");
  STRAND_CHECK(options.row_stride >= 1, ValueError, "analyze: --row-stride ", options.row_stride, " must be >= 1");
  const config::ModelConfig& c = model.config();
  STRAND_CHECK(c.attention.pattern != config::AttentionPattern::Linear, ValueError,
               "analyze: attention pattern linear (Performer) has no attention distribution to analyse");
  STRAND_CHECK(c.pos != config::PosEncoding::Learned || n <= c.max_seq_len, ValueError, "analyze: ", n,
               " tokens exceed the learned position table of model.max_seq_len = ", c.max_seq_len);
  EvalMode eval(model);
  autograd::NoGradGuard no_grad;

  std::vector<double> at(ids.begin(), ids.end()), pos(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) pos[static_cast<size_t>(i)] = static_cast<double>(i);
  const Tensor tokens = Tensor::from_vector(at, {1, n}, DType::I32);
  const Tensor positions = Tensor::from_vector(pos, {n}, DType::I32);
  const models::Stack& stack = model.transformer();
  Tensor x = stack.embed(tokens, positions, stack.wte(), models::DropoutPlan{});

  AttentionAnalysis out;
  out.tokens = n;
  out.rows = (n + options.row_stride - 1) / options.row_stride;
  const bool maps = n <= options.map_tokens;
  std::vector<std::vector<double>> layer_means;
  for (int64_t l = 0; l < stack.n_layer(); ++l) {
    const models::Block& block = stack.block(l);
    const nn::MultiHeadAttention& attn = block.attn();
    const nn::MultiHeadAttention::Heads h = attn.heads(block.ln_1().forward(x), positions);
    const ops::AttentionOutput a = ops::attention(h.q, h.k, h.v, attn.options().mask);
    std::vector<double> probs;
    const ops::AttentionRowStats st = ops::attention_row_stats(h.q, h.k, a.lse, attn.options().mask, 0.0,
                                                               options.row_stride, maps ? &probs : nullptr);
    const int64_t heads = attn.n_head();
    std::vector<HeadSummary> summary(static_cast<size_t>(heads));
    for (int64_t hd = 0; hd < heads; ++hd) {
      for (int64_t i = 0; i < n; i += options.row_stride) {
        summary[static_cast<size_t>(hd)].entropy += st.entropy[static_cast<size_t>(hd * n + i)];
        summary[static_cast<size_t>(hd)].distance += st.distance[static_cast<size_t>(hd * n + i)];
      }
      summary[static_cast<size_t>(hd)].entropy /= static_cast<double>(out.rows);
      summary[static_cast<size_t>(hd)].distance /= static_cast<double>(out.rows);
    }
    out.heads.push_back(std::move(summary));
    if (maps) {
      std::vector<std::vector<double>> per_head;
      std::vector<double> mean(static_cast<size_t>(n * n), 0.0);
      for (int64_t hd = 0; hd < heads; ++hd) {
        const auto first = probs.begin() + hd * n * n;
        per_head.emplace_back(first, first + n * n);
        for (size_t e = 0; e < mean.size(); ++e) mean[e] += per_head.back()[e] / static_cast<double>(heads);
      }
      out.maps.push_back(std::move(per_head));
      layer_means.push_back(std::move(mean));
    }
    x = block.forward(x, positions, Tensor(), models::DropoutPlan{}, {});
    if (options.on_layer) options.on_layer(l + 1, stack.n_layer());
  }
  if (maps) out.rollout = attention_rollout(layer_means, n);
  return out;
}

std::vector<double> attention_rollout(const std::vector<std::vector<double>>& layer_maps, int64_t n) {
  std::vector<double> r(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) r[static_cast<size_t>(i * n + i)] = 1.0;
  std::vector<double> next(r.size());
  for (const std::vector<double>& a : layer_maps) {
    STRAND_CHECK(static_cast<int64_t>(a.size()) == n * n, ShapeError, "attention_rollout: a layer map of ", a.size(),
                 " values, expected ", n * n);
    // next = ((A + I) / 2) . r: the later layer multiplies from the left.
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0.5 * r[static_cast<size_t>(i * n + j)];
        for (int64_t t = 0; t < n; ++t) sum += 0.5 * a[static_cast<size_t>(i * n + t)] * r[static_cast<size_t>(t * n + j)];
        next[static_cast<size_t>(i * n + j)] = sum;
      }
    r.swap(next);
  }
  return r;
}

io::Image head_view_image(const AttentionAnalysis& analysis) {
  STRAND_CHECK(analysis.has_maps(), ValueError, "head view: the analysis has no attention maps");
  const int64_t layers = static_cast<int64_t>(analysis.maps.size());
  int64_t heads = 0;
  for (const auto& l : analysis.maps) heads = std::max<int64_t>(heads, static_cast<int64_t>(l.size()));
  const int64_t label_h = io::kGlyphHeight + 4, cell_w = kPanel + kMargin, cell_h = kPanel + label_h + kMargin;
  io::Image img(kMargin + heads * cell_w, kMargin + layers * cell_h);
  for (int64_t l = 0; l < layers; ++l)
    for (int64_t h = 0; h < static_cast<int64_t>(analysis.maps[static_cast<size_t>(l)].size()); ++h) {
      const std::vector<double>& m = analysis.maps[static_cast<size_t>(l)][static_cast<size_t>(h)];
      const int64_t x0 = kMargin + h * cell_w, y0 = kMargin + l * cell_h;
      const std::string label = detail::concat("L", l, " H", h);
      io::draw_text(img, x0, y0, label, kInk);
      draw_map(img, x0, y0 + label_h, kPanel, m, analysis.tokens, largest(m));
    }
  return img;
}

io::Image heatmap_image(std::span<const double> map, int64_t n, const std::vector<std::string>& labels,
                        const std::string& title) {
  STRAND_CHECK(static_cast<int64_t>(map.size()) == n * n && n >= 1, ShapeError, "heatmap: ", map.size(),
               " values for an ", n, " x ", n, " map");
  const bool labelled = n <= 64 && static_cast<int64_t>(labels.size()) == n;
  const int64_t cell = labelled ? std::max<int64_t>(io::kGlyphHeight + 2, 512 / n) : 0;
  const int64_t side = labelled ? cell * n : std::max<int64_t>(256, std::min<int64_t>(n, 512));
  int64_t label_w = 0;
  if (labelled)
    for (const std::string& s : labels) label_w = std::max<int64_t>(label_w, static_cast<int64_t>(s.size()) * io::kGlyphWidth);
  const int64_t left = kMargin + (labelled ? label_w + 4 : 0);
  const int64_t top = kMargin + io::kGlyphHeight + 6 + (labelled ? label_w + 4 : 0);
  io::Image img(left + side + kMargin, top + side + kMargin);
  io::draw_text(img, kMargin, kMargin, title, kInk);
  draw_map(img, left, top, side, map, n, largest(map));
  if (labelled) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t mid = i * cell + (cell - io::kGlyphHeight) / 2;
      const std::string& s = labels[static_cast<size_t>(i)];
      io::draw_text(img, left - 4 - static_cast<int64_t>(s.size()) * io::kGlyphWidth, top + mid, s, kInk);  // queries
      io::draw_text_vertical(img, left + mid, top - 4, s, kInk);                                         // keys
    }
  }
  return img;
}

io::Image importance_image(const std::vector<std::vector<double>>& scores,
                           const std::vector<std::vector<int64_t>>& heads,
                           const std::vector<std::vector<int64_t>>& removed) {
  constexpr int64_t kBarW = 18, kBarH = 60, kGap = 6;
  const int64_t layers = static_cast<int64_t>(scores.size());
  STRAND_CHECK(layers >= 1 && heads.size() == scores.size() && removed.size() == scores.size(), ShapeError,
               "importance picture: scores, heads and removed heads of ", scores.size(), ", ", heads.size(), " and ",
               removed.size(), " layers");
  size_t widest = 1;
  double top = 0;
  for (const auto& l : scores) {
    widest = std::max(widest, l.size());
    for (double v : l) top = std::max(top, v);
  }
  const int64_t label_w = 4 * io::kGlyphWidth, row_h = kBarH + io::kGlyphHeight + 2 * kGap;
  io::Image img(2 * kMargin + label_w + static_cast<int64_t>(widest) * (kBarW + kGap),
                2 * kMargin + io::kGlyphHeight + kGap + layers * row_h);
  io::draw_text(img, kMargin, kMargin, "head importance", kInk);
  for (int64_t l = 0; l < layers; ++l) {
    const int64_t y0 = kMargin + io::kGlyphHeight + kGap + l * row_h;
    io::draw_text(img, kMargin, y0 + kBarH - io::kGlyphHeight, detail::concat("L", l), kInk);
    const auto& ls = scores[static_cast<size_t>(l)];
    STRAND_CHECK(heads[static_cast<size_t>(l)].size() == ls.size(), ShapeError, "importance picture: layer ", l,
                 " has ", ls.size(), " scores for ", heads[static_cast<size_t>(l)].size(), " heads");
    for (size_t i = 0; i < ls.size(); ++i) {
      const int64_t head = heads[static_cast<size_t>(l)][i];
      const auto& gone = removed[static_cast<size_t>(l)];
      const bool pruned = std::find(gone.begin(), gone.end(), head) != gone.end();
      const int64_t h = top > 0 ? static_cast<int64_t>(std::lround(kBarH * ls[i] / top)) : 0;
      const int64_t x = kMargin + label_w + static_cast<int64_t>(i) * (kBarW + kGap);
      img.fill_rect(x, y0 + kBarH - h, kBarW, h, pruned ? io::Rgb{170, 170, 170} : io::heat_color(0.35));
      io::draw_text(img, x + 3, y0 + kBarH + 3, std::to_string(head), kInk);
    }
  }
  return img;
}

std::string analysis_json(const AttentionAnalysis& analysis, const std::vector<std::string>& labels) {
  std::string s = "{\"tokens\": " + std::to_string(analysis.tokens) + ", \"rows\": " + std::to_string(analysis.rows) +
                  ", \"layers\": [";
  for (size_t l = 0; l < analysis.heads.size(); ++l) {
    if (l) s += ", ";
    s += "{\"layer\": " + std::to_string(l) + ", \"heads\": [";
    for (size_t h = 0; h < analysis.heads[l].size(); ++h) {
      const HeadSummary& hs = analysis.heads[l][h];
      if (h) s += ", ";
      s += "{\"head\": " + std::to_string(h) + ", \"entropy\": " + json_number(hs.entropy) + ", \"distance\": " +
           json_number(hs.distance) + "}";
    }
    s += "]}";
  }
  s += "]";
  if (analysis.has_maps()) {
    s += ", \"labels\": [";
    for (size_t i = 0; i < labels.size(); ++i) {
      if (i) s += ", ";
      s += json_string(labels[i]);
    }
    s += "], \"maps\": [";
    for (size_t l = 0; l < analysis.maps.size(); ++l) {
      s += l ? ", [" : "[";
      for (size_t h = 0; h < analysis.maps[l].size(); ++h) {
        if (h) s += ", ";
        s += matrix_json(analysis.maps[l][h], analysis.tokens);
      }
      s += "]";
    }
    s += "], \"rollout\": " + matrix_json(analysis.rollout, analysis.tokens);
  }
  return s + "}\n";
}

}  // namespace strand::train
