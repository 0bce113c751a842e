// Config parsing, checking and emission: one list of keys (visit_config) drives the parser,
// the emitter and the key list, so a key added there is parsed, printed and checked alike.
#include "framework/config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "framework/config/rules.h"
#include "framework/core/text.h"

namespace strand::config {

#define STRAND_CHOICES(E, ...)                                \
  template <> std::span<const char* const> choices<E>() {     \
    static constexpr const char* names[] = {__VA_ARGS__};     \
    return names;                                             \
  }
STRAND_CHOICES(Arch, "gpt", "encoder", "encdec")
STRAND_CHOICES(PosEncoding, "learned", "rope")
STRAND_CHOICES(NormKind, "layernorm", "rmsnorm")
STRAND_CHOICES(Activation, "gelu", "swiglu")
STRAND_CHOICES(AttentionPattern, "full", "causal", "sliding", "dilated", "longformer", "bigbird", "linear")
STRAND_CHOICES(DataFormat, "bin", "hdf5", "synthetic")
STRAND_CHOICES(SyntheticTask, "passkey", "assoc_recall", "copy")
STRAND_CHOICES(SpMode, "ring", "ulysses", "hybrid")
STRAND_CHOICES(SeqLayout, "auto", "contiguous", "zigzag")
STRAND_CHOICES(CommBackend, "mpi", "nccl")
STRAND_CHOICES(LrScheduleKind, "cosine", "linear", "constant")
STRAND_CHOICES(ComputePrecision, "fp32", "bf16", "fp16")
STRAND_CHOICES(Checkpointing, "none", "full", "selective")
STRAND_CHOICES(Offload, "none", "host", "disk")
STRAND_CHOICES(GradDtype, "fp32", "bf16")
STRAND_CHOICES(PruneMethod, "importance", "random")
STRAND_CHOICES(RunDevice, "cpu", "cuda")
#undef STRAND_CHOICES

namespace detail {

// Plain decimals while they stay short ("0.0003", not "3e-04"), "1.0" rather than "1" so it
// reads as a real.
std::string format_real(double v) {
  char buf[400];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);
  std::string s(buf, end);
  if (s.size() > 12) {
    auto [sci_end, sci_ec] = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
    s.assign(buf, sci_end);
  }
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

}  // namespace detail

namespace {

using detail::format_real;

constexpr double kInf = std::numeric_limits<double>::infinity();

// The allowed interval of a numeric key.
struct Range {
  double lo = -kInf, hi = kInf;
  bool lo_open = false, hi_open = false;
  bool contains(double v) const {
    return (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
  }
};
Range at_least(double lo) { return {lo, kInf, false, false}; }
Range above(double lo) { return {lo, kInf, true, false}; }
Range unit_closed() { return {0.0, 1.0, false, false}; }
Range unit_half_open() { return {0.0, 1.0, false, true}; }

std::string format_bound(double v) {
  if (std::abs(v) < 1e15 && v == std::floor(v)) return std::to_string(static_cast<int64_t>(v));
  return format_real(v);
}
std::string describe(const Range& r) {
  if (r.hi == kInf) return std::string(r.lo_open ? "> " : ">= ") + format_bound(r.lo);
  return std::string("in ") + (r.lo_open ? "(" : "[") + format_bound(r.lo) + ", " + format_bound(r.hi) +
         (r.hi_open ? ")" : "]");
}

// Full-consumption number parsing, locale-free: "3e-4" is a number, "3e-4x" is not.
bool parse_real(const std::string& s, double& out) {
  const char* b = s.data();
  const char* e = b + s.size();
  if (b != e && *b == '+') ++b;
  if (b == e) return false;
  auto [ptr, ec] = std::from_chars(b, e, out);
  return ec == std::errc() && ptr == e && std::isfinite(out);
}
// Integers; "1e6" and "1000.0" count when the value is whole and exactly representable.
enum class IntParse { Ok, NotInteger, OutOfRange };
IntParse parse_integer(const std::string& s, int64_t& out) {
  const char* b = s.data();
  const char* e = b + s.size();
  if (b != e && *b == '+') ++b;
  auto [ptr, ec] = std::from_chars(b, e, out);
  if (b != e && ptr == e) return ec == std::errc() ? IntParse::Ok : IntParse::OutOfRange;
  double d;
  if (!parse_real(s, d) || d != std::floor(d)) return IntParse::NotInteger;
  if (std::abs(d) > 9007199254740992.0) return IntParse::OutOfRange;  // 2^53
  out = static_cast<int64_t>(d);
  return IntParse::Ok;
}

bool close_enough(size_t distance, const std::string& word) {
  return distance <= std::max<size_t>(2, word.size() / 3);
}
std::string last_part(const std::string& key) {
  const size_t dot = key.rfind('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}
std::string parent_of(const std::string& key) {
  const size_t dot = key.rfind('.');
  return dot == std::string::npos ? std::string() : key.substr(0, dot);
}

// One call per key, in the order of the YAML the emitter writes.
class KeyVisitor {
 public:
  virtual ~KeyVisitor() = default;
  void begin(const char* section) { sections_.push_back(section); on_begin(path_of("")); }
  void end() { on_end(); sections_.pop_back(); }
  virtual void integer(const char* key, int64_t& v, Range r) = 0;
  virtual void real(const char* key, double& v, Range r) = 0;
  virtual void boolean(const char* key, bool& v) = 0;
  virtual void text(const char* key, std::string& v) = 0;
  virtual void choice(const char* key, size_t& index, std::span<const char* const> names) = 0;
  virtual void real_pair(const char* key, std::array<double, 2>& v, Range r) = 0;
  virtual void loss_scale(const char* key, double& v) = 0;  // dynamic (0) or a number > 0

 protected:
  virtual void on_begin(const std::string& section) { (void)section; }
  virtual void on_end() {}
  // "model.attention.window" for key "window" inside model.attention; the section for "".
  std::string path_of(const char* key) const {
    std::string p;
    for (const auto& s : sections_) p += (p.empty() ? "" : ".") + s;
    if (*key) p += (p.empty() ? "" : ".") + std::string(key);
    return p;
  }

 private:
  std::vector<std::string> sections_;
};

template <class E>
void choice(KeyVisitor& v, const char* key, E& value) {
  size_t index = static_cast<size_t>(value);
  v.choice(key, index, choices<E>());
  value = static_cast<E>(index);
}

// The key list of architecture.md §5. Defaults live in config.h; ranges live here.
void visit_config(Config& c, KeyVisitor& v) {
  v.begin("run");
  v.text("name", c.run.name);
  v.text("dir", c.run.dir);
  v.integer("seed", c.run.seed, at_least(0));
  choice(v, "device", c.run.device);
  v.end();

  v.begin("model");
  choice(v, "arch", c.model.arch);
  v.integer("vocab_size", c.model.vocab_size, {1, 2147483647.0});
  v.integer("n_layer", c.model.n_layer, at_least(1));
  v.integer("n_head", c.model.n_head, at_least(1));
  v.integer("n_kv_head", c.model.n_kv_head, at_least(0));
  v.integer("d_model", c.model.d_model, at_least(1));
  v.integer("d_ff", c.model.d_ff, at_least(0));
  v.integer("max_seq_len", c.model.max_seq_len, at_least(1));
  choice(v, "pos", c.model.pos);
  choice(v, "norm", c.model.norm);
  choice(v, "activation", c.model.activation);
  v.boolean("tie_embeddings", c.model.tie_embeddings);
  v.real("dropout", c.model.dropout, unit_half_open());
  v.begin("attention");
  choice(v, "pattern", c.model.attention.pattern);
  v.integer("window", c.model.attention.window, at_least(1));
  v.integer("dilation", c.model.attention.dilation, at_least(1));
  v.integer("global_tokens", c.model.attention.global_tokens, at_least(0));
  v.integer("block_size", c.model.attention.block_size, at_least(1));
  v.integer("random_blocks", c.model.attention.random_blocks, at_least(0));
  v.end();
  v.end();

  v.begin("data");
  choice(v, "format", c.data.format);
  v.text("train", c.data.train);
  v.text("val", c.data.val);
  v.text("tokenizer", c.data.tokenizer);
  choice(v, "task", c.data.task);
  v.integer("seq_len", c.data.seq_len, at_least(1));
  v.integer("batch_size", c.data.batch_size, at_least(1));
  v.boolean("shuffle", c.data.shuffle);
  v.end();

  v.begin("parallel");
  v.integer("dp", c.parallel.dp, at_least(1));
  v.integer("sp", c.parallel.sp, at_least(1));
  choice(v, "sp_mode", c.parallel.sp_mode);
  v.integer("ulysses_degree", c.parallel.ulysses_degree, at_least(1));
  choice(v, "layout", c.parallel.layout);
  choice(v, "backend", c.parallel.backend);
  v.integer("bucket_mb", c.parallel.bucket_mb, at_least(1));
  v.real("timeout_s", c.parallel.timeout_s, at_least(0));
  choice(v, "grad_dtype", c.parallel.grad_dtype);
  v.end();

  v.begin("train");
  v.integer("steps", c.train.steps, at_least(1));
  v.real("lr", c.train.lr, above(0));
  v.real("min_lr", c.train.min_lr, at_least(0));
  v.integer("warmup_steps", c.train.warmup_steps, at_least(0));
  choice(v, "schedule", c.train.schedule);
  v.real("weight_decay", c.train.weight_decay, at_least(0));
  v.real_pair("betas", c.train.betas, unit_half_open());
  v.real("grad_clip", c.train.grad_clip, at_least(0));
  v.integer("grad_accum", c.train.grad_accum, at_least(1));
  v.integer("max_skipped_steps", c.train.max_skipped_steps, at_least(1));
  v.integer("log_every", c.train.log_every, at_least(1));
  v.integer("sample_every", c.train.sample_every, at_least(0));
  v.integer("eval_every", c.train.eval_every, at_least(0));
  v.integer("eval_batches", c.train.eval_batches, at_least(1));
  v.end();

  v.begin("precision");
  choice(v, "compute", c.precision.compute);
  v.loss_scale("loss_scale", c.precision.loss_scale);
  v.integer("scale_window", c.precision.scale_window, at_least(1));
  v.end();

  v.begin("memory");
  choice(v, "checkpointing", c.memory.checkpointing);
  v.integer("checkpoint_layers", c.memory.checkpoint_layers, at_least(0));
  choice(v, "offload", c.memory.offload);
  v.integer("loss_chunk", c.memory.loss_chunk, at_least(0));
  v.integer("offload_min_bytes", c.memory.offload_min_bytes, at_least(0));
  v.text("offload_dir", c.memory.offload_dir);
  v.boolean("offload_gradients", c.memory.offload_gradients);
  v.end();

  v.begin("checkpoint");
  v.text("dir", c.checkpoint.dir);
  v.integer("every", c.checkpoint.every, at_least(0));
  v.integer("keep", c.checkpoint.keep, at_least(0));
  v.text("resume", c.checkpoint.resume);
  v.end();

  v.begin("distill");
  v.text("teacher", c.distill.teacher);
  v.real("temperature", c.distill.temperature, above(0));
  v.real("alpha", c.distill.alpha, unit_closed());
  v.real("attention_weight", c.distill.attention_weight, at_least(0));
  v.text("attention_layers", c.distill.attention_layers);
  v.integer("attention_rows", c.distill.attention_rows, at_least(0));
  v.real("hidden_weight", c.distill.hidden_weight, at_least(0));
  v.text("hidden_layers", c.distill.hidden_layers);
  v.boolean("init_from_teacher", c.distill.init_from_teacher);
  v.end();

  v.begin("prune");
  v.real("heads_fraction", c.prune.heads_fraction, unit_half_open());
  v.integer("iterations", c.prune.iterations, at_least(1));
  v.integer("importance_batches", c.prune.importance_batches, at_least(1));
  v.integer("finetune_steps", c.prune.finetune_steps, at_least(0));
  choice(v, "method", c.prune.method);
  v.integer("seed", c.prune.seed, at_least(0));
  v.end();
}

// Collects the key names: fields (with whether they take a list) and sections.
class KeyLister : public KeyVisitor {
 public:
  std::vector<std::string> fields;
  std::set<std::string> list_fields;
  std::set<std::string> sections;

  void integer(const char* k, int64_t&, Range) override { fields.push_back(path_of(k)); }
  void real(const char* k, double&, Range) override { fields.push_back(path_of(k)); }
  void boolean(const char* k, bool&) override { fields.push_back(path_of(k)); }
  void text(const char* k, std::string&) override { fields.push_back(path_of(k)); }
  void choice(const char* k, size_t&, std::span<const char* const>) override { fields.push_back(path_of(k)); }
  void real_pair(const char* k, std::array<double, 2>&, Range) override {
    fields.push_back(path_of(k));
    list_fields.insert(path_of(k));
  }
  void loss_scale(const char* k, double&) override { fields.push_back(path_of(k)); }

  bool is_field(const std::string& k) const { return std::find(fields.begin(), fields.end(), k) != fields.end(); }

 protected:
  void on_begin(const std::string& section) override { sections.insert(section); }
};

const KeyLister& key_list() {
  static const KeyLister list = [] {
    KeyLister l;
    Config c;
    visit_config(c, l);
    return l;
  }();
  return list;
}

// "unknown key; did you mean 'model.n_head'?", or the valid keys of its section.
std::string unknown_key_message(const std::string& key) {
  const KeyLister& keys = key_list();
  std::vector<std::string> all(keys.fields.begin(), keys.fields.end());
  all.insert(all.end(), keys.sections.begin(), keys.sections.end());
  const std::string name = last_part(key), parent = parent_of(key);
  // The same name in another section ('model.lr' -> 'train.lr') is the likeliest slip.
  for (const auto& k : all)
    if (last_part(k) == name) return "unknown key; did you mean '" + k + "'?";
  // A shortened name ('warmup' for 'warmup_steps').
  if (name.size() >= 3)
    for (const auto& k : all)
      if (parent_of(k) == parent && last_part(k).rfind(name, 0) == 0) return "unknown key; did you mean '" + k + "'?";
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  for (const auto& k : all) {
    if (parent_of(k) != parent) continue;
    const size_t d = edit_distance(name, last_part(k));
    if (d < best_d) best_d = d, best = k;
  }
  if (!best.empty() && close_enough(best_d, name)) return "unknown key; did you mean '" + best + "'?";
  best.clear();
  best_d = std::numeric_limits<size_t>::max();
  for (const auto& k : all) {
    const size_t d = edit_distance(key, k);
    if (d < best_d) best_d = d, best = k;
  }
  if (!best.empty() && close_enough(best_d, key)) return "unknown key; did you mean '" + best + "'?";
  std::string valid;
  for (const auto& k : all)
    if (parent_of(k) == parent) valid += (valid.empty() ? "" : ", ") + last_part(k);
  return "unknown key; valid keys" + (parent.empty() ? std::string() : " in '" + parent + "'") + ": " + valid;
}

std::string describe_node(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null: return "nothing";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Scalar:
      return n.Tag() == "!" ? "the quoted string '" + n.Scalar() + "'" : "'" + n.Scalar() + "'";
    default: return "an undefined value";
  }
}

// Reads every key from the YAML tree, checking types and ranges and remembering where each
// key was written, for errors.
class Parser : public KeyVisitor, public detail::KeySource {
 public:
  Parser(YAML::Node root, std::string source, std::map<std::string, std::string> set_by)
      : root_(std::move(root)), source_(std::move(source)), set_by_(std::move(set_by)) {}

  std::string where(const std::string& key) const override {
    auto s = set_by_.find(key);
    if (s != set_by_.end()) return s->second;
    auto w = where_.find(key);
    return w != where_.end() ? w->second : source_;
  }
  bool given(const std::string& key) const override { return where_.count(key) || set_by_.count(key); }

  void integer(const char* k, int64_t& v, Range r) override {
    const std::string key = path_of(k);
    YAML::Node n = plain_scalar(key, "an integer");
    if (!n) return;
    int64_t value = 0;
    switch (parse_integer(n.Scalar(), value)) {
      case IntParse::NotInteger: fail(key, "expected an integer, got " + describe_node(n));
      case IntParse::OutOfRange: fail(key, "integer '" + n.Scalar() + "' is out of range");
      case IntParse::Ok: break;
    }
    if (!r.contains(static_cast<double>(value)))
      fail(key, "must be " + describe(r) + ", got " + std::to_string(value));
    v = value;
  }
  void real(const char* k, double& v, Range r) override {
    const std::string key = path_of(k);
    YAML::Node n = plain_scalar(key, "a number");
    if (n) v = number_in(key, n, r);
  }
  void boolean(const char* k, bool& v) override {
    const std::string key = path_of(k);
    YAML::Node n = plain_scalar(key, "true or false");
    if (!n) return;
    const std::string& s = n.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") v = true;
    else if (s == "false" || s == "False" || s == "FALSE") v = false;
    else fail(key, "expected true or false, got " + describe_node(n));
  }
  void text(const char* k, std::string& v) override {
    const std::string key = path_of(k);
    YAML::Node n = lookup(key);
    if (!n) return;
    if (!n.IsScalar()) fail(key, "expected a string, got " + describe_node(n));
    v = n.Scalar();
  }
  void choice(const char* k, size_t& index, std::span<const char* const> names) override {
    const std::string key = path_of(k);
    YAML::Node n = lookup(key);
    if (!n) return;
    std::string all;
    for (const char* name : names) all += (all.empty() ? "" : "|") + std::string(name);
    if (!n.IsScalar()) fail(key, "expected one of " + all + ", got " + describe_node(n));
    const std::string& s = n.Scalar();
    for (size_t i = 0; i < names.size(); ++i)
      if (s == names[i]) { index = i; return; }
    std::string hint;
    size_t best = std::numeric_limits<size_t>::max();
    for (const char* name : names) {
      const size_t d = edit_distance(s, name);
      if (d < best && close_enough(d, s)) best = d, hint = std::string(" (did you mean '") + name + "'?)";
    }
    fail(key, "'" + s + "' is not one of " + all + hint);
  }
  void real_pair(const char* k, std::array<double, 2>& v, Range r) override {
    const std::string key = path_of(k);
    YAML::Node n = lookup(key);
    if (!n) return;
    if (!n.IsSequence() || n.size() != 2) fail(key, "expected a list of two numbers, got " + describe_node(n));
    for (size_t i = 0; i < 2; ++i) {
      if (!n[i].IsScalar() || n[i].Tag() == "!")
        fail(key, "expected a list of two numbers, element " + std::to_string(i) + " is " + describe_node(n[i]));
      v[i] = number_in(key, n[i], r);
    }
  }
  void loss_scale(const char* k, double& v) override {
    const std::string key = path_of(k);
    YAML::Node n = lookup(key);
    if (!n) return;
    double value = 0;
    if (n.IsScalar() && n.Scalar() == "dynamic") v = 0.0;
    else if (n.IsScalar() && n.Tag() != "!" && parse_real(n.Scalar(), value) && value > 0) v = value;
    else fail(key, "expected dynamic or a number > 0, got " + describe_node(n));
  }

 private:
  // The value node of `key`, or an empty node when the key is absent (its default stays).
  YAML::Node lookup(const std::string& key) {
    YAML::Node cur = root_;
    std::string rest = key;
    while (true) {
      if (!cur.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
      const size_t dot = rest.find('.');
      const std::string part = rest.substr(0, dot);
      YAML::Node next(YAML::NodeType::Undefined);
      for (auto it = cur.begin(); it != cur.end(); ++it) {
        if (it->first.Scalar() != part) continue;
        next.reset(it->second);
        if (dot == std::string::npos && !it->first.Mark().is_null())
          where_[key] = source_ + ":" + std::to_string(it->first.Mark().line + 1);
        break;
      }
      if (!next.IsDefined()) return next;
      if (dot == std::string::npos) return next;
      cur.reset(next);
      rest = rest.substr(dot + 1);
    }
  }
  YAML::Node plain_scalar(const std::string& key, const char* expected) {
    YAML::Node n = lookup(key);
    if (n && (!n.IsScalar() || n.Tag() == "!")) fail(key, std::string("expected ") + expected + ", got " + describe_node(n));
    return n;
  }
  double number_in(const std::string& key, const YAML::Node& n, Range r) const {
    double value = 0;
    if (!parse_real(n.Scalar(), value)) fail(key, "expected a number, got " + describe_node(n));
    if (!r.contains(value)) fail(key, "must be " + describe(r) + ", got " + n.Scalar());
    return value;
  }

  YAML::Node root_;
  std::string source_;
  std::map<std::string, std::string> set_by_;
  std::map<std::string, std::string> where_;
};

// Writes every key as YAML, sections as nested mappings.
class Emitter : public KeyVisitor {
 public:
  YAML::Emitter out;
  Emitter() { out << YAML::BeginMap; }

  void integer(const char* k, int64_t& v, Range) override { out << YAML::Key << k << YAML::Value << std::to_string(v); }
  void real(const char* k, double& v, Range) override { out << YAML::Key << k << YAML::Value << format_real(v); }
  void boolean(const char* k, bool& v) override { out << YAML::Key << k << YAML::Value << (v ? "true" : "false"); }
  void text(const char* k, std::string& v) override { out << YAML::Key << k << YAML::Value << YAML::DoubleQuoted << v; }
  void choice(const char* k, size_t& index, std::span<const char* const> names) override {
    out << YAML::Key << k << YAML::Value << names[index];
  }
  void real_pair(const char* k, std::array<double, 2>& v, Range) override {
    out << YAML::Key << k << YAML::Value << YAML::Flow << YAML::BeginSeq << format_real(v[0])
        << format_real(v[1]) << YAML::EndSeq;
  }
  void loss_scale(const char* k, double& v) override {
    out << YAML::Key << k << YAML::Value << (v == 0.0 ? std::string("dynamic") : format_real(v));
  }

 protected:
  void on_begin(const std::string& section) override {
    out << YAML::Key << last_part(section) << YAML::Value << YAML::BeginMap;
  }
  void on_end() override { out << YAML::EndMap; }
};

// The text of one key's value as the emitter writes it, strings bare (no YAML quotes).
class ValueReader : public KeyVisitor {
 public:
  explicit ValueReader(std::string key) : key_(std::move(key)) {}
  std::optional<std::string> found;

  void integer(const char* k, int64_t& v, Range) override { take(k, std::to_string(v)); }
  void real(const char* k, double& v, Range) override { take(k, format_real(v)); }
  void boolean(const char* k, bool& v) override { take(k, v ? "true" : "false"); }
  void text(const char* k, std::string& v) override { take(k, v); }
  void choice(const char* k, size_t& index, std::span<const char* const> names) override { take(k, names[index]); }
  void real_pair(const char* k, std::array<double, 2>& v, Range) override {
    take(k, "[" + format_real(v[0]) + ", " + format_real(v[1]) + "]");
  }
  void loss_scale(const char* k, double& v) override { take(k, v == 0.0 ? std::string("dynamic") : format_real(v)); }

 private:
  void take(const char* k, std::string value) {
    if (!found && path_of(k) == key_) found = std::move(value);
  }
  std::string key_;
};

// Unknown keys, repeated keys and sections that are not mappings, before any value is read.
void check_structure(const YAML::Node& map, const std::string& prefix, const std::string& source,
                     const std::map<std::string, std::string>& set_by) {
  const KeyLister& keys = key_list();
  std::map<std::string, int> seen_at;
  for (auto it = map.begin(); it != map.end(); ++it) {
    const YAML::Node k = it->first;  // a copy: the iterator yields a temporary pair
    const std::string at = k.Mark().is_null() ? source : source + ":" + std::to_string(k.Mark().line + 1);
    if (!k.IsScalar()) throw ConfigError(at + ": a key must be a name, got " + describe_node(k));
    const std::string key = prefix.empty() ? k.Scalar() : prefix + "." + k.Scalar();
    auto s = set_by.find(key);
    const std::string where = s != set_by.end() ? s->second : at;
    if (auto [prev, fresh] = seen_at.emplace(key, k.Mark().line + 1); !fresh)
      throw ConfigError(where + ": key '" + key + "': given twice (first at line " + std::to_string(prev->second) + ")");
    if (keys.sections.count(key)) {
      const YAML::Node v = it->second;
      if (v.IsMap()) check_structure(v, key, source, set_by);
      else if (!v.IsNull())
        throw ConfigError(where + ": key '" + key + "': expected a mapping of '" + key + "' keys, got " + describe_node(v));
    } else if (!keys.is_field(key)) {
      throw ConfigError(where + ": key '" + key + "': " + unknown_key_message(key));
    }
  }
}

// Applies one `--set a.b=c` to the tree; returns the key it set.
std::string apply_override(YAML::Node& root, const std::string& assignment) {
  const std::string where = "--set " + assignment;
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError(where + ": expected KEY=VALUE, such as train.lr=3e-4");
  const std::string key = assignment.substr(0, eq), value = assignment.substr(eq + 1);
  const KeyLister& keys = key_list();
  if (keys.sections.count(key))
    throw ConfigError(where + ": key '" + key + "': is a section; set one of its keys, such as '" +
                      key + "." + last_part(*std::find_if(keys.fields.begin(), keys.fields.end(),
                          [&](const std::string& f) { return parent_of(f) == key; })) + "'");
  if (!keys.is_field(key)) throw ConfigError(where + ": key '" + key + "': " + unknown_key_message(key));
  YAML::Node node;
  if (keys.list_fields.count(key)) {
    try {
      node = YAML::Load(value);
    } catch (const YAML::Exception& e) {
      throw ConfigError(where + ": key '" + key + "': value is not valid YAML: " + e.msg);
    }
  } else {
    node = YAML::Node(value);  // scalars stay text: "3e-4", "rope", "/path/x.h5"
  }
  YAML::Node cur = root;
  std::string rest = key;
  for (size_t dot; (dot = rest.find('.')) != std::string::npos; rest = rest.substr(dot + 1)) {
    const std::string section = rest.substr(0, dot);
    YAML::Node next = cur[section];
    if (!next.IsDefined() || next.IsNull()) cur[section] = YAML::Node(YAML::NodeType::Map);
    else if (!next.IsMap())
      throw ConfigError(where + ": key '" + key + "': its section '" + section + "' is " + describe_node(next) +
                        " in the file, not a mapping");
    YAML::Node child = cur[section];
    cur.reset(child);
  }
  cur[rest] = node;
  return key;
}

}  // namespace

SeqLayout resolved_layout(const Config& config) {
  const ParallelConfig& par = config.parallel;
  if (par.layout != SeqLayout::Auto) return par.layout;
  const bool causal = config.model.arch != Arch::Encoder;
  const bool ring = par.sp_mode == SpMode::Ring || par.sp_mode == SpMode::Hybrid;
  return causal && ring ? SeqLayout::Zigzag : SeqLayout::Contiguous;
}

Config parse_config(const std::string& yaml_text, const std::string& source,
                    const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    // A config is one document: a second one (after a `---` line) would otherwise be dropped.
    const std::vector<YAML::Node> documents = YAML::LoadAll(yaml_text);
    if (documents.size() > 1)
      throw ConfigError(source + ":" + std::to_string(documents[1].Mark().line + 1) +
                        ": a second YAML document; a config is one document (remove the '---' line)");
    if (!documents.empty()) root = documents.front();
  } catch (const YAML::ParserException& e) {
    throw ConfigError(source + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML: " + e.msg);
  }
  if (!root.IsMap() && !root.IsNull())
    throw ConfigError(source + ":" + std::to_string(root.Mark().line + 1) +
                      ": expected a mapping of sections (run, model, data, ...), got " + describe_node(root));
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);

  std::map<std::string, std::string> set_by;
  for (const auto& o : overrides) set_by[apply_override(root, o)] = "--set " + o;
  check_structure(root, "", source, set_by);

  Config config;
  Parser parser(root, source, set_by);
  visit_config(config, parser);
  detail::resolve_and_check(config, parser);
  return config;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw ConfigError(path + ": is a directory, not a config file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot open the config file");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), path, overrides);
}

std::string to_yaml(const Config& config) {
  Config copy = config;
  Emitter e;
  visit_config(copy, e);
  e.out << YAML::EndMap;
  return std::string(e.out.c_str()) + "\n";
}

std::vector<std::string> config_keys() { return key_list().fields; }

std::string value_of(const Config& config, const std::string& key) {
  const KeyLister& keys = key_list();
  if (keys.sections.count(key)) throw ConfigError("key '" + key + "': is a section, not a key; name one of its keys");
  if (!keys.is_field(key)) throw ConfigError("key '" + key + "': " + unknown_key_message(key));
  Config copy = config;
  ValueReader reader(key);
  visit_config(copy, reader);
  return *reader.found;
}

}  // namespace strand::config
