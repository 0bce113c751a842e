// Knowledge distillation (`strand distill`): a Trainer whose micro-batch loss adds a frozen
// teacher's soft targets to the student's cross-entropy (Hinton et al., 2015) and, with
// distill.hidden_weight, TinyBERT's hidden-state loss:
//   loss = alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))
//          + hidden_weight * sum over mapped layers (i, j) of mean_c (h_s,i W - h_t,j)^2
//          + attention_weight * sum over layer pairs of the mean over heads of KL(A_t || A_s)
//            (MiniLM attention transfer; the last layers unless distill.attention_layers),
// each term summed over the scored tokens as the CE is (Note [Loss normalisation], trainer.cpp).
// W [student width, teacher width] is learned: it has its own AdamW (the run's lr schedule,
// betas and weight decay), its gradient is summed over every rank like the model's, and it is
// saved in the student's checkpoints as the extra group "distill" (which eval, generate and
// export do not read), so a resume continues it exactly.
// Everything else (steps, evaluation of the student, logging, checkpoints, exact resume, dp x sp)
// is the Trainer's (Note [Trainer seams], trainer.h).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "framework/nn/attention.h"
#include "framework/train/trainer.h"
#include "models/gpt/gpt.h"

namespace strand::train {

// The teacher of distill.teacher: the model its checkpoint's own config describes, built by
// models::build_model and loaded with io::load_into (the path `strand eval` and `strand generate`
// use), in evaluation mode. It must be a gpt with the student's vocabulary (a ConfigError naming
// distill.teacher otherwise).
std::shared_ptr<models::Gpt> load_teacher(const Config& student);

// DistilBERT's initialisation: student block i <- teacher block i * k (k = teacher layers /
// student layers), and the embeddings, final norm and LM head, when every one of those tensors
// has the same shape in both. A ConfigError naming distill.init_from_teacher otherwise.
void init_student_from_teacher(models::Gpt& student, const models::Gpt& teacher);

// Checks the config's distill section for a distillation run (distill.teacher set) and that the
// student is a gpt; a ConfigError naming the key otherwise.
void check_distill_config(const Config& config);

// The (student layer, teacher layer) pairs distill.attention_layers names ("s:t, s:t", 0-based),
// or the last layers of both when it is empty (MiniLM); a ConfigError naming the key for text
// that is not such pairs or a layer outside a model.
std::vector<std::pair<int64_t, int64_t>> attention_layer_pairs(const std::string& text, int64_t student_layers,
                                                               int64_t teacher_layers);
// The pairs distill.hidden_layers names, or the uniform map when it is empty: student layer i
// with the last teacher layer of its share, floor((i + 1) L_t / L_s) - 1 (TinyBERT).
std::vector<std::pair<int64_t, int64_t>> hidden_layer_pairs(const std::string& text, int64_t student_layers,
                                                            int64_t teacher_layers);

class ProbeCapture;  // distill.cpp: the q and k an attention layer's probe hands over

class DistillTrainer : public Trainer {
 public:
  // `parts.model` is the student (a gpt); the teacher is in neither the optimizer, the gradient
  // sum nor the checkpoints.
  DistillTrainer(TrainerParts parts, std::shared_ptr<models::Gpt> teacher, TrainerOptions options = {});
  ~DistillTrainer() override;

  // The terms of the last step, each a mean over its scored tokens (every rank alike).
  double last_ce() const { return step_ce_; }
  double last_kd() const { return step_kd_; }
  double last_hidden() const { return step_hid_; }
  double last_attention() const { return step_att_; }
  // The (student layer, teacher layer) pairs of the hidden-state term (distill.hidden_layers;
  // uniform by default).
  const std::vector<std::pair<int64_t, int64_t>>& hidden_map() const { return hidden_map_; }
  const Tensor& projection() const { return projection_; }
  // The (student layer, teacher layer) pairs of the attention term; empty without it.
  const std::vector<std::pair<int64_t, int64_t>>& attention_map() const { return attention_map_; }

 protected:
  models::LossOutput micro_batch_loss(const data::Batch& batch) override;
  void begin_gradient_pass() override;
  void end_gradient_pass(const GradientPass& pass) override;
  StepMetrics step_metrics(const StepReport& report, const LogInterval& interval,
                           const std::optional<EvalResult>& eval) const override;
  void add_checkpoint_groups(io::CheckpointData& data) const override;

 private:
  bool matches_hidden() const { return config().distill.hidden_weight > 0; }
  bool matches_attention() const { return config().distill.attention_weight > 0; }
  void check_attention_pair(int64_t student_layer, int64_t teacher_layer) const;
  void restore_projection(const std::string& path);
  models::Gpt& student();
  std::shared_ptr<models::Gpt> teacher_;
  std::vector<std::pair<int64_t, int64_t>> hidden_map_;
  Tensor projection_;  // [student d_model, teacher d_model]; with hidden_weight > 0 only
  std::unique_ptr<optim::AdamW> projection_optimizer_;
  optim::LrSchedule schedule_;
  // The self-attention layers of both models, block 0 first (attention transfer reads the q and
  // k of the mapped ones through the attention probe); empty without attention_weight.
  std::vector<nn::MultiHeadAttention*> student_attention_, teacher_attention_;
  std::vector<std::pair<int64_t, int64_t>> attention_map_;
  // The student's probes on the mapped layers, installed for the trainer's life (distill.cpp).
  std::map<int64_t, std::unique_ptr<ProbeCapture>> student_capture_;
  double ce_sum_ = 0.0, kd_sum_ = 0.0, hid_sum_ = 0.0, att_sum_ = 0.0;  // this rank's sums of the current gradient pass
  double step_ce_ = 0.0, step_kd_ = 0.0, step_hid_ = 0.0, step_att_ = 0.0;
};

// The trainer of `strand distill` over parts built from the config (build_trainer_parts): the
// teacher loaded (load_teacher), the student initialised from it when
// distill.init_from_teacher (a resumed run then reads its student from the checkpoint).
std::unique_ptr<DistillTrainer> make_distill_trainer(TrainerParts parts, TrainerOptions options = {});

}  // namespace strand::train
