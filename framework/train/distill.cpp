// The distillation trainer: the teacher's loading and DistilBERT initialisation, the
// micro-batch loss alpha * CE + (1 - alpha) * T^2 * KL over the student's and teacher's chunked
// LM heads (no [rows, V] logits buffer for either model: ops/chunked_loss.h), and TinyBERT's
// hidden-state term through the learned projection (its optimizer step and checkpoint group), and
// MiniLM's attention transfer at the last layers (parallel::attention_transfer_loss on the q and
// k the attention probe hands over).
#include "framework/train/distill.h"

#include <array>
#include <cstdio>
#include <cmath>
#include <map>
#include <span>

#include "framework/autograd/checkpoint.h"
#include "framework/autograd/grad_mode.h"
#include "framework/ops/matmul.h"
#include "framework/ops/reduce.h"
#include "framework/train/precision.h"
#include "framework/io/checkpoint.h"
#include "framework/ops/chunked_loss.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/view.h"
#include "models/transformer.h"
#include "parallel/attention_stats.h"
#include "parallel/comm/group.h"

namespace strand::train {

namespace {

constexpr uint64_t kProjectionSalt = 0x70726f6aull;  // "proj": the hidden-state projection's init
constexpr const char* kGroup = "distill";           // the checkpoint group of the projection

// Rows per chunk of the KD head: memory.loss_chunk, else about 64 MiB of logits per model.
int64_t kd_chunk_rows(const Config& config, int64_t vocab) {
  return config.memory.loss_chunk > 0 ? config.memory.loss_chunk : ops::auto_chunk_rows(vocab, DType::F32);
}

// The query rows the attention term of student layer `layer` scores at `step`
// (distill.attention_rows; 0: all): drawn from run.seed, the step and the layer, the same on
// every rank (the sequence-parallel op draws by global position).
ops::RowSample attention_sample(const Config& config, int64_t step, int64_t layer) {
  constexpr uint64_t kAttentionRowsSalt = 0x6174726f7773ull;  // "atrows"
  return {config.distill.attention_rows,
          models::derive_seed(static_cast<uint64_t>(config.run.seed),
                              {kAttentionRowsSalt, static_cast<uint64_t>(step), static_cast<uint64_t>(layer)})};
}

// The self-attention layers of a model, block 0 first (the order of its modules).
std::vector<nn::MultiHeadAttention*> self_attention_layers(nn::Module& model) {
  std::vector<nn::MultiHeadAttention*> layers;
  model.visit([&](nn::Module& m) {
    if (auto* attn = dynamic_cast<nn::MultiHeadAttention*>(&m)) layers.push_back(attn);
  });
  return layers;
}

}  // namespace

// Keeps the q and k one forward hands its attention probe; clears the probe when it goes. They
// come through autograd::expose, so under full checkpointing (the block runs without recording
// and reruns in the backward) they are extra outputs of the block's checkpoint: the term's
// gradient w.r.t. them waits there and is fed into the rerun's q and k (docs/distill-prune.md).
// The student's captures therefore stay installed while its backward runs; they keep what they
// are handed only while armed (the forward of micro_batch_loss), not in evaluation.
class ProbeCapture {
 public:
  explicit ProbeCapture(nn::MultiHeadAttention* attn) : attn_(attn) {
    if (attn_)
      attn_->set_attention_probe([this](const Tensor& q, const Tensor& k, const Tensor&) {
        autograd::expose(q, [this](const Tensor& t) { keep(q_, t); });
        autograd::expose(k, [this](const Tensor& t) { keep(k_, t); });
      });
  }
  ~ProbeCapture() {
    if (attn_) attn_->set_attention_probe(nullptr);
  }
  ProbeCapture(const ProbeCapture&) = delete;
  ProbeCapture& operator=(const ProbeCapture&) = delete;
  const Tensor& q() const { return q_; }
  const Tensor& k() const { return k_; }
  // Armed: keep what the probe hands over. Disarming drops what was kept (the loss's graph holds
  // what its backward needs).
  void arm(bool on) {
    armed_ = on;
    if (!on) q_ = k_ = Tensor();
  }

