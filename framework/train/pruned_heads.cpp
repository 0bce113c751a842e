// Kept heads of a pruned model: the /pruning checkpoint group, its checks, and head slicing.
//
// Note [Pruned heads under Ulysses]
// Ring attention splits the sequence, so a layer with any number of heads runs under it. Ulysses
// (and the Ulysses part of hybrid) splits each layer's query heads over its group of u ranks:
// a pruned layer whose query head count u does not divide, or whose key/value head count u
// neither divides nor is a multiple of, cannot be laid out. Such a model is refused when it is
// loaded or made (check_kept_heads, naming the layer, its heads and parallel.sp_mode), not at
// the layer's first forward deep inside the exchange. `strand prune` under Ulysses removes
// units (heads, or GQA groups) u at a time from a layer, so what it makes always splits
// (heads_to_keep); a checkpoint pruned under ring attention may not.
#include "framework/train/pruned_heads.h"

#include <algorithm>
#include <set>

#include "framework/core/error.h"
#include "framework/io/checkpoint_dir.h"
#include "framework/train/components.h"

namespace strand::train {
namespace {

std::string layer_key(size_t layer, const char* what) {
  return "layer_" + std::to_string(layer) + "." + what;
}

std::vector<int64_t> all_heads(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}

std::string list_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// Positions in `from` of the entries of `to` (both ascending original indices; `to` a subset).
std::vector<int64_t> positions_in(const std::vector<int64_t>& from, const std::vector<int64_t>& to) {
  std::vector<int64_t> at;
  for (int64_t h : to) {
    const auto it = std::find(from.begin(), from.end(), h);
    STRAND_CHECK(it != from.end(), ValueError, "prune: head ", h, " is not among the kept heads ", list_str(from));
    at.push_back(static_cast<int64_t>(it - from.begin()));
  }
  return at;
}

// Copies the given column blocks (`width` wide, at positions `blocks` of `block_width` units of a
// `cols`-wide row) of every row of a row-major [rows, cols] matrix (or a [cols] vector).
std::vector<double> take_columns(const std::vector<double>& src, int64_t rows, int64_t cols,
                                 const std::vector<int64_t>& starts, int64_t width) {
  std::vector<double> out;
  out.reserve(static_cast<size_t>(rows * static_cast<int64_t>(starts.size()) * width));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t s : starts)
      for (int64_t c = 0; c < width; ++c) out.push_back(src[static_cast<size_t>(r * cols + s + c)]);
  return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

bool is_pruned(const config::ModelConfig& model) { return !model.kept_heads.empty(); }

std::vector<std::vector<int64_t>> kept_query_heads(const config::ModelConfig& model) {
  if (is_pruned(model)) return model.kept_heads;
  return std::vector<std::vector<int64_t>>(static_cast<size_t>(model.n_layer), all_heads(model.n_head));
}

std::vector<std::vector<int64_t>> kept_kv_heads(const config::ModelConfig& model) {
  if (is_pruned(model)) return model.kept_kv_heads;
  const int64_t kv = model.n_kv_head == 0 ? model.n_head : model.n_kv_head;
  return std::vector<std::vector<int64_t>>(static_cast<size_t>(model.n_layer), all_heads(kv));
}

io::CheckpointGroup pruning_group(const config::ModelConfig& model) {
  io::CheckpointGroup g;
  const auto q = kept_query_heads(model), kv = kept_kv_heads(model);
  for (size_t i = 0; i < q.size(); ++i) {
    g.int64s[layer_key(i, "kept_heads")] = q[i];
    g.int64s[layer_key(i, "kept_kv_heads")] = kv[i];
  }
  return g;
}

void check_kept_heads(const config::Config& config) {
  const config::ModelConfig& m = config.model;
  if (!is_pruned(m)) return;
  STRAND_CHECK(m.arch == config::Arch::Gpt, ValueError, "pruned heads: model.arch ", config::name_of(m.arch),
               " cannot be pruned (only gpt)");
  STRAND_CHECK(static_cast<int64_t>(m.kept_heads.size()) == m.n_layer &&
                   static_cast<int64_t>(m.kept_kv_heads.size()) == m.n_layer,
               ValueError, "pruned heads: kept heads are given for ", m.kept_heads.size(), " and ",
               m.kept_kv_heads.size(), " layers, the model has model.n_layer = ", m.n_layer);
  const int64_t kv_total = m.n_kv_head == 0 ? m.n_head : m.n_kv_head;
  const int64_t group = m.n_head / kv_total;  // query heads per key/value head
  const int u = ulysses_degree_of(config);
  for (size_t i = 0; i < m.kept_heads.size(); ++i) {
    const auto& q = m.kept_heads[i];
    const auto& kv = m.kept_kv_heads[i];
    auto ascending = [](const std::vector<int64_t>& v, int64_t n) {
      for (size_t j = 0; j < v.size(); ++j)
        if (v[j] < 0 || v[j] >= n || (j > 0 && v[j] <= v[j - 1])) return false;
      return true;
    };
    STRAND_CHECK(!q.empty() && ascending(q, m.n_head), ValueError, "pruned heads: layer ", i, " keeps query heads ",
                 list_str(q), "; they must be ascending, in [0, ", m.n_head, ") and at least one");
    STRAND_CHECK(!kv.empty() && ascending(kv, kv_total), ValueError, "pruned heads: layer ", i,
                 " keeps key/value heads ", list_str(kv), "; they must be ascending and in [0, ", kv_total, ")");
    std::set<int64_t> served;
    for (int64_t h : q) served.insert(h / group);
    STRAND_CHECK(std::vector<int64_t>(served.begin(), served.end()) == kv, ValueError, "pruned heads: layer ", i,
                 " keeps key/value heads ", list_str(kv), " but its query heads ", list_str(q), " read ",
                 list_str(std::vector<int64_t>(served.begin(), served.end())));
    // The kernels read query head h from key/value head h / (Hq / Hkv): every kept group must
    // keep the same number of query heads.
    for (int64_t g : kv) {
      const auto n = std::count_if(q.begin(), q.end(), [&](int64_t h) { return h / group == g; });
      STRAND_CHECK(static_cast<size_t>(n) * kv.size() == q.size(), ValueError, "pruned heads: layer ", i,
                   " keeps ", n, " query heads of key/value head ", g, " but ", q.size(), " query heads over ",
                   kv.size(), " key/value heads in all; every kept key/value head needs as many");
    }
    const int64_t hq = static_cast<int64_t>(q.size()), hkv = static_cast<int64_t>(kv.size());
    STRAND_CHECK(u == 1 || (hq % u == 0 && (hkv % u == 0 || u % hkv == 0)), ValueError,
                 "pruned heads: layer ", i, " has ", hq, " query and ", hkv, " key/value heads, which parallel.sp_mode ",
                 config::name_of(config.parallel.sp_mode), " cannot split over its Ulysses group of ", u,
                 " ranks (Note [Pruned heads under Ulysses]); run it with parallel.sp_mode ring");
  }
}

void adopt_pruned_heads(config::Config& config, const io::CheckpointData& checkpoint) {
  config::ModelConfig& m = config.model;
  m.kept_heads.clear();
  m.kept_kv_heads.clear();
  const auto it = checkpoint.extra.find(kPruningGroup);
  if (it == checkpoint.extra.end()) return;
  const io::CheckpointGroup& g = it->second;
  for (size_t i = 0; i < static_cast<size_t>(m.n_layer); ++i) {
    const auto q = g.int64s.find(layer_key(i, "kept_heads"));
    const auto kv = g.int64s.find(layer_key(i, "kept_kv_heads"));
    if (q == g.int64s.end() || kv == g.int64s.end())
      throw io::CheckpointError(checkpoint.source + ": group /pruning has no " + layer_key(i, "kept_heads") + " and " +
                                layer_key(i, "kept_kv_heads") + " for the model's layer " + std::to_string(i));
    m.kept_heads.push_back(q->second);
    m.kept_kv_heads.push_back(kv->second);
  }
  try {
    check_kept_heads(config);
  } catch (const ValueError& e) {
    throw io::CheckpointError(checkpoint.source + ": group /pruning: " + e.what());
  }
}

void adopt_resumed_heads(config::Config& config) {
  const std::optional<std::string> path = io::resolve_resume(config.checkpoint.resume, config.checkpoint.dir);
  if (!path) return;
  adopt_pruned_heads(config, io::read_checkpoint(*path));
}

config::Config prune_config(const config::Config& config, const std::vector<std::vector<int64_t>>& keep) {
  config::Config out = config;
  const auto q = kept_query_heads(config.model);
  STRAND_CHECK(keep.size() == q.size(), ValueError, "prune: ", keep.size(), " layers of kept heads for a model of ",
               q.size());
  const int64_t kv_total = config.model.n_kv_head == 0 ? config.model.n_head : config.model.n_kv_head;
  const int64_t group = config.model.n_head / kv_total;
  out.model.kept_heads.clear();
  out.model.kept_kv_heads.clear();
  for (size_t i = 0; i < q.size(); ++i) {
    std::vector<int64_t> heads;
    std::set<int64_t> served;
    for (int64_t at : keep[i]) {
      STRAND_CHECK(at >= 0 && at < static_cast<int64_t>(q[i].size()), ValueError, "prune: layer ", i, " has ",
                   q[i].size(), " heads, no head ", at);
      heads.push_back(q[i][static_cast<size_t>(at)]);
      served.insert(heads.back() / group);
    }
    std::sort(heads.begin(), heads.end());
    out.model.kept_heads.push_back(heads);
    out.model.kept_kv_heads.emplace_back(served.begin(), served.end());
  }
  check_kept_heads(out);
  return out;
}

io::CheckpointData slice_heads(const config::Config& from_config, const config::Config& to_config,
                               const std::vector<std::pair<std::string, Tensor>>& from_parameters) {
  const config::ModelConfig& m = from_config.model;
  const int64_t C = m.d_model, D = m.d_model / m.n_head;
  const auto q0 = kept_query_heads(m), kv0 = kept_kv_heads(m);
  const auto q1 = kept_query_heads(to_config.model), kv1 = kept_kv_heads(to_config.model);
  io::CheckpointData out;
  for (const auto& [name, t] : from_parameters) {
    size_t layer = 0;
    bool attn = false;
    const std::string prefix = "transformer.h.";
    if (name.rfind(prefix, 0) == 0 && name.find(".attn.c_") != std::string::npos) {
      layer = static_cast<size_t>(std::stoll(name.substr(prefix.size())));
      attn = true;
    }
    if (!attn) {
      out.model.tensors.emplace_back(name, t);
      continue;
    }
    const int64_t hq = static_cast<int64_t>(q0[layer].size()), hkv = static_cast<int64_t>(kv0[layer].size());
    const std::vector<int64_t> qa = positions_in(q0[layer], q1[layer]), kva = positions_in(kv0[layer], kv1[layer]);
    const std::vector<double> src = t.to_vector();
    if (ends_with(name, "attn.c_attn.weight") || ends_with(name, "attn.c_attn.bias")) {
      // Columns: q heads [0, hq D), k heads [hq D, (hq + hkv) D), v heads after.
      std::vector<int64_t> starts;
      for (int64_t h : qa) starts.push_back(h * D);
      for (int64_t h : kva) starts.push_back((hq + h) * D);
      for (int64_t h : kva) starts.push_back((hq + hkv + h) * D);
      const int64_t cols = (hq + 2 * hkv) * D, rows = t.dim() == 2 ? C : 1;
      const int64_t width = static_cast<int64_t>(starts.size()) * D;
      const Shape shape = t.dim() == 2 ? Shape{C, width} : Shape{width};
      out.model.tensors.emplace_back(name, Tensor::from_vector(take_columns(src, rows, cols, starts, D), shape, t.dtype()));
    } else if (ends_with(name, "attn.c_proj.weight")) {
      // Rows of query head h: [h D, (h + 1) D) of the [hq D, C] matrix: its transpose's columns.
      std::vector<double> rows;
      for (int64_t h : qa)
        rows.insert(rows.end(), src.begin() + h * D * C, src.begin() + (h + 1) * D * C);
      out.model.tensors.emplace_back(
          name, Tensor::from_vector(rows, {static_cast<int64_t>(qa.size()) * D, C}, t.dtype()));
    } else {
      out.model.tensors.emplace_back(name, t);  // c_proj.bias: [C], whatever the heads
    }
  }
  return out;
}

std::shared_ptr<models::Model> pruned_model(const config::Config& from_config, const models::Model& from,
                                            const config::Config& to_config) {
  std::shared_ptr<models::Model> model = models::build_model(to_config);
  io::load_into(model->named_parameters(), slice_heads(from_config, to_config, from.named_parameters()));
  return model;
}

}  // namespace strand::train
