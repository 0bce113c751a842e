// The YAML config: defaults, errors that name file, line and key (with "did you mean"),
// number parsing, cross-key rules, --set overrides, the emit/parse round trip, the status of
// every key (implemented with a test, or refused) and the docs.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "framework/config/config.h"
#include "framework/config/key_status.h"

namespace strand::config {
namespace {

// The smallest valid config: bin data needs a train path.
const std::string kData = "data:\n  train: shards/train_*.bin\n";

// Runs f, expects a ConfigError, and returns its message.
template <class F>
std::string config_error(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected ConfigError, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected ConfigError, nothing was thrown";
  return "";
}
std::string parse_error(const std::string& yaml, const std::vector<std::string>& sets = {}) {
  return config_error([&] { parse_config(yaml, "cfg.yaml", sets); });
}

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

TEST(Config, ValidFileParsesWithDefaults) {
  const Config c = parse_config(
      "run:\n  name: tiny\n"
      "model:\n  n_layer: 2\n  n_head: 4\n  d_model: 64\n  pos: rope\n"
      "  attention:\n    pattern: sliding\n    window: 32\n"
      "train:\n  lr: 1e-3\n  betas: [0.8, 0.99]\n" + kData,
      "cfg.yaml");
  EXPECT_EQ(c.run.name, "tiny");
  EXPECT_EQ(c.model.n_layer, 2);
  EXPECT_EQ(c.model.n_head, 4);
  EXPECT_EQ(c.model.pos, PosEncoding::Rope);
  EXPECT_EQ(c.model.attention.pattern, AttentionPattern::Sliding);
  EXPECT_EQ(c.model.attention.window, 32);
  EXPECT_EQ(c.train.lr, 1e-3);
  EXPECT_EQ(c.train.betas[0], 0.8);
  EXPECT_EQ(c.train.betas[1], 0.99);
  EXPECT_EQ(c.data.train, "shards/train_*.bin");
  // Keys not written keep the defaults of config.h; derived ones are resolved.
  const Config d;
  EXPECT_EQ(c.run.seed, d.run.seed);
  EXPECT_EQ(c.model.vocab_size, d.model.vocab_size);
  EXPECT_EQ(c.train.steps, d.train.steps);
  ParallelConfig resolved = d.parallel;
  resolved.layout = SeqLayout::Zigzag;  // auto, for a causal gpt with ring attention
  EXPECT_EQ(c.parallel, resolved);
  MemoryConfig memory = d.memory;
  memory.offload_dir = c.run.dir + "/offload";  // resolved inside run.dir
  EXPECT_EQ(c.memory, memory);
  EXPECT_EQ(c.distill, d.distill);
  EXPECT_EQ(c.prune, d.prune);
  EXPECT_EQ(c.model.n_kv_head, 4) << "n_kv_head defaults to n_head";
  EXPECT_EQ(c.model.d_ff, 256) << "d_ff defaults to 4 * d_model";
  EXPECT_EQ(c.checkpoint.dir, "runs/strand/checkpoints");
  EXPECT_EQ(c.checkpoint.resume, "auto");
  EXPECT_TRUE(c.precision.dynamic_loss_scale());
  EXPECT_EQ(std::string(name_of(c.train.schedule)), "cosine");
}

TEST(Config, EmptySectionsAndSyntheticDataNeedNothingElse) {
  const Config c = parse_config("model:\ndata:\n  format: synthetic\n  task: assoc_recall\n");
  EXPECT_EQ(c.data.format, DataFormat::Synthetic);
  EXPECT_EQ(c.data.task, SyntheticTask::AssocRecall);
  EXPECT_EQ(c.model.n_layer, Config().model.n_layer);
}

TEST(Config, UnknownKeyNamesKeyLineAndClosestKey) {
  const std::string msg = parse_error("run:\n  name: x\nmodel:\n  n_layer: 2\n  n_heads: 4\n" + kData);
  EXPECT_CONTAINS(msg, "cfg.yaml:5: key 'model.n_heads': unknown key");
  EXPECT_CONTAINS(msg, "did you mean 'model.n_head'?");
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line";

  EXPECT_CONTAINS(parse_error("modle:\n  n_layer: 2\n"), "cfg.yaml:1: key 'modle': unknown key; did you mean 'model'?");
  EXPECT_CONTAINS(parse_error(kData + "model:\n  attention:\n    windw: 3\n"),
                  "cfg.yaml:5: key 'model.attention.windw': unknown key; did you mean 'model.attention.window'?");
  // A key written in the wrong section points to the section that has it.
  EXPECT_CONTAINS(parse_error(kData + "model:\n  lr: 0.1\n"), "key 'model.lr': unknown key; did you mean 'train.lr'?");
  EXPECT_CONTAINS(parse_error(kData + "train:\n  warmup: 5\n"), "key 'train.warmup': unknown key; did you mean 'train.warmup_steps'?");
  // Nothing close: the valid keys of the section are listed.
  const std::string far = parse_error(kData + "memory:\n  zzzzzzzzzzzz: 1\n");
  EXPECT_CONTAINS(far, "cfg.yaml:4: key 'memory.zzzzzzzzzzzz': unknown key; valid keys in 'memory': checkpointing, checkpoint_layers, offload");
}

TEST(Config, WrongTypesNameKeyAndLine) {
  EXPECT_CONTAINS(parse_error(kData + "model:\n  n_layer: abc\n"),
                  "cfg.yaml:4: key 'model.n_layer': expected an integer, got 'abc'");
  EXPECT_CONTAINS(parse_error(kData + "model:\n  n_layer: \"12\"\n"),
                  "cfg.yaml:4: key 'model.n_layer': expected an integer, got the quoted string '12'");
  EXPECT_CONTAINS(parse_error(kData + "model:\n  n_layer: 2.5\n"), "key 'model.n_layer': expected an integer, got '2.5'");
  EXPECT_CONTAINS(parse_error(kData + "model:\n  tie_embeddings: yes\n"),
                  "cfg.yaml:4: key 'model.tie_embeddings': expected true or false, got 'yes'");
  EXPECT_CONTAINS(parse_error(kData + "train:\n  betas: 0.9\n"),
                  "cfg.yaml:4: key 'train.betas': expected a list of two numbers, got '0.9'");
  EXPECT_CONTAINS(parse_error(kData + "train:\n  betas: [0.9, 0.9, 0.9]\n"), "key 'train.betas': expected a list of two numbers");
  EXPECT_CONTAINS(parse_error(kData + "run:\n  name: [a, b]\n"), "cfg.yaml:4: key 'run.name': expected a string, got a list");
  EXPECT_CONTAINS(parse_error(kData + "run:\n  name:\n"), "cfg.yaml:4: key 'run.name': expected a string, got nothing");
  EXPECT_CONTAINS(parse_error(kData + "model: 12\n"), "cfg.yaml:3: key 'model': expected a mapping of 'model' keys, got '12'");
  EXPECT_CONTAINS(parse_error(kData + "model:\n  pos: rop\n"),
                  "cfg.yaml:4: key 'model.pos': 'rop' is not one of learned|rope (did you mean 'rope'?)");
  EXPECT_CONTAINS(parse_error(kData + "precision:\n  loss_scale: dynamc\n"),
                  "cfg.yaml:4: key 'precision.loss_scale': expected dynamic or a number > 0, got 'dynamc'");
  EXPECT_CONTAINS(parse_error("- a\n- b\n"), "cfg.yaml:1: expected a mapping of sections");
}

TEST(Config, OutOfRangeValuesNameKeyLineAndRange) {
  EXPECT_CONTAINS(parse_error(kData + "model:\n  n_head: 0\n"), "cfg.yaml:4: key 'model.n_head': must be >= 1, got 0");
  EXPECT_CONTAINS(parse_error(kData + "model:\n  dropout: 1.5\n"), "cfg.yaml:4: key 'model.dropout': must be in [0, 1), got 1.5");
  EXPECT_CONTAINS(parse_error(kData + "train:\n  lr: 0\n"), "cfg.yaml:4: key 'train.lr': must be > 0, got 0");
  EXPECT_CONTAINS(parse_error(kData + "train:\n  steps: -5\n"), "key 'train.steps': must be >= 1, got -5");
  EXPECT_CONTAINS(parse_error(kData + "train:\n  betas: [0.9, 1.0]\n"), "key 'train.betas': must be in [0, 1), got 1.0");
  EXPECT_CONTAINS(parse_error(kData + "distill:\n  alpha: 2\n"), "key 'distill.alpha': must be in [0, 1], got 2");
  EXPECT_CONTAINS(parse_error(kData + "precision:\n  loss_scale: -4\n"), "key 'precision.loss_scale': expected dynamic or a number > 0");
  EXPECT_CONTAINS(parse_error(kData + "run:\n  seed: 99999999999999999999\n"), "key 'run.seed': integer '99999999999999999999' is out of range");
}

TEST(Config, NumbersAreParsedWithFullConsumption) {
  const Config c = parse_config(kData + "train:\n  lr: 3e-4\n  min_lr: 3E-5\n  steps: 1e3\n  weight_decay: .5\n"
                                "  grad_clip: 1024\n");
  EXPECT_EQ(c.train.lr, 3e-4);
  EXPECT_EQ(c.train.min_lr, 3e-5);
  EXPECT_EQ(c.train.steps, 1000);
  EXPECT_EQ(c.train.weight_decay, 0.5);
  EXPECT_EQ(c.train.grad_clip, 1024.0);
  EXPECT_CONTAINS(parse_error(kData + "train:\n  lr: 3e-4x\n"), "cfg.yaml:4: key 'train.lr': expected a number, got '3e-4x'");
  EXPECT_CONTAINS(parse_error(kData + "train:\n  lr: .inf\n"), "key 'train.lr': expected a number, got '.inf'");
  EXPECT_CONTAINS(parse_error(kData + "train:\n  lr: nan\n"), "key 'train.lr': expected a number, got 'nan'");
  EXPECT_CONTAINS(parse_error(kData + "train:\n  steps: 10x\n"), "key 'train.steps': expected an integer, got '10x'");
}

TEST(Config, CrossKeyRulesNameTheKey) {
  EXPECT_CONTAINS(parse_error(kData + "model:\n  d_model: 100\n  n_head: 12\n"),
                  "cfg.yaml:5: key 'model.n_head': d_model 100 is not divisible by n_head 12");
  EXPECT_CONTAINS(parse_error(kData + "model:\n  n_head: 12\n  n_kv_head: 5\n"),
                  "cfg.yaml:5: key 'model.n_kv_head': n_head 12 is not divisible by n_kv_head 5");
  EXPECT_CONTAINS(parse_error(kData + "model:\n  d_model: 36\n  n_head: 12\n  pos: rope\n"),
                  "cfg.yaml:6: key 'model.pos': rope needs an even head size");
  EXPECT_CONTAINS(parse_error(kData + "  seq_len: 4096\n"), "cfg.yaml:3: key 'data.seq_len': 4096 exceeds model.max_seq_len 1024");
  EXPECT_CONTAINS(parse_error(kData + "train:\n  steps: 10\n  warmup_steps: 20\n"),
                  "cfg.yaml:5: key 'train.warmup_steps': warmup_steps 20 exceeds steps 10");
  EXPECT_CONTAINS(parse_error(kData + "train:\n  lr: 1e-4\n  min_lr: 1e-3\n"), "cfg.yaml:5: key 'train.min_lr': min_lr 0.001 exceeds lr 0.0001");
  EXPECT_CONTAINS(parse_error(kData + "parallel:\n  sp: 8\n  sp_mode: ulysses\n"),
                  "cfg.yaml:4: key 'parallel.sp': ulysses splits heads over sp ranks: n_head 12 is not divisible by sp 8");
  EXPECT_CONTAINS(parse_error(kData + "parallel:\n  sp: 6\n  sp_mode: hybrid\n  ulysses_degree: 4\n"),
                  "cfg.yaml:6: key 'parallel.ulysses_degree': sp 6 is not divisible by ulysses_degree 4");
  EXPECT_CONTAINS(parse_error(kData + "parallel:\n  ulysses_degree: 2\n"), "key 'parallel.ulysses_degree': applies only to sp_mode hybrid");
  EXPECT_CONTAINS(parse_error("data:\n  format: hdf5\n"), "cfg.yaml: key 'data.train': required when data.format is hdf5");
  EXPECT_CONTAINS(parse_error(kData + "checkpoint:\n  resume: \"\"\n"), "key 'checkpoint.resume': expected auto, none or a checkpoint path");
  const Config ok = parse_config(kData + "model:\n  n_head: 12\n  n_kv_head: 6\nparallel:\n  sp: 4\n  sp_mode: hybrid\n  ulysses_degree: 2\n");
  EXPECT_EQ(ok.model.n_kv_head, 6);
  EXPECT_EQ(ok.parallel.sp_mode, SpMode::Hybrid);
}

TEST(Config, SequenceParallelRulesNameTheKey) {
  // KV heads over an all-to-all group: split (a multiple) or replicated (a divisor), nothing else.
  EXPECT_CONTAINS(parse_error(kData + "model:\n  n_head: 12\n  n_kv_head: 3\nparallel:\n  sp: 4\n  sp_mode: ulysses\n"),
                  "cfg.yaml:5: key 'model.n_kv_head': n_kv_head 3 must divide sp 4 or be a multiple of it");
  EXPECT_CONTAINS(parse_error(kData + "model:\n  n_head: 12\n  n_kv_head: 3\nparallel:\n  sp: 4\n  sp_mode: hybrid\n  ulysses_degree: 2\n"),
                  "cfg.yaml:5: key 'model.n_kv_head': n_kv_head 3 must divide ulysses_degree 2 or be a multiple of it");
  for (const char* kv : {"1", "2", "4", "8"}) {
    EXPECT_NO_THROW(parse_config(kData + "model:\n  n_head: 8\n  n_kv_head: " + kv + "\nparallel:\n  sp: 4\n  sp_mode: ulysses\n"))
        << "n_kv_head " << kv;
  }
  // Architectures and patterns that cannot run on a sequence shard.
  EXPECT_NO_THROW(parse_config(kData + "model:\n  arch: encoder\n  attention: {pattern: full}\nparallel:\n  sp: 2\n"));
  EXPECT_CONTAINS(parse_error(kData + "model:\n  arch: encdec\n", {"parallel.sp=2"}),
                  "cfg.yaml:4: key 'model.arch': model.arch encdec cannot run sequence-parallel");
  EXPECT_CONTAINS(parse_error(kData + "model:\n  attention: {pattern: linear}\nparallel:\n  sp: 2\n"),
                  "key 'model.attention.pattern': linear attention cannot run sequence-parallel (parallel.sp 2)");
  EXPECT_NO_THROW(parse_config(kData + "model:\n  arch: encoder\n  attention: {pattern: linear}\n"));
}

TEST(Config, AutoLayoutIsZigzagForCausalRingsOnly) {
  const auto layout_of = [](const std::string& extra, const std::vector<std::string>& sets = {}) {
    return parse_config(kData + extra, "cfg.yaml", sets).parallel.layout;
  };
  EXPECT_EQ(layout_of("parallel:\n  sp: 2\n"), SeqLayout::Zigzag);
  EXPECT_EQ(layout_of("parallel:\n  sp: 4\n  sp_mode: hybrid\n  ulysses_degree: 2\n"), SeqLayout::Zigzag);
  EXPECT_EQ(layout_of("parallel:\n  sp: 4\n  sp_mode: ulysses\n"), SeqLayout::Contiguous);
  EXPECT_EQ(layout_of("model:\n  arch: encoder\n  attention: {pattern: full}\n"), SeqLayout::Contiguous);
  EXPECT_EQ(layout_of("parallel:\n  sp: 4\n  sp_mode: ulysses\n  layout: zigzag\n"), SeqLayout::Zigzag)
      << "an explicit layout is kept";
  EXPECT_EQ(layout_of("parallel:\n  sp: 2\n", {"parallel.layout=contiguous"}), SeqLayout::Contiguous);
  // resolved_layout on a config built in code, where the default is still auto.
  Config c;
  EXPECT_EQ(c.parallel.layout, SeqLayout::Auto);
  EXPECT_EQ(resolved_layout(c), SeqLayout::Zigzag);
  c.parallel.sp_mode = SpMode::Ulysses;
  EXPECT_EQ(resolved_layout(c), SeqLayout::Contiguous);
  // The emitted config holds the resolved value, so a checkpoint records what ran.
  EXPECT_NE(to_yaml(parse_config(kData)).find("layout: zigzag"), std::string::npos);
}

TEST(Config, RepeatedKeysAndBadYamlNameTheLine) {
  EXPECT_CONTAINS(parse_error(kData + "train:\n  lr: 1\n  lr: 2\n"), "cfg.yaml:5: key 'train.lr': given twice (first at line 4)");
  EXPECT_CONTAINS(parse_error("train:\n  betas: [0.9,\n"), "cfg.yaml:");
  EXPECT_CONTAINS(parse_error("train:\n  betas: [0.9,\n"), "not valid YAML");
  // A second document after `---` would be dropped silently: refused, naming its line.
  EXPECT_CONTAINS(parse_error(kData + "---\ntrain:\n  lr: 1\n"),
                  "cfg.yaml:4: a second YAML document; a config is one document");
  EXPECT_EQ(parse_config("---\n" + kData, "cfg.yaml").data.train, "shards/train_*.bin")
      << "one document with its start marker";
}

TEST(Config, SetOverridesAnyKeyBeforeChecks) {
  const Config c = parse_config(kData + "model:\n  attention:\n    window: 64\n", "cfg.yaml",
                                {"model.attention.window=128", "train.lr=1e-3", "train.betas=[0.8, 0.9]",
                                 "run.name=with=equals", "checkpoint.keep=5", "model.pos=rope",
                                 "checkpoint.resume=/tmp/x/step_00000010.h5"});
  EXPECT_EQ(c.model.attention.window, 128);
  EXPECT_EQ(c.train.lr, 1e-3);
  EXPECT_EQ(c.train.betas[0], 0.8);
  EXPECT_EQ(c.train.betas[1], 0.9);
  EXPECT_EQ(c.run.name, "with=equals");
  EXPECT_EQ(c.checkpoint.keep, 5) << "a section absent from the file is created";
  EXPECT_EQ(c.model.pos, PosEncoding::Rope);
  EXPECT_EQ(c.checkpoint.resume, "/tmp/x/step_00000010.h5");
  // The last --set of a key wins.
  EXPECT_EQ(parse_config(kData, "c", {"train.steps=5", "train.steps=7"}).train.steps, 7);
}

TEST(Config, SetErrorsNameTheOverride) {
  EXPECT_CONTAINS(parse_error(kData, {"model.n_heads=3"}),
                  "--set model.n_heads=3: key 'model.n_heads': unknown key; did you mean 'model.n_head'?");
  EXPECT_CONTAINS(parse_error(kData, {"train.lr=abc"}), "--set train.lr=abc: key 'train.lr': expected a number, got 'abc'");
  EXPECT_CONTAINS(parse_error(kData, {"train.lr=0"}), "--set train.lr=0: key 'train.lr': must be > 0, got 0");
  EXPECT_CONTAINS(parse_error(kData, {"train.steps=10", "train.warmup_steps=50"}),
                  "--set train.warmup_steps=50: key 'train.warmup_steps': warmup_steps 50 exceeds steps 10");
  EXPECT_CONTAINS(parse_error(kData, {"model=3"}), "--set model=3: key 'model': is a section");
  EXPECT_CONTAINS(parse_error(kData, {"train.lr"}), "--set train.lr: expected KEY=VALUE");
  EXPECT_CONTAINS(parse_error(kData, {"train.betas=[0.9"}), "--set train.betas=[0.9: key 'train.betas': value is not valid YAML");
  EXPECT_CONTAINS(parse_error(kData + "model: 3\n", {"model.n_head=4"}), "--set model.n_head=4: key 'model.n_head': its section 'model' is '3'");
}

TEST(Config, EmittedYamlParsesBackToTheSameConfig) {
  const Config c = parse_config(
      "run:\n  name: \"odd: name # with 'quotes' and \\\"more\\\"\"\n  dir: \"\"\n  seed: 0\n"
      "model:\n  arch: encoder\n  n_head: 8\n  n_kv_head: 2\n  d_model: 512\n  norm: rmsnorm\n"
      "  activation: swiglu\n  tie_embeddings: false\n  dropout: 0.1\n"
      "  attention: {pattern: bigbird, block_size: 32, random_blocks: 3, global_tokens: 2}\n"
      "data:\n  format: hdf5\n  train: \"null\"\n  val: \"123\"\n  seq_len: 1000\n"
      "parallel:\n  dp: 2\n  sp: 1\n  sp_mode: ulysses\n  layout: contiguous\n  backend: nccl\n"
      "train:\n  lr: 0.1\n  min_lr: 1e-7\n  schedule: linear\n  betas: [0.9, 0.999]\n  grad_clip: 0\n"
      "precision:\n  compute: fp32\n  loss_scale: dynamic\n"
      "memory:\n  checkpointing: selective\n  checkpoint_layers: 4\n  offload: none\n"
      "checkpoint:\n  dir: ck\u00e9\n  every: 50\n  keep: 0\n  resume: none\n"
      "distill:\n  temperature: 2.0\n",
      "cfg.yaml");
  EXPECT_EQ(c.data.train, "null") << "a quoted string stays a string";
  EXPECT_EQ(c.run.dir, "");
  const std::string yaml = to_yaml(c);
  const Config back = parse_config(yaml, "emitted");
  EXPECT_EQ(back, c) << yaml;
  EXPECT_EQ(to_yaml(back), yaml);
  // Every key is written, so the text alone reproduces the run.
  for (const auto& key : config_keys()) {
    const std::string leaf = key.substr(key.rfind('.') + 1) + ":";
    EXPECT_CONTAINS(yaml, leaf);
  }
  // Values that are not the shortest decimal survive too.
  Config d = c;
  d.train.lr = 0.1 + 0.2;
  d.model.dropout = 1.0 / 3.0;
  d.train.min_lr = 1.25e-9;
  d.train.weight_decay = 6.02e23;
  EXPECT_EQ(parse_config(to_yaml(d)), d);
}

TEST(Config, LoadConfigReadsAFileAndNamesMissingOnes) {
  const auto path = std::filesystem::temp_directory_path() / ("strand_config_test_" + std::to_string(::getpid()) + ".yaml");
  {
    std::ofstream out(path);
    out << kData << "train:\n  steps: 20\n  bogus: 1\n";
  }
  EXPECT_CONTAINS(config_error([&] { load_config(path.string()); }), path.string() + ":5: key 'train.bogus'");
  {
    std::ofstream out(path);
    out << kData << "train:\n  steps: 20\n";
  }
  const Config c = load_config(path.string(), {"train.steps=30"});
  EXPECT_EQ(c.data.train, "shards/train_*.bin");
  EXPECT_EQ(c.train.steps, 30);
  std::filesystem::remove(path);
  EXPECT_CONTAINS(config_error([&] { load_config(path.string()); }), path.string() + ": cannot open the config file");
  const std::string dir = path.parent_path().string();
  EXPECT_CONTAINS(config_error([&] { load_config(dir); }), dir + ": is a directory, not a config file");
}

TEST(Config, EnumNamesAndKeyList) {
  EXPECT_EQ(std::string(name_of(AttentionPattern::BigBird)), "bigbird");
  EXPECT_EQ(std::string(name_of(SyntheticTask::AssocRecall)), "assoc_recall");
  EXPECT_EQ(choices<AttentionPattern>().size(), 7u);
  const auto keys = config_keys();
  EXPECT_EQ(keys.front(), "run.name");
  EXPECT_NE(std::find(keys.begin(), keys.end(), "model.attention.random_blocks"), keys.end());
  EXPECT_NE(std::find(keys.begin(), keys.end(), "precision.loss_scale"), keys.end());
}

// distill.attention_rows: 0 (every row) to data.seq_len query rows per sequence.
TEST(Config, DistillAttentionRowsIsBoundedByTheSequence) {
  const auto keys = config_keys();
  EXPECT_NE(std::find(keys.begin(), keys.end(), "distill.attention_rows"), keys.end());
  const int64_t seq_len = parse_config(kData).data.seq_len;
  EXPECT_EQ(parse_config(kData).distill.attention_rows, 0);
  EXPECT_EQ(parse_config(kData, "cfg.yaml", {"distill.attention_rows=" + std::to_string(seq_len)}).distill.attention_rows,
            seq_len);
  EXPECT_CONTAINS(parse_error(kData, {"distill.attention_rows=-1"}), "key 'distill.attention_rows': ");
  const std::string over = parse_error(kData, {"distill.attention_rows=" + std::to_string(seq_len + 1)});
  EXPECT_CONTAINS(over, "key 'distill.attention_rows': ");
  EXPECT_CONTAINS(over, "exceed data.seq_len " + std::to_string(seq_len));
}

// docs/config.md is the user's reference: every key must be in one of its tables.
TEST(Config, DocsListEveryKey) {
  const std::filesystem::path root = STRAND_SOURCE_DIR;
  std::ifstream in(root / "docs" / "config.md");
  ASSERT_TRUE(in) << "cannot open " << (root / "docs" / "config.md");
  std::stringstream text;
  text << in.rdbuf();
  for (const auto& key : config_keys()) EXPECT_CONTAINS(text.str(), "`" + key + "`");
}

// The rules of what each architecture can honour live here, not in build_model: each names
// the key to change.
TEST(Config, ArchitectureRulesNameTheKey) {
  const std::string tiny =
      "run: {seed: 5}\n"
      "model: {vocab_size: 11, n_layer: 2, n_head: 2, d_model: 8, max_seq_len: 16,\n"
      "        attention: {window: 3, block_size: 4}}\n"
      "data: {format: synthetic, seq_len: 16}\n";
  const auto error_names = [&](const std::vector<std::string>& sets, const std::string& key, const std::string& label) {
    const std::string msg = parse_error(tiny, sets);
    EXPECT_NE(msg.find("key '" + key + "'"), std::string::npos) << label << ": " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << label << ": one line";
  };
  error_names({"model.attention.pattern=full"}, "model.attention.pattern", "gpt full");
  error_names({"model.arch=encdec", "model.attention.pattern=full"}, "model.attention.pattern", "encdec full");
  error_names({"model.arch=encoder", "model.attention.pattern=causal"}, "model.attention.pattern", "encoder causal");
  error_names({"model.attention.pattern=longformer", "model.attention.global_tokens=17"},
              "model.attention.global_tokens", "global tokens past seq_len");
  error_names({"model.arch=encdec", "model.attention.pattern=longformer", "model.attention.global_tokens=9"},
              "model.attention.global_tokens", "encdec global tokens past half the row");
  error_names({"model.arch=encdec", "data.seq_len=1"}, "data.seq_len", "encdec row of one token");
  error_names({"data.shuffle=true"}, "data.shuffle", "shuffle of synthetic rows");
  error_names({"model.n_head=3"}, "model.n_head", "heads not dividing d_model");
  error_names({"model.n_head=2", "model.n_kv_head=3"}, "model.n_kv_head", "kv heads not dividing heads");
  error_names({"model.n_head=8", "model.n_kv_head=8", "model.pos=rope"}, "model.pos", "rope with odd head size");
  error_names({"model.arch=encoder", "model.attention.pattern=full", "model.vocab_size=1"}, "model.vocab_size",
              "encoder without room for a mask token");
  EXPECT_CONTAINS(parse_error(tiny, {"model.attention.pattern=full"}),
                  "--set model.attention.pattern=full: key 'model.attention.pattern': full lets every position see "
                  "later tokens, which arch gpt (a causal decoder) must not");
  // What each architecture supports parses.
  for (const char* arch : {"gpt", "encoder", "encdec"})
    for (const char* pattern : {"full", "causal", "sliding", "dilated", "longformer", "bigbird", "linear"}) {
      const bool decoder = std::string(arch) != "encoder";
      if (std::string(pattern) == (decoder ? "full" : "causal")) continue;
      EXPECT_NO_THROW(parse_config(tiny, "cfg.yaml",
                                   {std::string("model.arch=") + arch, std::string("model.attention.pattern=") + pattern,
                                    "model.attention.global_tokens=1", "model.attention.random_blocks=1"}))
          << arch << " " << pattern;
    }
}

// Keys whose feature is not built are refused at any other value than the default, with one line
// naming the key (the walk over the status table, EveryKeyIsImplementedWithATestOrRefused, checks
// each refused key; none is refused today). The keys whose features were built last accept their
// values; defaults written out parse, and so does every config to_yaml writes.
TEST(Config, KeysOfBuiltFeaturesParseAndStoredConfigsRoundTrip) {
  for (const KeyStatus& status : key_statuses()) {
    if (status.state != KeyState::Refused) continue;
    const std::string msg = parse_error(kData, {std::string(status.key) + "=1"});
    EXPECT_CONTAINS(msg, "key '" + std::string(status.key) + "': ");
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  EXPECT_NO_THROW(parse_config(kData + "prune: {heads_fraction: 0.3, iterations: 3, method: random, seed: 2}\n"));
  EXPECT_NO_THROW(parse_config(kData + "distill: {attention_weight: 1.5}\n"));  // attention transfer is built
  EXPECT_TRUE(parse_config(kData + "memory: {offload: disk, offload_gradients: true}\n").memory.offload_gradients);
  EXPECT_EQ(parse_config(kData + "parallel: {grad_dtype: bf16}\n").parallel.grad_dtype, GradDtype::Bf16);
  // precision.* is built; a fixed loss scale is for fp16 only.
  EXPECT_CONTAINS(parse_error(kData + "precision: {compute: bf16, loss_scale: 1024}\n"),
                  "key 'precision.loss_scale': a fixed scale applies to precision.compute fp16, compute is bf16");
  // Defaults written out are accepted; a stored config (to_yaml writes every key) parses back.
  const Config c = parse_config(kData + "precision: {compute: fp32, loss_scale: dynamic}\n"
                                        "memory: {checkpointing: none, offload: none}\n"
                                        "distill: {teacher: \"\", temperature: 2.0, alpha: 0.5}\n"
                                        "prune: {heads_fraction: 0.25, iterations: 1}\n");
  EXPECT_EQ(c, parse_config(kData));
  EXPECT_EQ(parse_config(to_yaml(c), "stored"), c);
  Config odd = c;
  odd.parallel.grad_dtype = GradDtype::Bf16;
  EXPECT_CONTAINS(to_yaml(odd), "grad_dtype: bf16");
  EXPECT_EQ(parse_config(to_yaml(odd), "stored"), odd);
}

// The names of every TEST, TEST_F and TEST_P under tests/ ("Suite.Name").
std::set<std::string> test_names_in_sources() {
  const std::filesystem::path tests_root = std::filesystem::path(STRAND_SOURCE_DIR) / "tests";
  const std::regex test_macro(R"(\bTEST(?:_F|_P)?\(\s*(\w+)\s*,\s*(\w+)\s*\))");
  std::set<std::string> names;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(tests_root)) {
    const auto ext = entry.path().extension();
    if (!entry.is_regular_file() || (ext != ".cpp" && ext != ".h")) continue;
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    const std::string src = text.str();
    for (std::sregex_iterator it(src.begin(), src.end(), test_macro), end; it != end; ++it)
      names.insert((*it)[1].str() + "." + (*it)[2].str());
  }
  return names;
}

// Every key of the table has a status: implemented, naming a test of its effect that exists,
// or refused, so that no value but its default gets through.
TEST(Config, EveryKeyIsImplementedWithATestOrRefused) {
  const std::vector<std::string> keys = config_keys();
  const auto statuses = key_statuses();
  ASSERT_EQ(statuses.size(), keys.size()) << "one status per key";
  const std::set<std::string> tests = test_names_in_sources();
  ASSERT_GT(tests.size(), 100u) << "the test sources were not found beside this file";
  // Values that a key of each kind may take; a refused key must turn every one of them into
  // a "not yet available" error or its default.
  const std::vector<std::string> candidates = {"1", "2", "0.75", "3.5", "100", "true", "full", "selective", "host",
                                               "disk", "bf16", "fp16", "t.h5", "65536"};
  const Config defaults = parse_config(kData);
  for (size_t i = 0; i < keys.size(); ++i) {
    const KeyStatus& status = statuses[i];
    ASSERT_EQ(keys[i], status.key) << "the status table follows the order of the key table";
    EXPECT_EQ(&key_status(keys[i]), &status);
    if (status.state == KeyState::Implemented) {
      EXPECT_TRUE(tests.count(status.note)) << keys[i] << ": its test '" << status.note << "' is not in tests/";
      continue;
    }
    bool refused_once = false;
    for (const std::string& value : candidates) {
      try {
        const Config c = parse_config(kData, "cfg.yaml", {keys[i] + "=" + value});
        EXPECT_EQ(value_of(c, keys[i]), value_of(defaults, keys[i])) << keys[i] << "=" << value << " got through";
      } catch (const ConfigError& e) {
        refused_once = refused_once || std::string(e.what()).find("is not yet available") != std::string::npos;
      }
    }
    EXPECT_TRUE(refused_once) << keys[i] << ": no value was refused as not yet available";
  }
  EXPECT_THROW(key_status("model.heads"), ConfigError);
}

// docs/config.md marks every refused key "not yet available" on its row.
TEST(Config, DocsMarkEveryRefusedKey) {
  const std::filesystem::path root = STRAND_SOURCE_DIR;
  std::ifstream in(root / "docs" / "config.md");
  ASSERT_TRUE(in);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  for (const KeyStatus& status : key_statuses()) {
    const std::string cell = "| `" + std::string(status.key) + "` |";
    const auto row = std::find_if(lines.begin(), lines.end(), [&](const std::string& l) { return l.rfind(cell, 0) == 0; });
    ASSERT_NE(row, lines.end()) << status.key << " has no row in docs/config.md";
    const bool marked = row->find("not yet available") != std::string::npos;
    EXPECT_EQ(marked, status.state == KeyState::Refused) << *row;
  }
}

// value_of: what `strand config get` prints, one key as the emitter writes it.
TEST(Config, ValueOfWritesOneKeyAsTheEmitter) {
  const Config c = parse_config(kData + "train: {lr: 3e-4, betas: [0.9, 0.999]}\nrun: {dir: out/x}\n", "cfg.yaml",
                                {"parallel.sp=2"});
  EXPECT_EQ(value_of(c, "parallel.sp"), "2");
  EXPECT_EQ(value_of(c, "parallel.layout"), "zigzag") << "resolved";
  EXPECT_EQ(value_of(c, "train.lr"), "0.0003");
  EXPECT_EQ(value_of(c, "train.betas"), "[0.9, 0.999]");
  EXPECT_EQ(value_of(c, "model.tie_embeddings"), "true");
  EXPECT_EQ(value_of(c, "model.d_ff"), "3072") << "derived default";
  EXPECT_EQ(value_of(c, "precision.loss_scale"), "dynamic");
  EXPECT_EQ(value_of(c, "run.dir"), "out/x") << "strings bare";
  EXPECT_EQ(value_of(c, "checkpoint.dir"), "out/x/checkpoints");
  // Every key: the emitter's text, or for a string the emitter's quoted text.
  const std::string yaml = to_yaml(c);
  for (const auto& key : config_keys()) {
    const std::string v = value_of(c, key);
    const std::string leaf = key.substr(key.rfind('.') + 1);
    const bool plain = yaml.find(leaf + ": " + v + "\n") != std::string::npos;
    const bool quoted = yaml.find(leaf + ": \"" + v + "\"\n") != std::string::npos;
    EXPECT_TRUE(plain || quoted) << key << " = " << v;
  }
  EXPECT_CONTAINS(config_error([&] { value_of(c, "parallel.dpp"); }), "key 'parallel.dpp': unknown key; did you mean 'parallel.dp'?");
  EXPECT_CONTAINS(config_error([&] { value_of(c, "parallel"); }), "key 'parallel': is a section");
}

}  // namespace
}  // namespace strand::config