 private:
  void keep(Tensor& slot, const Tensor& t) {
    if (armed_) slot = t;
  }
  nn::MultiHeadAttention* attn_;
  bool armed_ = true;
  Tensor q_, k_;
};

std::vector<std::pair<int64_t, int64_t>> layer_pairs(const std::string& key_name, const std::string& text,
                                                     int64_t student_layers, int64_t teacher_layers) {
  const std::string key = "key '" + key_name + "': ";
  std::vector<std::pair<int64_t, int64_t>> pairs;
  if (text.find_first_not_of(" ") == std::string::npos) return pairs;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    int64_t s = -1, t = -1;
    char extra = 0;
    if (std::sscanf(item.c_str(), " %ld : %ld %c", &s, &t, &extra) != 2)
      throw ConfigError(detail::concat(key, "expected student:teacher layer pairs such as \"0:1, 1:3\", got \"", item,
                                       "\" in \"", text, "\""));
    if (s < 0 || s >= student_layers || t < 0 || t >= teacher_layers)
      throw ConfigError(detail::concat(key, "pair ", s, ":", t, " is outside the student's ", student_layers,
                                       " layers or the teacher's ", teacher_layers, " (0-based)"));
    pairs.emplace_back(s, t);
    start = comma + 1;
  }
  return pairs;
}

std::vector<std::pair<int64_t, int64_t>> attention_layer_pairs(const std::string& text, int64_t student_layers,
                                                               int64_t teacher_layers) {
  auto pairs = layer_pairs("distill.attention_layers", text, student_layers, teacher_layers);
  if (pairs.empty()) pairs.emplace_back(student_layers - 1, teacher_layers - 1);  // MiniLM: last, last
  return pairs;
}

std::vector<std::pair<int64_t, int64_t>> hidden_layer_pairs(const std::string& text, int64_t student_layers,
                                                            int64_t teacher_layers) {
  auto pairs = layer_pairs("distill.hidden_layers", text, student_layers, teacher_layers);
  // Uniform map: student layer i reads the last teacher layer of its share (TinyBERT's g(m) = m k).
  if (pairs.empty())
    for (int64_t i = 0; i < student_layers; ++i)
      pairs.emplace_back(i, std::max<int64_t>(0, (i + 1) * teacher_layers / student_layers - 1));
  return pairs;
}

void check_distill_config(const Config& config) {
  if (config.distill.teacher.empty())
    throw ConfigError("key 'distill.teacher': strand distill needs the teacher's checkpoint (.h5)");
  if (config.model.arch != Arch::Gpt)
    throw ConfigError(detail::concat("key 'model.arch': strand distill trains a gpt student, got ",
                                     name_of(config.model.arch)));
}

std::shared_ptr<models::Gpt> load_teacher(const Config& student) {
  const std::string& path = student.distill.teacher;
  const io::CheckpointData ck = io::read_checkpoint(path);
  const Config config = parse_config(ck.config_yaml, path + " (config attribute)");
  if (config.model.arch != Arch::Gpt)
    throw ConfigError(detail::concat("key 'distill.teacher': ", path, " holds a ", name_of(config.model.arch),
                                     "; the teacher must be a gpt"));
  if (config.model.vocab_size != student.model.vocab_size)
    throw ConfigError(detail::concat("key 'distill.teacher': ", path, " has model.vocab_size ",
                                     config.model.vocab_size, ", the student ", student.model.vocab_size,
                                     "; soft targets need one vocabulary"));
  std::shared_ptr<models::Model> model = models::build_model(config);
  io::load_into(model->named_parameters(), ck);
  auto teacher = std::dynamic_pointer_cast<models::Gpt>(model);
  STRAND_CHECK(teacher != nullptr, ValueError, "distill: ", path, " did not build a gpt");
  teacher->train(false);  // no dropout: the soft targets are the teacher's best guess
  // It records nothing, so there is nothing to recompute: its blocks run plainly, whatever
  // memory.checkpointing its own run used.
  models::set_checkpointing(*teacher, strand::config::MemoryConfig{});
  for (auto& [name, p] : teacher->named_parameters()) p.set_requires_grad(false);
  return teacher;
}

void init_student_from_teacher(models::Gpt& student, const models::Gpt& teacher) {
  const int64_t ls = student.transformer().n_layer(), lt = teacher.transformer().n_layer();
  if (lt % ls != 0)
    throw ConfigError(detail::concat("key 'distill.init_from_teacher': the teacher's ", lt,
                                     " layers are not a multiple of the student's ", ls));
  const int64_t k = lt / ls;
  std::map<std::string, Tensor> from;
  for (const auto& [name, t] : teacher.named_parameters()) from[name] = t;
  // The student's name of a teacher tensor: block i of the student reads block i * k.
  const std::string block = "transformer.h.";
  for (auto& [name, p] : student.named_parameters()) {
    std::string source = name;
    if (name.rfind(block, 0) == 0) {
      const size_t dot = name.find('.', block.size());
      const int64_t i = std::stoll(name.substr(block.size(), dot - block.size()));
      source = block + std::to_string(i * k) + name.substr(dot);
    }
    const auto it = from.find(source);
    if (it == from.end() || it->second.shape() != p.shape())
      throw ConfigError(detail::concat("key 'distill.init_from_teacher': the student's ", name, " ",
                                       shape_str(p.shape()), it == from.end() ? " has no teacher tensor " + source
                                                                              : " differs from the teacher's " + source +
                                                                                    " " + shape_str(it->second.shape()),
                                       " (the widths must match)"));
    autograd::NoGradGuard no_grad;
    p.copy_from(it->second);
  }
}

