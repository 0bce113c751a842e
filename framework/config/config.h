// The run configuration: a typed tree of every YAML key (architecture.md §5), its parser with
// `--set` overrides, and its YAML emitter. docs/config.md lists every key with its default.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "framework/core/error.h"
#include "framework/optim/schedule.h"

namespace strand::config {

// A bad config: one line "FILE:LINE: key 'model.n_head': ..." (or "--set k=v: key ...").
struct ConfigError : Error { using Error::Error; };

// Enumerated keys. The YAML spelling of each value is name_of(value); choices<E>() lists them
// in declaration order.
enum class Arch { Gpt, Encoder, EncDec };
enum class PosEncoding { Learned, Rope };
enum class NormKind { LayerNorm, RMSNorm };
enum class Activation { Gelu, SwiGLU };
enum class AttentionPattern { Full, Causal, Sliding, Dilated, Longformer, BigBird, Linear };
enum class DataFormat { Bin, Hdf5, Synthetic };
enum class SyntheticTask { Passkey, AssocRecall, Copy };
enum class SpMode { Ring, Ulysses, Hybrid };
enum class SeqLayout { Auto, Contiguous, Zigzag };
enum class CommBackend { Mpi, Nccl };
using LrScheduleKind = optim::DecayKind;  // the schedule's own type: no translation on the way
enum class ComputePrecision { Fp32, Bf16, Fp16 };
enum class Checkpointing { None, Full, Selective };
enum class Offload { None, Host, Disk };
enum class GradDtype { Fp32, Bf16 };
enum class PruneMethod { Importance, Random };
enum class RunDevice { Cpu, Cuda };

template <class E> std::span<const char* const> choices();
template <> std::span<const char* const> choices<Arch>();
template <> std::span<const char* const> choices<PosEncoding>();
template <> std::span<const char* const> choices<NormKind>();
template <> std::span<const char* const> choices<Activation>();
template <> std::span<const char* const> choices<AttentionPattern>();
template <> std::span<const char* const> choices<DataFormat>();
template <> std::span<const char* const> choices<SyntheticTask>();
template <> std::span<const char* const> choices<SpMode>();
template <> std::span<const char* const> choices<SeqLayout>();
template <> std::span<const char* const> choices<CommBackend>();
template <> std::span<const char* const> choices<LrScheduleKind>();
template <> std::span<const char* const> choices<ComputePrecision>();
template <> std::span<const char* const> choices<Checkpointing>();
template <> std::span<const char* const> choices<Offload>();
template <> std::span<const char* const> choices<GradDtype>();
template <> std::span<const char* const> choices<PruneMethod>();
template <> std::span<const char* const> choices<RunDevice>();

// "rope", "zigzag", ...: the YAML spelling.
template <class E>
  requires std::is_enum_v<E>
const char* name_of(E value) {
  return choices<E>()[static_cast<size_t>(value)];
}

struct RunConfig {
  std::string name = "strand";
  std::string dir = "runs/strand";  // metrics, logs; checkpoints go to checkpoint.dir
  int64_t seed = 1337;              // >= 0; every RNG stream derives from it
  RunDevice device = RunDevice::Cpu;  // where each rank trains (train/placement.h)
  bool operator==(const RunConfig&) const = default;
};

struct AttentionConfig {
  AttentionPattern pattern = AttentionPattern::Causal;
  int64_t window = 256;        // >= 1: sliding / dilated / longformer local window (tokens)
  int64_t dilation = 1;        // >= 1: stride between attended keys for `dilated`
  int64_t global_tokens = 0;   // >= 0: longformer / bigbird tokens that see and are seen by all
  int64_t block_size = 64;     // >= 1: block size of the bigbird layout (its random blocks)
  int64_t random_blocks = 0;   // >= 0: bigbird random key blocks per query block
  bool operator==(const AttentionConfig&) const = default;
};

struct ModelConfig {
  Arch arch = Arch::Gpt;
  int64_t vocab_size = 50257;
  int64_t n_layer = 12;
  int64_t n_head = 12;
  int64_t n_kv_head = 0;       // 0: resolved to n_head when parsed (MHA); fewer: GQA / MQA
  int64_t d_model = 768;
  int64_t d_ff = 0;            // 0: resolved to 4 * d_model when parsed
  int64_t max_seq_len = 1024;  // rows of the learned position table
  PosEncoding pos = PosEncoding::Learned;
  NormKind norm = NormKind::LayerNorm;
  Activation activation = Activation::Gelu;
  bool tie_embeddings = true;  // lm_head shares transformer.wte.weight
  double dropout = 0.0;        // [0, 1)
  AttentionConfig attention;
  // A pruned model's kept heads per layer (original head indices, ascending): query heads and
  // key/value heads. Empty: every layer has n_head and n_kv_head. Not a YAML key: a pruned
  // checkpoint records them in its /pruning group, and whatever loads one sets them from it
  // (models/pruned_heads.h) before building the model.
  std::vector<std::vector<int64_t>> kept_heads, kept_kv_heads;
  bool operator==(const ModelConfig&) const = default;
};

struct DataConfig {
  DataFormat format = DataFormat::Bin;
  std::string train;           // shard path or glob; required unless format is synthetic
  std::string val;             // optional
  std::string tokenizer = "auto";  // auto | byte | PATH of a SentencePiece .model (generation, samples)
  SyntheticTask task = SyntheticTask::Passkey;  // format: synthetic only
  int64_t seq_len = 1024;      // global sequence length (split over parallel.sp ranks)
  int64_t batch_size = 8;      // rows per data-parallel replica per micro-step
  bool shuffle = false;        // bin/hdf5: a seeded permutation of the training rows per epoch
  bool operator==(const DataConfig&) const = default;
};

struct ParallelConfig {
  int64_t dp = 1;
  int64_t sp = 1;
  SpMode sp_mode = SpMode::Ring;
  int64_t ulysses_degree = 1;  // sp_mode hybrid: all-to-all group size inside the ring
  SeqLayout layout = SeqLayout::Auto;  // resolved when parsed (resolved_layout)
  CommBackend backend = CommBackend::Mpi;
  int64_t bucket_mb = 25;      // gradient all-reduce bucket size (MiB), parallel/grad_sync.h
  double timeout_s = 300;      // a rank without progress this long ends the job (0: never), parallel/watchdog.h
  GradDtype grad_dtype = GradDtype::Fp32;  // dtype of the gradient all-reduce
  bool operator==(const ParallelConfig&) const = default;
};

struct TrainConfig {
  int64_t steps = 1000;
  double lr = 3e-4;
  double min_lr = 0.0;         // <= lr; the schedule decays to it
  int64_t warmup_steps = 0;    // <= steps
  LrScheduleKind schedule = LrScheduleKind::Cosine;
  double weight_decay = 0.1;
  std::array<double, 2> betas = {0.9, 0.95};
  double grad_clip = 1.0;      // global L2 norm; 0 turns clipping off
  int64_t grad_accum = 1;
  int64_t max_skipped_steps = 10;  // >= 1: this many optimizer steps skipped in a row (non-finite
                                   // gradients) stop the run with an error
  int64_t log_every = 10;
  int64_t sample_every = 0;    // 0: no text samples during training (framework/train/sample.h)
  int64_t eval_every = 0;      // 0: no evaluation during training
  int64_t eval_batches = 10;
  bool operator==(const TrainConfig&) const = default;
};

struct PrecisionConfig {
  ComputePrecision compute = ComputePrecision::Fp32;
  double loss_scale = 0.0;     // YAML `dynamic` is 0; a number > 0 is a fixed scale
  bool dynamic_loss_scale() const { return loss_scale == 0.0; }
  int64_t scale_window = 1000;  // dynamic scaling doubles the scale after this many clean steps
  bool operator==(const PrecisionConfig&) const = default;
};

struct MemoryConfig {
  Checkpointing checkpointing = Checkpointing::None;
  int64_t checkpoint_layers = 0;  // the first k blocks of each stack are checkpointed; 0: all
  Offload offload = Offload::None;
  int64_t loss_chunk = 0;  // rows per chunk of the LM head + loss; 0: auto (see docs/memory.md)
  int64_t offload_min_bytes = int64_t{1} << 20;  // saved tensors at least this large are offloaded
  std::string offload_dir;  // "": resolved to RUN_DIR/offload when parsed
  bool offload_gradients = false;  // with offload disk: gradients go to the spill file when final
  bool operator==(const MemoryConfig&) const = default;
};

struct CheckpointConfig {
  std::string dir;             // "": resolved to RUN_DIR/checkpoints when parsed
  int64_t every = 0;           // steps between checkpoints; 0: only at the end
  int64_t keep = 3;            // newest files kept; 0 keeps all
  std::string resume = "auto"; // auto | none | PATH of a checkpoint file
  bool operator==(const CheckpointConfig&) const = default;
};

struct DistillConfig {
  std::string teacher;         // teacher checkpoint (.h5); required by `strand distill`
  double temperature = 2.0;    // > 0
  double alpha = 0.5;          // [0, 1]: weight of the hard-label CE; 1 - alpha weighs the soft (teacher) loss
  double attention_weight = 0.0;
  // Student:teacher layer pairs of the attention term, "s:t, s:t" (0-based); empty: the last
  // layers of both (MiniLM).
  std::string attention_layers;
  // Query rows per sequence the attention term scores, drawn afresh each step (0: every row).
  int64_t attention_rows = 0;
  double hidden_weight = 0.0;
  // Student:teacher layer pairs of the hidden-state term, "s:t, s:t" (0-based); empty: the
  // uniform map.
  std::string hidden_layers;
  bool init_from_teacher = false;  // student block i <- teacher block i * k (DistilBERT)
  bool operator==(const DistillConfig&) const = default;
};

struct PruneConfig {
  double heads_fraction = 0.25;  // [0, 1): share of heads removed in total
  int64_t iterations = 1;
  int64_t importance_batches = 8;
  int64_t finetune_steps = 100;
  PruneMethod method = PruneMethod::Importance;  // random: the comparison baseline
  int64_t seed = 0;              // >= 0: the draws of method random
  bool operator==(const PruneConfig&) const = default;
};

struct Config {
  RunConfig run;
  ModelConfig model;
  DataConfig data;
  ParallelConfig parallel;
  TrainConfig train;
  PrecisionConfig precision;
  MemoryConfig memory;
  CheckpointConfig checkpoint;
  DistillConfig distill;
  PruneConfig prune;
  bool operator==(const Config&) const = default;
};

// Reads a YAML file, applies `--set KEY=VALUE` overrides to its tree, then checks every key,
// type, range and cross-field rule (framework/config/rules.cpp, the one place for them),
// refuses keys whose feature is not built (key_status.h), and resolves derived defaults
// (n_kv_head, d_ff, checkpoint.dir, parallel.layout). Throws ConfigError naming the file,
// line and key.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The same for YAML text; `source` names it in errors (e.g. the checkpoint it came from).
Config parse_config(const std::string& yaml_text, const std::string& source = "<config>",
                    const std::vector<std::string>& overrides = {});

// parallel.layout with `auto` resolved: zigzag for ring and hybrid attention in a causal model
// (gpt, encdec: zigzag balances the causal work over the ring), contiguous otherwise (Ulysses
// gathers whole sequences before attending, so zigzag buys it nothing; the encoder is
// bidirectional). An explicit layout is returned as it is.
SeqLayout resolved_layout(const Config& config);

// The config as YAML text, every key written; parse_config(to_yaml(c)) == c for a parsed c.
std::string to_yaml(const Config& config);

// Every dotted key ("model.attention.window"), in the order to_yaml writes them.
std::vector<std::string> config_keys();

// The value of one dotted key as to_yaml writes it ("0.0003", "zigzag", "[0.9, 0.95]"), but a
// string bare, without YAML quotes: what `strand config get` prints. ConfigError naming the
// key (with "did you mean") for a key that is not in the table.
std::string value_of(const Config& config, const std::string& key);

}  // namespace strand::config
