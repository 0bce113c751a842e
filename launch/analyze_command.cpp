// `strand analyze CONFIG --checkpoint CKPT (--text TEXT | --data PATH) [--out DIR]`: what the
// attention heads of a trained GPT do on one input: entropy and mean distance per layer and head
// (analysis.json), and for a short input the head view and attention rollout as PNGs beside the
// attention maps in JSON (framework/train/analyze.h; docs/analysis.md).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "data/shards.h"
#include "framework/config/config.h"
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
  const train::AttentionAnalysis analysis = train::analyze_attention(gpt, ids, args.options);
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