DistillTrainer::DistillTrainer(TrainerParts parts, std::shared_ptr<models::Gpt> teacher, TrainerOptions options)
    : Trainer(std::move(parts), std::move(options)), teacher_(std::move(teacher)), schedule_(build_schedule(config())) {
  STRAND_CHECK(teacher_ != nullptr, ValueError, "DistillTrainer: no teacher");
  STRAND_CHECK(dynamic_cast<models::Gpt*>(&model()) != nullptr, ValueError, "DistillTrainer: the student is not a gpt");
  const int64_t ls = student().transformer().n_layer(), lt = teacher_->transformer().n_layer();
  hidden_map_ = hidden_layer_pairs(config().distill.hidden_layers, ls, lt);
  if (matches_attention()) {
    student_attention_ = self_attention_layers(student());
    teacher_attention_ = self_attention_layers(*teacher_);
    STRAND_CHECK(static_cast<int64_t>(student_attention_.size()) == ls &&
                     static_cast<int64_t>(teacher_attention_.size()) == lt,
                 ValueError, "distill: a block without exactly one self-attention layer");
    attention_map_ = attention_layer_pairs(config().distill.attention_layers, ls, lt);
    for (const auto& [i, j] : attention_map_) check_attention_pair(i, j);
    // The student's captures live as long as the trainer: a checkpointed block reruns its
    // attention, and so calls the probe, in the backward, after micro_batch_loss has returned.
    for (const auto& [i, j] : attention_map_)
      if (!student_capture_.count(i)) {
        student_capture_[i] = std::make_unique<ProbeCapture>(student_attention_[static_cast<size_t>(i)]);
        student_capture_[i]->arm(false);
      }
  }
  if (!matches_hidden()) return;
  const int64_t cs = config().model.d_model, ct = teacher_->config().d_model;
  projection_ = Tensor::randn({cs, ct}, models::derive_seed(static_cast<uint64_t>(config().run.seed), {kProjectionSalt}),
                              DType::F32, 0.02);
  projection_.set_requires_grad(true);
  optim::AdamWOptions adam;
  adam.lr = config().train.lr;
  adam.beta1 = config().train.betas[0];
  adam.beta2 = config().train.betas[1];
  adam.weight_decay = config().train.weight_decay;
  projection_optimizer_ = std::make_unique<optim::AdamW>(std::vector<optim::AdamWParam>{{"projection", projection_, true}}, adam);
  if (!resumed_from().empty()) restore_projection(resumed_from());
}

void DistillTrainer::restore_projection(const std::string& path) {
  const io::CheckpointData ck = io::read_checkpoint(path);
  const auto found = ck.extra.find(kGroup);
  if (found == ck.extra.end()) {
    // A run that matched no hidden states before: the projection starts here.
    print_line("warning: " + path + " has no projection of the hidden-state term; it starts fresh");
    return;
  }
  const io::CheckpointGroup& g = found->second;
  const Tensor* w = g.find_tensor("projection");
  const Tensor* m = g.find_tensor("m/projection");
  const Tensor* v = g.find_tensor("v/projection");
  if (w == nullptr || m == nullptr || v == nullptr || w->shape() != projection_.shape())
    throw io::CheckpointError(detail::concat(path, ": group '", kGroup, "' lacks the projection ",
                                             shape_str(projection_.shape()), " or its moments"));
  {
    autograd::NoGradGuard no_grad;
    projection_.copy_from(*w);
  }
  optim::AdamWState state;
  state.step = g.get_int("step");
  state.names = {"projection"};
  state.m = {*m};
  state.v = {*v};
  projection_optimizer_->load_state(state);
}

void DistillTrainer::add_checkpoint_groups(io::CheckpointData& data) const {
  if (!projection_optimizer_) return;
  const optim::AdamWState state = projection_optimizer_->state();
  io::CheckpointGroup& g = data.extra[kGroup];
  g.tensors = {{"projection", projection_.detach()}, {"m/projection", state.m[0]}, {"v/projection", state.v[0]}};
  g.set_int("step", state.step);
}

