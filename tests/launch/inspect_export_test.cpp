// `strand inspect` and `strand export`, run as the program users run: on gpt checkpoints written
// here with framework/io (no trainer needed), the parameter table, the exported safetensors
// (names, shapes and bit-exact values) and config.json, and the one-line refusals: a bad file,
// every config key that has no GPT-2 counterpart, a parameter of the wrong shape; and a pruned
// model's export in transformers' pruned_heads layout.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "framework/config/config.h"
#include "framework/io/checkpoint.h"
#include "framework/io/safetensors.h"
#include "framework/train/pruned_heads.h"

namespace strand {
namespace {
namespace fs = std::filesystem;

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

// The `strand` program of this build: tests/<binary> sits in BUILD/tests, strand in BUILD
// (STRAND_BIN overrides, e.g. to test an installed program).
std::string strand_program() {
  if (const char* env = std::getenv("STRAND_BIN")) return env;
  return (fs::read_symlink("/proc/self/exe").parent_path().parent_path() / "strand").string();
}

struct CommandResult {
  int exit_code = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// One line of small-config YAML per model option; the rest of the config is the defaults.
std::string gpt_yaml(const std::string& model_extra = "") {
  return "model:\n  arch: gpt\n  vocab_size: 16\n  n_layer: 2\n  n_head: 2\n  d_model: 8\n  max_seq_len: 8\n" +
         model_extra + "data:\n  format: synthetic\n  seq_len: 8\n  batch_size: 2\n";
}

// Parameters of a small GPT-2 (C = 8, F = 32, V = 16, T = 8, L = 2) in state-dict order (the
// order export writes), distinct random values.
std::vector<std::pair<std::string, Tensor>> gpt_params(bool tied = true) {
  const int64_t C = 8, F = 32, V = 16, T = 8;
  std::vector<std::pair<std::string, Shape>> shapes = {{"transformer.wte.weight", {V, C}},
                                                       {"transformer.wpe.weight", {T, C}}};
  for (int i = 0; i < 2; ++i) {
    const std::string h = "transformer.h." + std::to_string(i) + ".";
    shapes.push_back({h + "ln_1.weight", {C}});
    shapes.push_back({h + "ln_1.bias", {C}});
    shapes.push_back({h + "attn.c_attn.weight", {C, 3 * C}});
    shapes.push_back({h + "attn.c_attn.bias", {3 * C}});
    shapes.push_back({h + "attn.c_proj.weight", {C, C}});
    shapes.push_back({h + "attn.c_proj.bias", {C}});
    shapes.push_back({h + "ln_2.weight", {C}});
    shapes.push_back({h + "ln_2.bias", {C}});
    shapes.push_back({h + "mlp.c_fc.weight", {C, F}});
    shapes.push_back({h + "mlp.c_fc.bias", {F}});
    shapes.push_back({h + "mlp.c_proj.weight", {F, C}});
    shapes.push_back({h + "mlp.c_proj.bias", {C}});
  }
  shapes.push_back({"transformer.ln_f.weight", {C}});
  shapes.push_back({"transformer.ln_f.bias", {C}});
  if (!tied) shapes.push_back({"lm_head.weight", {V, C}});
  std::vector<std::pair<std::string, Tensor>> params;
  uint64_t seed = 100;
  for (const auto& [name, shape] : shapes) params.emplace_back(name, Tensor::randn(shape, seed++, DType::F32, 0.02));
  return params;
}

class InspectExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("strand_ie_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_TRUE(fs::exists(strand_program())) << "no strand program at " << strand_program() << " (build it first)";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // A checkpoint as the trainer writes one: resolved config, model, AdamW state, trainer step.
  std::string write_gpt_checkpoint(const std::string& name, const std::string& yaml,
                                   std::vector<std::pair<std::string, Tensor>> params) {
    io::CheckpointData ck;
    ck.config_yaml = config::to_yaml(config::parse_config(yaml, name));
    for (const auto& [n, t] : params) {
      ck.optimizer.tensors.emplace_back("m/" + n, Tensor::zeros(t.shape()));
      ck.optimizer.tensors.emplace_back("v/" + n, Tensor::zeros(t.shape()));
    }
    ck.model.tensors = std::move(params);
    ck.optimizer.set_int("step", 7);
    ck.trainer.set_int("step", 7);
    ck.trainer.set_int("tokens_seen", 7 * 2 * 8);
    io::write_checkpoint(path(name), ck);
    return path(name);
  }

  // Runs `strand ARGS`, capturing stdout and stderr.
  CommandResult strand(const std::string& args) const {
    const fs::path out = dir_ / "stdout.txt", err = dir_ / "stderr.txt";
    const std::string cmd = strand_program() + " " + args + " >" + out.string() + " 2>" + err.string();
    const int status = std::system(cmd.c_str());
    CommandResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
  }

  fs::path dir_;
};

TEST_F(InspectExportTest, InspectPrintsConfigStepAndParameterTable) {
  const auto params = gpt_params();
  const std::string ck = write_gpt_checkpoint("ck.h5", gpt_yaml(), params);
  const CommandResult r = strand("inspect " + ck);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_CONTAINS(r.out, "step: 7\n");
  EXPECT_CONTAINS(r.out, "tokens seen: 112\n");
  EXPECT_CONTAINS(r.out, "config:\n");
  EXPECT_CONTAINS(r.out, "    n_layer: 2\n");  // the YAML, indented under `config:`
  // Each parameter is one row: name, shape, dtype, count, in checkpoint order.
  int64_t total = 0;
  size_t last = 0;
  for (const auto& [name, t] : params) {
    total += t.numel();
    const size_t at = r.out.find("  " + name + " ");
    ASSERT_NE(at, std::string::npos) << name << "\n" << r.out;
    EXPECT_GT(at, last) << name << " out of order";
    last = at;
    const std::string row = r.out.substr(at, r.out.find('\n', at) - at);
    std::istringstream cols(row);
    std::string col_name, col_dtype, col_count, shape_part, col_shape;
    cols >> col_name;
    while (cols >> shape_part) {  // the shape "[8, 32]" has a space inside
      col_shape += (col_shape.empty() ? "" : " ") + shape_part;
      if (shape_part.back() == ']') break;
    }
    cols >> col_dtype >> col_count;
    EXPECT_EQ(col_name, name);
    EXPECT_EQ(col_shape, shape_str(t.shape())) << row;
    EXPECT_EQ(col_dtype, "float32") << row;
    EXPECT_EQ(col_count, std::to_string(t.numel())) << row;  // all below 1,000: no separators
  }
  EXPECT_CONTAINS(r.out, "total: " + std::to_string(params.size()) + " tensors, " + std::to_string(total / 1000) +
                             "," + std::to_string(total % 1000) + " parameters");
  EXPECT_CONTAINS(r.out, "optimizer: step 7, moments for " + std::to_string(params.size()));
}

TEST_F(InspectExportTest, InspectOfABadFileIsOneLineNamingIt) {
  const std::string garbage = path("garbage.h5");
  std::ofstream(garbage) << "this is not an HDF5 file, just some text that is long enough";
  for (const std::string& file : {garbage, path("missing.h5")}) {
    const CommandResult r = strand("inspect " + file);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_CONTAINS(r.err, file);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

TEST_F(InspectExportTest, ExportWritesTheGpt2LayoutBitExact) {
  for (const bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    const auto params = gpt_params(tied);
    const std::string ck =
        write_gpt_checkpoint("ck.h5", gpt_yaml(tied ? "" : "  tie_embeddings: false\n"), params);
    const std::string out = path(tied ? "hf_tied" : "hf_untied");
    const CommandResult r = strand("export " + ck + " --format safetensors --out " + out);
    ASSERT_EQ(r.exit_code, 0) << r.err;

    const io::SafetensorsFile st = io::read_safetensors(out + "/model.safetensors");
    EXPECT_EQ(st.metadata.at("format"), "pt");
    ASSERT_EQ(st.tensors.size(), params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      EXPECT_EQ(st.tensors[i].first, params[i].first);
      const Tensor& a = st.tensors[i].second;
      const Tensor& b = params[i].second;
      ASSERT_EQ(a.shape(), b.shape()) << params[i].first;
      ASSERT_EQ(a.dtype(), DType::F32);
      EXPECT_EQ(std::memcmp(a.raw_data(), b.raw_data(), b.nbytes()), 0) << params[i].first;
    }
    const std::string config = slurp(out + "/config.json");
    for (const char* field : {"\"model_type\": \"gpt2\"", "\"architectures\": [\"GPT2LMHeadModel\"]",
                              "\"vocab_size\": 16,", "\"n_positions\": 8,", "\"n_embd\": 8,", "\"n_layer\": 2,",
                              "\"n_head\": 2,", "\"n_inner\": null,", "\"activation_function\": \"gelu_new\"",
                              "\"layer_norm_epsilon\": 1e-05,"})
      EXPECT_CONTAINS(config, field);
    EXPECT_CONTAINS(config, tied ? "\"tie_word_embeddings\": true" : "\"tie_word_embeddings\": false");
    for (const auto& e : fs::directory_iterator(out))
      EXPECT_NE(e.path().filename().string().rfind(".tmp-", 0), 0u) << "leftover " << e.path();
  }
}

// A pruned checkpoint exports as transformers' own pruning leaves a GPT2LMHeadModel: config.json
// keeps n_head and lists the removed heads in pruned_heads, and each pruned layer's c_attn is
// the unpruned one's columns index_attn = [index, index + C, index + 2C] (index: the kept heads'
// D columns each) and c_proj its rows `index` (GPT2Attention.prune_heads, transformers 4.x).
// The checkpoint's slices are strand's (train::slice_heads); the expectation is HF's rule,
// written out here. transformers itself is not installed here: from_pretrained was not run.
TEST_F(InspectExportTest, ExportOfAPrunedModelFollowsTransformersPrunedHeads) {
  std::string yaml = gpt_yaml();
  yaml.replace(yaml.find("n_head: 2"), 9, "n_head: 4");
  config::Config c = config::parse_config(yaml, "cfg.yaml");
  const auto full = gpt_params();
  const config::Config pruned = train::prune_config(c, {{0, 1, 2, 3}, {1, 3}});  // layer 1 keeps heads 1 and 3
  io::CheckpointData sliced = train::slice_heads(c, pruned, full);
  io::CheckpointData ck;
  ck.config_yaml = config::to_yaml(c);
  ck.model = sliced.model;
  ck.extra[train::kPruningGroup] = train::pruning_group(pruned.model);
  ck.trainer.set_int("step", 1);
  io::write_checkpoint(path("pruned.h5"), ck);
  const CommandResult shown = strand("inspect " + path("pruned.h5"));
  EXPECT_CONTAINS(shown.out, "pruned: query heads kept per layer 4 2\n");
  const CommandResult r = strand("export " + path("pruned.h5") + " --out " + path("hf"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string json = slurp(path("hf") + "/config.json");
  EXPECT_CONTAINS(json, "\"n_head\": 4,");
  EXPECT_CONTAINS(json, "\"pruned_heads\": {\"1\": [0, 2]},");

  const int64_t C = 8, D = 2;
  std::vector<int64_t> index;  // HF: the kept heads' columns
  for (int64_t h : {1, 3})
    for (int64_t d = 0; d < D; ++d) index.push_back(h * D + d);
  std::vector<int64_t> index_attn;
  for (int64_t part = 0; part < 3; ++part)
    for (int64_t i : index) index_attn.push_back(i + part * C);
  const io::SafetensorsFile st = io::read_safetensors(path("hf") + "/model.safetensors");
  auto exported = [&](const std::string& name) {
    for (const auto& [n, t] : st.tensors)
      if (n == name) return t;
    ADD_FAILURE() << name << " is not in the export";
    return Tensor();
  };
  auto original = [&](const std::string& name) {
    for (const auto& [n, t] : full)
      if (n == name) return t.to_vector();
    return std::vector<double>();
  };
  const std::vector<double> w = original("transformer.h.1.attn.c_attn.weight"),
                            b = original("transformer.h.1.attn.c_attn.bias"),
                            p = original("transformer.h.1.attn.c_proj.weight");
  std::vector<double> want_w, want_b, want_p;
  for (int64_t row = 0; row < C; ++row)
    for (int64_t col : index_attn) want_w.push_back(w[static_cast<size_t>(row * 3 * C + col)]);
  for (int64_t col : index_attn) want_b.push_back(b[static_cast<size_t>(col)]);
  for (int64_t row : index)
    for (int64_t col = 0; col < C; ++col) want_p.push_back(p[static_cast<size_t>(row * C + col)]);
  const Tensor ew = exported("transformer.h.1.attn.c_attn.weight"), eb = exported("transformer.h.1.attn.c_attn.bias"),
               ep = exported("transformer.h.1.attn.c_proj.weight");
  EXPECT_EQ(ew.shape(), (Shape{C, 3 * 2 * D}));
  EXPECT_EQ(eb.shape(), (Shape{3 * 2 * D}));
  EXPECT_EQ(ep.shape(), (Shape{2 * D, C}));
  EXPECT_EQ(ew.to_vector(), want_w);
  EXPECT_EQ(eb.to_vector(), want_b);
  EXPECT_EQ(ep.to_vector(), want_p);
  // The unpruned layer and c_proj.bias go out as they were.
  EXPECT_EQ(exported("transformer.h.0.attn.c_attn.weight").to_vector(), original("transformer.h.0.attn.c_attn.weight"));
  EXPECT_EQ(exported("transformer.h.1.attn.c_proj.bias").to_vector(), original("transformer.h.1.attn.c_proj.bias"));
  // An unpruned export has no pruned_heads.
  const std::string plain = write_gpt_checkpoint("plain.h5", gpt_yaml(), gpt_params());
  ASSERT_EQ(strand("export " + plain + " --out " + path("hf_plain")).exit_code, 0);
  EXPECT_EQ(slurp(path("hf_plain") + "/config.json").find("pruned_heads"), std::string::npos);
}

// Every option GPT-2 lacks is refused with one line naming the config key and its value.
TEST_F(InspectExportTest, ExportRefusesOptionsGpt2LacksNamingTheKey) {
  struct Case {
    std::string yaml_line, key, value;
  };
  const std::vector<Case> cases = {
      {"  pos: rope\n", "model.pos", "rope"},
      {"  norm: rmsnorm\n", "model.norm", "rmsnorm"},
      {"  activation: swiglu\n", "model.activation", "swiglu"},
      {"  n_kv_head: 1\n", "model.n_kv_head", "1"},
      {"  attention: {pattern: sliding, window: 4}\n", "model.attention.pattern", "sliding"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.key);
    const std::string ck = write_gpt_checkpoint("ck.h5", gpt_yaml(c.yaml_line), gpt_params());
    const CommandResult r = strand("export " + ck + " --out " + path("hf"));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_CONTAINS(r.err, c.key + " is " + c.value);
    EXPECT_CONTAINS(r.err, ck);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(fs::exists(path("hf") + "/model.safetensors"));
  }
}

TEST_F(InspectExportTest, ExportRefusesAParameterOfTheWrongShapeOrAnUnknownOne) {
  auto params = gpt_params();
  params[3].second = Tensor::zeros({7});  // transformer.h.0.ln_1.bias should be [8]
  std::string ck = write_gpt_checkpoint("shape.h5", gpt_yaml(), params);
  CommandResult r = strand("export " + ck + " --out " + path("hf"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_CONTAINS(r.err, "'transformer.h.0.ln_1.bias' has shape [7]");

  params = gpt_params();
  params.emplace_back("transformer.h.0.attn.extra", Tensor::zeros({2}));
  ck = write_gpt_checkpoint("extra.h5", gpt_yaml(), params);
  r = strand("export " + ck + " --out " + path("hf"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_CONTAINS(r.err, "'transformer.h.0.attn.extra'");
  EXPECT_FALSE(fs::exists(path("hf") + "/model.safetensors"));
}

}  // namespace
}  // namespace strand
