// `strand analyze CONFIG --checkpoint CKPT (--text TEXT | --data PATH) [--out DIR]`: what the
// attention heads of a trained GPT do on one input: entropy and mean distance per layer and head
// (analysis.json), and for a short input the head view and attention rollout as PNGs beside the
// attention maps in JSON (framework/train/analyze.h; docs/analysis.md).
#include <cstdio>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "data/shards.h"
#include "framework/config/config.h"
#include "framework/core/json_value.h"
#include "framework/core/progress.h"
#include "framework/core/text.h"
#include "framework/io/atomic_file.h"
#include "framework/io/checkpoint.h"
#include "framework/io/image.h"
#include "framework/ops/attention_contract.h"
#include "framework/train/analyze.h"
#include "framework/train/components.h"
#include "framework/train/sample.h"
#include "launch/commands.h"
#include "parallel/comm/group.h"

namespace strand::launch {

namespace {

struct AnalyzeArgs {
  std::string config;
  std::string checkpoint;
  std::string text;
  std::string data;
  std::string out;
  std::vector<std::string> overrides;
  std::string attention_precision = "fp32";
  int64_t max_tokens = 0;  // 0: the model's max_seq_len
  train::AnalyzeOptions options;
};

// A short printable label per token (its decoded text, at most 6 characters; "\n" shown as "\n").
std::vector<std::string> token_labels(const data::Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::vector<std::string> labels;
  for (int32_t id : ids) {
    std::string s = printable(tok.decode(std::span<const int32_t>(&id, 1)));
    if (s == " ") s = "_";
    if (s.size() > 6) s.resize(6);
    labels.push_back(s);
  }
  return labels;
}

// The prune report (strand prune's prune_report.json) of the run a checkpoint belongs to: beside
// it or up to three folders up (RUN_DIR/round_R/checkpoints/step_N.h5); "" when there is none.
std::string find_prune_report(const std::string& checkpoint) {
  std::filesystem::path dir = std::filesystem::absolute(checkpoint).parent_path();
  for (int up = 0; up < 4 && !dir.empty(); ++up, dir = dir.parent_path()) {
    const std::filesystem::path report = dir / "prune_report.json";
    if (std::filesystem::exists(report)) return report.string();
    if (dir == dir.parent_path()) break;
  }
  return "";
}

std::vector<std::vector<int64_t>> int_rows(const JsonValue* v) {
  std::vector<std::vector<int64_t>> rows;
  if (v == nullptr) return rows;
  for (const JsonValue& row : v->items) {
    rows.emplace_back();
    for (const JsonValue& x : row.items) rows.back().push_back(static_cast<int64_t>(x.number));
  }
  return rows;
}

// head_importance.png from the last scored round of the report: its scores over the heads the
// round started with, the ones it removed in grey. Returns the picture's path.
std::string write_importance(const std::string& report_path, const std::string& out) {
  std::ifstream in(report_path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  JsonValue report;
  try {
    report = parse_json(text);
  } catch (const ValueError& e) {
    throw ValueError(report_path + ": " + e.what());
  }
  const JsonValue* rounds = report.find("rounds");
  STRAND_CHECK(rounds != nullptr && rounds->kind == JsonValue::Kind::Array, ValueError, report_path,
               ": no \"rounds\" array");
  for (size_t r = rounds->items.size(); r-- > 1;) {
    const JsonValue* scores = rounds->items[r].find("scores");
    if (scores == nullptr || scores->items.empty()) continue;
    std::vector<std::vector<double>> s;
    for (const JsonValue& row : scores->items) {
      s.emplace_back();
      for (const JsonValue& x : row.items) s.back().push_back(x.number);
    }
    const auto before = int_rows(rounds->items[r - 1].find("kept_heads"));
    const auto after = int_rows(rounds->items[r].find("kept_heads"));
    STRAND_CHECK(before.size() == s.size() && after.size() == s.size(), ValueError, report_path, ": round ", r,
                 " has scores for ", s.size(), " layers but kept heads for ", before.size(), " and ", after.size());
    std::vector<std::vector<int64_t>> removed(s.size());
    for (size_t l = 0; l < s.size(); ++l)
      for (int64_t h : before[l])
        if (std::find(after[l].begin(), after[l].end(), h) == after[l].end()) removed[l].push_back(h);
    const std::string path = (std::filesystem::path(out) / "head_importance.png").string();
    io::write_png(path, train::importance_image(s, before, removed));
    return path;
  }
  return "";
}

void run_analyze(const AnalyzeArgs& args, bool text_given, parallel::Group& world) {
  STRAND_CHECK(world.size() == 1, ValueError, "analyze runs in one process, not under mpirun with ", world.size(),
               " ranks (run it without mpirun)");
  STRAND_CHECK(text_given != !args.data.empty(), ValueError,
               "analyze: give the input with exactly one of --text TEXT and --data PATH");
  const train::Config config = train::load_config(args.config, args.overrides);
  STRAND_CHECK(config.model.arch == config::Arch::Gpt, ValueError, args.config,
               ": key 'model.arch': analyze reads a decoder (gpt), not ", config::name_of(config.model.arch));
  std::unique_ptr<data::Tokenizer> tokenizer;
  try {
    tokenizer = train::run_tokenizer(config);
  } catch (const config::ConfigError& e) {
    throw config::ConfigError(args.config + ": " + e.what());
  }
  const int64_t limit = args.max_tokens > 0 ? args.max_tokens : config.model.max_seq_len;
  std::vector<int32_t> ids = text_given ? tokenizer->encode(args.text) : data::read_token_shard(args.data);
  STRAND_CHECK(!ids.empty(), ValueError, "analyze: the input has no tokens");
  if (static_cast<int64_t>(ids.size()) > limit) ids.resize(static_cast<size_t>(limit));
  for (int32_t id : ids)
    STRAND_CHECK(id >= 0 && id < config.model.vocab_size, ValueError, "analyze: token ", id,
                 " is outside the model's vocabulary of ", config.model.vocab_size);

  const io::CheckpointData ckpt = io::read_checkpoint(args.checkpoint);
  std::shared_ptr<models::Model> model = models::build_model(config);
  io::load_into(model->named_parameters(), ckpt);
  auto& gpt = dynamic_cast<models::Gpt&>(*model);

  const std::string out = args.out.empty() ? (std::filesystem::path(config.run.dir) / "analysis").string() : args.out;
  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  STRAND_CHECK(!ec, ValueError, "--out ", out, ": cannot create the directory (", ec.message(), ")");

  const ops::Int8AttentionScope attention_precision(args.attention_precision == "int8");
  // A long input takes minutes per layer on CPU: its progress (none when done within a second).
  ProgressOptions shown;
  shown.label = "analyze";
  shown.unit = "layers";
  shown.total = config.model.n_layer;
  shown.quiet_below_s = 1.0;
  Progress progress(shown);
  train::AnalyzeOptions options = args.options;
  options.on_layer = [&](int64_t done, int64_t) { progress.update(done); };
  const train::AttentionAnalysis analysis = train::analyze_attention(gpt, ids, options);
  progress.finish();
  const std::vector<std::string> labels = token_labels(*tokenizer, ids);
  const std::string json_path = (std::filesystem::path(out) / "analysis.json").string();
  io::write_text_atomically(json_path, train::analysis_json(analysis, labels));
  std::printf("%s: %lld tokens, %lld layers, statistics over %lld query rows per head\n", json_path.c_str(),
              static_cast<long long>(analysis.tokens), static_cast<long long>(analysis.heads.size()),
              static_cast<long long>(analysis.rows));
  if (analysis.has_maps()) {
    const std::string head_view = (std::filesystem::path(out) / "head_view.png").string();
    const std::string rollout = (std::filesystem::path(out) / "rollout.png").string();
    io::write_png(head_view, train::head_view_image(analysis));
    io::write_png(rollout, train::heatmap_image(analysis.rollout, analysis.tokens, labels, "attention rollout"));
    std::printf("%s\n%s\n", head_view.c_str(), rollout.c_str());
  } else {
    std::printf("no pictures: %lld tokens is above --map-tokens %lld\n", static_cast<long long>(analysis.tokens),
                static_cast<long long>(args.options.map_tokens));
  }
  // Head importance, where the checkpoint comes from a strand prune run.
  if (const std::string report = find_prune_report(args.checkpoint); !report.empty()) {
    const std::string picture = write_importance(report, out);
    if (!picture.empty()) std::printf("%s (from %s)\n", picture.c_str(), report.c_str());
  }
  std::fflush(stdout);
}

}  // namespace

void add_analyze_command(CLI::App& app) {
  auto args = std::make_shared<AnalyzeArgs>();
  CLI::App* cmd = app.add_subcommand("analyze", "What the attention heads of a checkpoint do: statistics and pictures");
  cmd->add_option("config", args->config, "YAML config of the model")->required();
  cmd->add_option("--checkpoint", args->checkpoint, "Checkpoint file (.h5)")->required();
  CLI::Option* text = cmd->add_option("--text", args->text, "Input text (encoded with data.tokenizer)");
  cmd->add_option("--data", args->data, "Input tokens: a .bin token shard (its first tokens)");
  cmd->add_option("--out", args->out, "Output directory (default RUN_DIR/analysis)");
  cmd->add_option("--max-tokens", args->max_tokens, "Tokens of the input to analyse (default model.max_seq_len)")
      ->check(positive());
  cmd->add_option("--row-stride", args->options.row_stride, "Statistics over every n-th query row (long inputs)")
      ->check(positive())
      ->capture_default_str();
  cmd->add_option("--map-tokens", args->options.map_tokens, "Maps and pictures for inputs up to this many tokens")
      ->check(CLI::Range(int64_t{1}, int64_t{512}))
      ->capture_default_str();
  cmd->add_option("--attention-precision", args->attention_precision, "fp32, or int8 attention scores")
      ->check(CLI::IsMember({"fp32", "int8"}))
      ->capture_default_str();
  cmd->add_option("--set", args->overrides, "Override a config key (repeatable)")->allow_extra_args(false)->take_all();
  cmd->callback([args, text]() { run_analyze(*args, text->count() > 0, parallel::world()); });
}

}  // namespace strand::launch