DistillTrainer::~DistillTrainer() = default;

models::Gpt& DistillTrainer::student() { return static_cast<models::Gpt&>(model()); }

void DistillTrainer::check_attention_pair(int64_t student_layer, int64_t teacher_layer) const {
  const char* key = "key 'distill.attention_weight': ";
  const nn::MultiHeadAttention& sa = *student_attention_[static_cast<size_t>(student_layer)];
  const nn::MultiHeadAttention& ta = *teacher_attention_[static_cast<size_t>(teacher_layer)];
  if (sa.options().linear || ta.options().linear)
    throw ConfigError(detail::concat(key, "attention transfer needs softmax attention; model.attention.pattern "
                                          "linear has no attention matrix to transfer"));
  // Both distributions are taken under the student's mask: the teacher's must be the same one.
  if (!(teacher_->config().attention == config().model.attention))
    throw ConfigError(detail::concat(key, "attention transfer compares distributions over the same keys; the "
                                          "teacher's model.attention (", config().distill.teacher, ") differs from the student's"));
}

void DistillTrainer::begin_gradient_pass() { ce_sum_ = kd_sum_ = hid_sum_ = att_sum_ = 0.0; }

models::LossOutput DistillTrainer::micro_batch_loss(const data::Batch& batch) {
  const parallel::SequenceShard& shard = sharder().sequence_shard();
  const DistillConfig& d = config().distill;
  models::Gpt& s = student();
  const int64_t rows = batch.inputs.numel();
  const Tensor targets = ops::reshape(batch.targets, {rows});
  Tensor teacher_h;
  std::vector<Tensor> teacher_layers, student_layers;
  // The q and k of each mapped layer (one capture per layer, however many pairs read it).
  std::map<int64_t, std::unique_ptr<ProbeCapture>> teacher_att;
  for (const auto& [i, j] : attention_map_)
    if (!teacher_att.count(j)) teacher_att[j] = std::make_unique<ProbeCapture>(teacher_attention_[static_cast<size_t>(j)]);
  for (auto& [i, capture] : student_capture_) capture->arm(true);
  {
    // The teacher runs the same rows under the same sequence layout, recording nothing.
    autograd::NoGradGuard frozen;
    const Tensor h = teacher_->hidden(batch.inputs, shard, batch.step, matches_hidden() ? &teacher_layers : nullptr);
    teacher_h = ops::reshape(h, {rows, h.size(-1)});
  }
  const Tensor h = s.hidden(batch.inputs, shard, batch.step, matches_hidden() ? &student_layers : nullptr);
  const Tensor hs = ops::reshape(h, {rows, h.size(-1)});
  const int64_t chunk = kd_chunk_rows(config(), config().model.vocab_size);
  const ops::ChunkedLoss ce = ops::chunked_cross_entropy(hs, s.output_embedding(), targets, chunk,
                                                         data::kIgnoreIndex, ops::Reduction::Sum);
  const Tensor kd = ops::chunked_distill_loss(hs, s.output_embedding(), teacher_h, teacher_->output_embedding(),
                                              targets, d.temperature, chunk, data::kIgnoreIndex, ops::Reduction::Sum);
  ce_sum_ += ce.loss.item();
  kd_sum_ += kd.item();
  models::LossOutput out;
  out.tokens = models::count_scored(batch.targets, data::kIgnoreIndex);
  out.loss_sum = ops::add(ops::mul_scalar(ce.loss, d.alpha), ops::mul_scalar(kd, 1.0 - d.alpha));
  if (matches_hidden()) {
    // Per scored token, the mean over the teacher's channels of (h_s W - h_t)^2, summed over
    // tokens and mapped layers: the tokens the CE scores, so N normalises it too.
    std::vector<double> scored(static_cast<size_t>(rows));
    const std::vector<double> t = targets.to_vector();
    for (int64_t r = 0; r < rows; ++r) scored[static_cast<size_t>(r)] = t[static_cast<size_t>(r)] != data::kIgnoreIndex;
    const Tensor mask = Tensor::from_vector(scored, {rows, 1}, DType::F32);
    Tensor hidden_sum;
    for (const auto& [i, j] : hidden_map_) {
      const Tensor& sl = student_layers[static_cast<size_t>(i)];
      const Tensor si = ops::reshape(sl, {rows, sl.size(-1)});
      const Tensor& tl = teacher_layers[static_cast<size_t>(j)];
      const Tensor diff = ops::sub(ops::matmul(si, projection_), ops::reshape(tl, {rows, tl.size(-1)}));
      const Tensor term = ops::sum(ops::mul(ops::mean(ops::square(diff), {1}, true), mask));
      hidden_sum = hidden_sum.defined() ? ops::add(hidden_sum, term) : term;
    }
    hid_sum_ += hidden_sum.item();
    out.loss_sum = ops::add(out.loss_sum, ops::mul_scalar(hidden_sum, d.hidden_weight));
  }
  for (const auto& [i, j] : attention_map_) {
    // Summed over this rank's query rows and the heads' mean per row, so that N normalises it to
    // a mean over rows like the other terms (every row is scored in a language-model batch);
    // summed over the pairs like the hidden term over its layers.
    const ProbeCapture &sc = *student_capture_.at(i), &tc = *teacher_att.at(j);
    STRAND_CHECK(sc.q().defined() && tc.q().defined(), ValueError, "distill: attention layers ", i, " and ", j,
                 " handed over no q and k");
    const nn::MultiHeadAttention& sa = *student_attention_[static_cast<size_t>(i)];
    // Unequal head counts give one head-averaged KL per row already: no division by heads.
    const int64_t per_row_terms = sa.n_head() == teacher_attention_[static_cast<size_t>(j)]->n_head() ? sa.n_head() : 1;
    const Tensor att = parallel::attention_transfer_loss(sc.q(), sc.k(), tc.q(), tc.k(), sa.options().mask, shard,
                                                         0.0, 0.0, attention_sample(config(), batch.step, i));
    const Tensor per_row = ops::mul_scalar(att, 1.0 / static_cast<double>(per_row_terms));
    att_sum_ += per_row.item();
    out.loss_sum = ops::add(out.loss_sum, ops::mul_scalar(per_row, d.attention_weight));
  }
  for (auto& [i, capture] : student_capture_) capture->arm(false);
  out.predictions = ops::reshape(ce.predictions, batch.inputs.shape());
  return out;
}

