// `strand export CKPT --format safetensors --out DIR`: a gpt checkpoint as DIR/model.safetensors
// and DIR/config.json in the Hugging Face GPT-2 layout, so GPT2LMHeadModel.from_pretrained(DIR)
// loads it unchanged (docs/checkpoint-format.md, "Export to Hugging Face"). A pruned checkpoint
// goes out with GPT2Config's pruned_heads and the sliced attention weights of its layers.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "framework/config/config.h"
#include "framework/io/checkpoint.h"
#include "framework/io/safetensors.h"
#include "framework/train/pruned_heads.h"
#include "launch/commands.h"

namespace strand::launch {

namespace {

using config::Config;

// Refuses, naming the config key, every option that GPT-2 has no counterpart for: the export
// would load in transformers but compute something else.
void check_exportable(const Config& c, const std::string& ckpt) {
  const auto& m = c.model;
  auto refuse = [&](const std::string& key, const std::string& value, const std::string& needed) {
    throw ValueError("export: " + ckpt + ": " + key + " is " + value +
                     "; the Hugging Face GPT-2 layout needs " + key + ": " + needed);
  };
  if (m.arch != config::Arch::Gpt) refuse("model.arch", name_of(m.arch), "gpt");
  if (m.pos != config::PosEncoding::Learned) refuse("model.pos", name_of(m.pos), "learned");
  if (m.norm != config::NormKind::LayerNorm) refuse("model.norm", name_of(m.norm), "layernorm");
  if (m.activation != config::Activation::Gelu) refuse("model.activation", name_of(m.activation), "gelu");
  if (m.n_kv_head != m.n_head)
    refuse("model.n_kv_head", std::to_string(m.n_kv_head), std::to_string(m.n_head) + " (= model.n_head)");
  if (m.attention.pattern != config::AttentionPattern::Causal)
    refuse("model.attention.pattern", name_of(m.attention.pattern), "causal");
}

// The parameters of a plain GPT-2 of this config, in state-dict order, with their shapes.
// A pruned layer i keeps h_i heads of width D = C / n_head: transformers' GPT2Attention.prune_heads
// leaves c_attn [C, 3 h_i D] (the kept heads' q, then k, then v columns) and c_proj [h_i D, C].
std::vector<std::pair<std::string, Shape>> gpt2_parameters(const config::ModelConfig& m) {
  const int64_t C = m.d_model, F = m.d_ff, V = m.vocab_size, T = m.max_seq_len, D = m.d_model / m.n_head;
  const auto kept = train::kept_query_heads(m);
  std::vector<std::pair<std::string, Shape>> p = {{"transformer.wte.weight", {V, C}},
                                                  {"transformer.wpe.weight", {T, C}}};
  for (int64_t i = 0; i < m.n_layer; ++i) {
    const std::string h = "transformer.h." + std::to_string(i) + ".";
    p.push_back({h + "ln_1.weight", {C}});
    p.push_back({h + "ln_1.bias", {C}});
    const int64_t width = static_cast<int64_t>(kept[static_cast<size_t>(i)].size()) * D;
    p.push_back({h + "attn.c_attn.weight", {C, 3 * width}});
    p.push_back({h + "attn.c_attn.bias", {3 * width}});
    p.push_back({h + "attn.c_proj.weight", {width, C}});
    p.push_back({h + "attn.c_proj.bias", {C}});
    p.push_back({h + "ln_2.weight", {C}});
    p.push_back({h + "ln_2.bias", {C}});
    p.push_back({h + "mlp.c_fc.weight", {C, F}});
    p.push_back({h + "mlp.c_fc.bias", {F}});
    p.push_back({h + "mlp.c_proj.weight", {F, C}});
    p.push_back({h + "mlp.c_proj.bias", {C}});
  }
  p.push_back({"transformer.ln_f.weight", {C}});
  p.push_back({"transformer.ln_f.bias", {C}});
  if (!m.tie_embeddings) p.push_back({"lm_head.weight", {V, C}});  // nn.Linear(C, V).weight
  return p;
}

// The checkpoint's tensors under the GPT-2 names, as float32, after checking that the model
// group holds exactly those names with those shapes.
std::vector<std::pair<std::string, Tensor>> gpt2_tensors(const io::CheckpointData& ck, const Config& c) {
  const auto expected = gpt2_parameters(c.model);
  std::set<std::string> expected_names;
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [name, shape] : expected) {
    expected_names.insert(name);
    const Tensor* t = ck.model.find_tensor(name);
    if (!t) throw ValueError("export: " + ck.source + ": parameter '" + name + "' is missing from /model");
    if (t->shape() != shape)
      throw ShapeError("export: " + ck.source + ": parameter '" + name + "' has shape " + shape_str(t->shape()) +
                       ", GPT-2 of this config needs " + shape_str(shape));
    out.emplace_back(name, t->dtype() == DType::F32 ? *t : t->copy_as(DType::F32, Device::cpu()));
  }
  for (const auto& [name, t] : ck.model.tensors)
    if (!expected_names.count(name))
      throw ValueError("export: " + ck.source + ": parameter '" + name +
                       "' has no place in the GPT-2 layout (a model other than plain gpt?)");
  return out;
}

// GPT2Config's pruned_heads of a pruned model: {"layer": [removed heads, original indices]} for
// each layer that lost heads (from_pretrained prunes those, then loads the sliced weights).
std::string pruned_heads_json(const config::ModelConfig& m) {
  std::string j = "{";
  const auto kept = train::kept_query_heads(m);
  for (size_t i = 0; i < kept.size(); ++i) {
    std::string removed;
    for (int64_t h = 0; h < m.n_head; ++h)
      if (std::find(kept[i].begin(), kept[i].end(), h) == kept[i].end())
        removed += (removed.empty() ? "" : ", ") + std::to_string(h);
    if (!removed.empty()) j += (j.size() > 1 ? ", \"" : "\"") + std::to_string(i) + "\": [" + removed + "]";
  }
  return j + "}";
}

// GPT2Config as transformers writes it. n_inner null means 4 * n_embd; gelu_new is GELU with
// the tanh approximation, strand's `gelu`.
std::string gpt2_config_json(const config::ModelConfig& m) {
  std::ostringstream dropout;
  dropout.precision(17);
  dropout << m.dropout;
  // GPT-2's end-of-text id only exists in its own vocabulary; other vocabularies have none.
  const std::string eot = m.vocab_size == 50257 ? "50256" : "null";
  std::ostringstream j;
  j << "{\n"
    << "  \"architectures\": [\"GPT2LMHeadModel\"],\n"
    << "  \"model_type\": \"gpt2\",\n"
    << "  \"vocab_size\": " << m.vocab_size << ",\n"
    << "  \"n_positions\": " << m.max_seq_len << ",\n"
    << "  \"n_ctx\": " << m.max_seq_len << ",\n"
    << "  \"n_embd\": " << m.d_model << ",\n"
    << "  \"n_layer\": " << m.n_layer << ",\n"
    << "  \"n_head\": " << m.n_head << ",\n"
    << (train::is_pruned(m) ? "  \"pruned_heads\": " + pruned_heads_json(m) + ",\n" : std::string())
    << "  \"n_inner\": " << (m.d_ff == 4 * m.d_model ? std::string("null") : std::to_string(m.d_ff)) << ",\n"
    << "  \"activation_function\": \"gelu_new\",\n"
    << "  \"layer_norm_epsilon\": 1e-05,\n"
    << "  \"resid_pdrop\": " << dropout.str() << ",\n"
    << "  \"embd_pdrop\": " << dropout.str() << ",\n"
    << "  \"attn_pdrop\": " << dropout.str() << ",\n"
    << "  \"initializer_range\": 0.02,\n"
    << "  \"scale_attn_weights\": true,\n"
    << "  \"scale_attn_by_inverse_layer_idx\": false,\n"
    << "  \"reorder_and_upcast_attn\": false,\n"
    << "  \"tie_word_embeddings\": " << (m.tie_embeddings ? "true" : "false") << ",\n"
    << "  \"bos_token_id\": " << eot << ",\n"
    << "  \"eos_token_id\": " << eot << ",\n"
    << "  \"use_cache\": true,\n"
    << "  \"torch_dtype\": \"float32\"\n"
    << "}\n";
  return j.str();
}

struct ExportOptions {
  std::string checkpoint;
  std::string format = "safetensors";
  std::string out_dir;
};

void export_checkpoint(const ExportOptions& o) {
  const io::CheckpointData ck = io::read_checkpoint(o.checkpoint);
  Config config = config::parse_config(ck.config_yaml, o.checkpoint + " (config attribute)");
  check_exportable(config, o.checkpoint);
  train::adopt_pruned_heads(config, ck);  // a pruned model: its heads per layer (group /pruning)
  const auto tensors = gpt2_tensors(ck, config);

  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  if (ec) throw io::CheckpointError(o.out_dir + ": cannot create the output directory: " + ec.message());
  const std::string weights = (std::filesystem::path(o.out_dir) / "model.safetensors").string();
  const std::string config_json = (std::filesystem::path(o.out_dir) / "config.json").string();
  // Each file goes through temp + rename; the weights first, so a config.json is never beside
  // a missing or partial model.safetensors from this export.
  io::write_safetensors(weights, tensors, {{"format", "pt"}});
  io::write_text_atomically(config_json, gpt2_config_json(config.model));

  int64_t total = 0;
  for (const auto& [name, t] : tensors) total += t.numel();
  std::printf("wrote %s (%zu tensors, %lld parameters, float32) and %s\n", weights.c_str(), tensors.size(),
              static_cast<long long>(total), config_json.c_str());
}

}  // namespace

void add_export_command(CLI::App& app) {
  auto options = std::make_shared<ExportOptions>();
  CLI::App* cmd = app.add_subcommand("export", "Write a gpt checkpoint in the Hugging Face GPT-2 layout");
  cmd->add_option("checkpoint", options->checkpoint, "Checkpoint file (.h5)")->required();
  cmd->add_option("--format", options->format, "Output format")
      ->check(CLI::IsMember({"safetensors"}))
      ->capture_default_str();
  cmd->add_option("--out", options->out_dir, "Output directory: model.safetensors and config.json")->required();
  cmd->callback([options]() { export_checkpoint(*options); });
}

}  // namespace strand::launch
