// The rules that span keys, in one place: derived defaults, keys whose feature is not built,
// what each architecture and the sequence-parallel modes can honour, and the trainer's
// ranges that depend on another key. Models and the trainer rely on them and do not repeat them.
#include "framework/config/rules.h"

#include "framework/config/key_status.h"

namespace strand::config::detail {
namespace {

std::string num(int64_t v) { return std::to_string(v); }

// A key whose feature is not built is refused at any value but its default, so that a config
// never asks for something that silently does not happen; to_yaml writes the defaults, so
// every stored config still parses.
void refuse_unbuilt(const Config& c, const KeySource& p) {
  static const Config defaults;
  for (const KeyStatus& status : key_statuses()) {
    if (status.state != KeyState::Refused) continue;
    const std::string value = value_of(c, status.key), fallback = value_of(defaults, status.key);
    if (value == fallback) continue;
    const auto shown = [](const std::string& v) { return v.empty() ? std::string("\"\"") : v; };
    p.fail(status.key, shown(value) + " is not yet available (" + status.note + " is not built); leave the key at " +
                           shown(fallback));
  }
}

// What each architecture reads of the model section and the row.
void check_architecture(const Config& c, const KeySource& p) {
  const ModelConfig& m = c.model;
  const AttentionPattern pattern = m.attention.pattern;
  const std::string arch = name_of(m.arch);
  // gpt and encdec read the pattern as a causal decoder's; the encoder attends both ways.
  const bool decoder = m.arch != Arch::Encoder;
  if (decoder && pattern == AttentionPattern::Full)
    p.fail("model.attention.pattern", "full lets every position see later tokens, which arch " + arch +
                                          " (a causal decoder) must not; use causal, or arch encoder");
  if (!decoder && pattern == AttentionPattern::Causal)
    p.fail("model.attention.pattern", "causal makes the bidirectional encoder one-directional; use full (or sliding, "
                                      "dilated, longformer, bigbird, linear) with arch encoder");
  if (m.arch == Arch::Encoder && m.vocab_size < 2)
    p.fail("model.vocab_size", "arch encoder needs vocab_size >= 2 (the last id is the mask token), got " +
                                   num(m.vocab_size));
  const int64_t seq_len = c.data.seq_len;
  if (c.data.shuffle && c.data.format == DataFormat::Synthetic)
    p.fail("data.shuffle", "synthetic rows are drawn at random from run.seed and never repeat; shuffle applies to bin "
                           "and hdf5 data");
  if (m.arch == Arch::EncDec && seq_len < 2)
    p.fail("data.seq_len", "arch encdec splits each row into source and target halves, so seq_len must be >= 2, got " +
                               num(seq_len));
  // Longformer / bigbird global tokens must lie inside the sequence each stack attends over.
  const int64_t attended = m.arch == Arch::EncDec ? seq_len / 2 : seq_len;
  if ((pattern == AttentionPattern::Longformer || pattern == AttentionPattern::BigBird) &&
      m.attention.global_tokens > attended)
    p.fail("model.attention.global_tokens", num(m.attention.global_tokens) + " global tokens do not fit in " +
                                                num(attended) + " positions" +
                                                (m.arch == Arch::EncDec ? " (half of data.seq_len for encdec)" : ""));
}

}  // namespace

void resolve_and_check(Config& c, const KeySource& p) {
  ModelConfig& m = c.model;
  if (m.n_kv_head == 0) m.n_kv_head = m.n_head;
  if (m.d_ff == 0) m.d_ff = 4 * m.d_model;
  if (c.checkpoint.dir.empty()) c.checkpoint.dir = c.run.dir + "/checkpoints";
  if (c.memory.offload_dir.empty()) c.memory.offload_dir = c.run.dir + "/offload";
  if (c.memory.offload == Offload::Host)
    p.fail("memory.offload", "host offloads device tensors to pinned host memory; this run's tensors are on the "
                             "CPU already: use disk");
  if (c.memory.offload_gradients && c.memory.offload != Offload::Disk)
    p.fail("memory.offload_gradients", "gradients go to the spill file of memory.offload: disk, offload is " +
                                           std::string(c.memory.offload == Offload::None ? "none" : "host"));
  refuse_unbuilt(c, p);

  if (m.d_model % m.n_head != 0)
    p.fail(p.given("model.n_head") ? "model.n_head" : "model.d_model",
           "d_model " + num(m.d_model) + " is not divisible by n_head " + num(m.n_head));
  if (m.n_head % m.n_kv_head != 0)
    p.fail("model.n_kv_head", "n_head " + num(m.n_head) + " is not divisible by n_kv_head " + num(m.n_kv_head));
  if (m.pos == PosEncoding::Rope && (m.d_model / m.n_head) % 2 != 0)
    p.fail("model.pos", "rope needs an even head size, got d_model / n_head = " + num(m.d_model / m.n_head));
  if (m.pos == PosEncoding::Learned && c.data.seq_len > m.max_seq_len)
    p.fail("data.seq_len", num(c.data.seq_len) + " exceeds model.max_seq_len " + num(m.max_seq_len) +
                               " (the learned position table)");
  if (c.data.format != DataFormat::Synthetic && c.data.train.empty())
    p.fail("data.train", std::string("required when data.format is ") + name_of(c.data.format));

  ParallelConfig& par = c.parallel;
  par.layout = resolved_layout(c);
  // KV heads over an all-to-all group of u ranks: split (Hkv a multiple of u) or replicated
  // (Hkv dividing u) by parallel/ulysses.h; anything else cannot be laid out.
  auto check_kv_heads = [&](int64_t u, const std::string& group) {
    if (m.n_kv_head % u != 0 && u % m.n_kv_head != 0)
      p.fail("model.n_kv_head", "n_kv_head " + num(m.n_kv_head) + " must divide " + group + " " + num(u) +
                                    " or be a multiple of it (ulysses splits or replicates the KV heads)");
  };
  if (par.sp_mode == SpMode::Ulysses) {
    if (m.n_head % par.sp != 0)
      p.fail("parallel.sp", "ulysses splits heads over sp ranks: n_head " + num(m.n_head) +
                                " is not divisible by sp " + num(par.sp));
    check_kv_heads(par.sp, "sp");
  }
  if (par.sp_mode == SpMode::Hybrid) {
    if (par.sp % par.ulysses_degree != 0)
      p.fail("parallel.ulysses_degree", "sp " + num(par.sp) + " is not divisible by ulysses_degree " +
                                            num(par.ulysses_degree));
    if (m.n_head % par.ulysses_degree != 0)
      p.fail("parallel.ulysses_degree", "n_head " + num(m.n_head) + " is not divisible by ulysses_degree " +
                                            num(par.ulysses_degree));
    check_kv_heads(par.ulysses_degree, "ulysses_degree");
  } else if (par.ulysses_degree != 1) {
    p.fail("parallel.ulysses_degree", std::string("applies only to sp_mode hybrid, sp_mode is ") + name_of(par.sp_mode));
  }
  if (par.sp > 1) {
    // What cannot run on a sequence shard: encdec splits whole rows in halves, and linear
    // attention has no ring form.
    if (m.arch == Arch::EncDec)
      p.fail(p.given("model.arch") ? "model.arch" : "parallel.sp",
             std::string("model.arch encdec cannot run sequence-parallel (parallel.sp ") + num(par.sp) +
                 "): it splits each whole row into source and target halves; use arch gpt or encoder, or "
                 "parallel.sp 1");
    if (m.attention.pattern == AttentionPattern::Linear)
      p.fail("model.attention.pattern", "linear attention cannot run sequence-parallel (parallel.sp " + num(par.sp) +
                                            "): it has no ring or all-to-all form here; use a softmax pattern, "
                                            "or parallel.sp 1");
  }

  // Loss scaling guards fp16's narrow range; bf16 has float32's range and fp32 needs none.
  if (!c.precision.dynamic_loss_scale() && c.precision.compute != ComputePrecision::Fp16)
    p.fail("precision.loss_scale", std::string("a fixed scale applies to precision.compute fp16, compute is ") +
                                       name_of(c.precision.compute) + "; leave it at dynamic");

  const TrainConfig& t = c.train;
  if (t.sample_every > 0) {
    // A sample is text decoded from a GPT's cached generation (framework/train/sample.h).
    if (m.arch != Arch::Gpt)
      p.fail("train.sample_every", std::string("text samples need a decoder (model.arch gpt), not model.arch ") +
                                       name_of(m.arch) + "; set train.sample_every 0");
    else if (m.attention.pattern != AttentionPattern::Causal && m.attention.pattern != AttentionPattern::Sliding &&
             m.attention.pattern != AttentionPattern::Dilated)
      p.fail("train.sample_every", std::string("attention pattern ") + name_of(m.attention.pattern) +
                                       " has no cached generation (causal, sliding and dilated do); set "
                                       "train.sample_every 0");
    if (c.data.format == DataFormat::Synthetic)
      p.fail("train.sample_every", "data.format synthetic has no tokenizer to decode a sample; set "
                                   "train.sample_every 0");
  }
  if (c.data.tokenizer.empty()) p.fail("data.tokenizer", "expected auto, byte or the path of a SentencePiece .model");
  if (t.warmup_steps > t.steps)
    p.fail("train.warmup_steps", "warmup_steps " + num(t.warmup_steps) + " exceeds steps " + num(t.steps));
  if (t.min_lr > t.lr)
    p.fail("train.min_lr", "min_lr " + format_real(t.min_lr) + " exceeds lr " + format_real(t.lr));
  if (c.checkpoint.resume.empty())
    p.fail("checkpoint.resume", "expected auto, none or a checkpoint path, got nothing");
  if (c.distill.attention_rows > c.data.seq_len)
    p.fail("distill.attention_rows", num(c.distill.attention_rows) + " query rows per sequence exceed data.seq_len " +
                                         num(c.data.seq_len) + "; use 0 to score every row");
  check_architecture(c, p);
}

}  // namespace strand::config::detail