void DistillTrainer::end_gradient_pass(const GradientPass& pass) {
  std::array<double, 4> sums{ce_sum_, kd_sum_, hid_sum_, att_sum_};
  parallel::Group* group = ranks().world > 1 ? ranks().group : nullptr;
  if (group != nullptr) group->all_reduce(std::span<double>(sums));
  const double n = static_cast<double>(pass.scored_tokens);
  step_ce_ = sums[0] / n;
  step_kd_ = sums[1] / n;
  step_hid_ = sums[2] / n;
  step_att_ = sums[3] / n;
  if (!projection_optimizer_) return;
  // The projection's gradient: summed over every rank and scaled by 1 / N as the model's are
  // (Note [Loss normalisation]), then its own AdamW step at this step's learning rate.
  Tensor grad = projection_.grad();
  if (grad.defined()) {
    if (group != nullptr) group->all_reduce(grad);
    const double scale = 1.0 / (n * backward_scale(config(), state().loss_scale));
    float* g = grad.data<float>();
    bool finite = true;
    for (int64_t i = 0; i < grad.numel(); ++i) {
      g[i] = static_cast<float>(g[i] * scale);
      finite = finite && std::isfinite(g[i]);
    }
    if (finite) {  // every rank holds the same sum, so all step or none
      projection_optimizer_->set_lr(schedule_.lr_at(state().step));
      projection_optimizer_->step();
    }
  }
  projection_optimizer_->zero_grad();
}

StepMetrics DistillTrainer::step_metrics(const StepReport& report, const LogInterval& interval,
                                         const std::optional<EvalResult>& eval) const {
  StepMetrics m = Trainer::step_metrics(report, interval, eval);
  m.terms = {{"ce", step_ce_}, {"kd", step_kd_}};
  if (projection_optimizer_) m.terms.push_back({"hidden", step_hid_});
  if (matches_attention()) m.terms.push_back({"att", step_att_});
  return m;
}

std::unique_ptr<DistillTrainer> make_distill_trainer(TrainerParts parts, TrainerOptions options) {
  check_distill_config(parts.config);
  std::shared_ptr<models::Gpt> teacher = load_teacher(parts.config);
  if (parts.config.distill.init_from_teacher) {
    auto* student = dynamic_cast<models::Gpt*>(parts.model.get());
    STRAND_CHECK(student != nullptr, ValueError, "distill: the student is not a gpt");
    init_student_from_teacher(*student, *teacher);
  }
  return std::make_unique<DistillTrainer>(std::move(parts), std::move(teacher), std::move(options));
}

}  // namespace strand::train
