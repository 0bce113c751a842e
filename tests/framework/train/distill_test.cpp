// strand distill in-process on a tiny GPT teacher and student: alpha 1 gives train's loss and
// alpha 0 the distillation term alone (zero for a student that is its teacher), the teacher stays
// frozen and out of the student's checkpoint and optimizer, exact resume, DistilBERT's
// initialisation, the loss terms in metrics.jsonl, and attention transfer (its term in the loss,
// zero for a student that is its teacher, trained down, head-averaged for a student of fewer
// heads, over a sample of the rows, bitwise the plain run's under gradient checkpointing and disk
// offload, and its refusals).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

#include "framework/io/checkpoint.h"
#include "data/loader.h"
#include "framework/core/allocator.h"
#include "framework/train/components.h"
#include "framework/train/distill.h"
#include "launch/run_compare.h"
#include "support/tiny_run.h"

namespace strand::train {
namespace {
using testing_support::expect_checkpoints_identical;

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

class Distill : public TinyRunTest {
 protected:
  // A 2-layer teacher trained for 20 steps (once per test), then a student config reading it.
  std::string teacher() {
    if (teacher_.empty()) {
      (void)train(tiny("teacher"));
      teacher_ = ckpt("teacher", 20);
    }
    return teacher_;
  }
  Config student(const std::string& run, std::vector<std::string> overrides = {}) {
    overrides.insert(overrides.begin(), {"distill.teacher=" + teacher(), "model.n_layer=1", "distill.temperature=2"});
    return tiny(run, overrides);
  }
  static std::unique_ptr<DistillTrainer> trainer(const Config& c, TrainerOptions o = quiet()) {
    return make_distill_trainer(build_trainer_parts(c, models::build_model(c), nullptr), std::move(o));
  }
  std::string teacher_;
};

std::vector<double> values_of(const nn::Module& m) {
  std::vector<double> v;
  for (const auto& [name, p] : m.named_parameters())
    for (double x : p.to_vector()) v.push_back(x);
  return v;
}

TEST_F(Distill, AlphaOneIsTheTrainLossAndAlphaZeroTheDistillationTerm) {
  // alpha 1: the student's cross-entropy, as `strand train` computes it for the same rows.
  const Config hard = student("hard", {"distill.alpha=1"});
  const Config hard_plain = student("hard_plain", {"distill.alpha=1"});
  const TrainResult plain = make_trainer(hard_plain, models::build_model(hard_plain), nullptr, quiet()).run();
  const TrainResult distilled = trainer(hard)->run();
  ASSERT_EQ(distilled.steps.size(), plain.steps.size());
  EXPECT_NEAR(distilled.steps[0].loss, plain.steps[0].loss, 1e-6 * plain.steps[0].loss);
  EXPECT_NEAR(distilled.steps.back().loss, plain.steps.back().loss, 1e-4 * plain.steps.back().loss);

  // alpha 0, a student that is its teacher (2 layers, no dropout): the soft targets are the
  // student's own distribution, so the first step's loss and gradient are zero.
  const Config same = student("same", {"distill.alpha=0", "model.n_layer=2", "model.dropout=0",
                                       "distill.init_from_teacher=true"});
  const std::unique_ptr<DistillTrainer> t = trainer(same);
  const StepReport first = t->train_step();
  EXPECT_NEAR(first.loss, 0.0, 1e-7);
  EXPECT_NEAR(first.grad_norm, 0.0, 1e-6);
  EXPECT_NEAR(t->last_ce(), plain.steps[0].loss, 1.0);  // the CE term is still reported
  EXPECT_GT(t->last_ce(), 1.0);

  // alpha 0.25 mixes the logged terms.
  const std::unique_ptr<DistillTrainer> mixed = trainer(student("mixed", {"distill.alpha=0.25"}));
  const StepReport step = mixed->train_step();
  EXPECT_GT(mixed->last_kd(), 0.0);
  EXPECT_NEAR(step.loss, 0.25 * mixed->last_ce() + 0.75 * mixed->last_kd(), 1e-6 * step.loss);  // float32 sums
}

TEST_F(Distill, TheTeacherIsFrozenAndNotInTheStudentCheckpoint) {
  const Config c = student("frozen");
  const std::shared_ptr<models::Gpt> t = load_teacher(c);
  const std::vector<double> before = values_of(*t);
  const std::unique_ptr<DistillTrainer> d = trainer(c);
  const TrainResult r = d->run();
  ASSERT_EQ(r.end_step, 20);
  // The teacher of the run is another load of the file; its weights must equal the file's.
  EXPECT_EQ(values_of(*load_teacher(c)), before);
  const io::CheckpointData ck = io::read_checkpoint(ckpt("frozen", 20));
  std::set<std::string> saved, student_names;
  for (const auto& [name, t] : ck.model.tensors) saved.insert(name);
  for (const auto& [name, p] : d->model().named_parameters()) student_names.insert(name);
  EXPECT_EQ(saved, student_names);
  EXPECT_EQ(student_names.count("transformer.h.1.attn.c_attn.weight"), 0u) << "the student has one layer";
  // Two AdamW moments per student parameter and the step count: nothing of the teacher.
  size_t moments = 0;
  for (const auto& [name, t] : ck.optimizer.tensors) moments += name.rfind("m/", 0) == 0 || name.rfind("v/", 0) == 0;
  EXPECT_EQ(moments, 2 * student_names.size());
  EXPECT_CONTAINS(ck.config_yaml, "teacher: \"" + teacher() + "\"");
}

TEST_F(Distill, ResumeMatchesTheStraightRunBitForBit) {
  const TrainResult straight = trainer(student("a"))->run();
  const TrainResult resumed = trainer(student("b", {"checkpoint.resume=" + ckpt("a", 10)}))->run();
  EXPECT_EQ(resumed.start_step, 10);
  ASSERT_EQ(resumed.steps.size(), 10u);
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(resumed.steps[i].loss, straight.steps[10 + i].loss) << "step " << resumed.steps[i].step;
    EXPECT_EQ(resumed.steps[i].grad_norm, straight.steps[10 + i].grad_norm) << "step " << resumed.steps[i].step;
  }
  expect_checkpoints_identical(ckpt("a", 20), ckpt("b", 20));
}

TEST_F(Distill, InitFromTeacherCopiesEveryKthLayer) {
  const Config c = student("init", {"distill.init_from_teacher=true"});
  const std::shared_ptr<models::Gpt> t = load_teacher(c);
  auto s = std::dynamic_pointer_cast<models::Gpt>(models::build_model(c));
  init_student_from_teacher(*s, *t);
  std::map<std::string, Tensor> from;
  for (const auto& [name, p] : t->named_parameters()) from[name] = p;
  for (const auto& [name, p] : s->named_parameters())
    EXPECT_EQ(p.to_vector(), from.at(name).to_vector()) << name;  // k = 2: student block 0 is teacher block 0
  // Another width cannot be copied: one line naming the key and the tensor.
  const Config narrow = student("narrow", {"distill.init_from_teacher=true", "model.d_model=8"});
  auto n = std::dynamic_pointer_cast<models::Gpt>(models::build_model(narrow));
  try {
    init_student_from_teacher(*n, *t);
    FAIL() << "a narrower student was initialised";
  } catch (const ConfigError& e) {
    EXPECT_CONTAINS(e.what(), "key 'distill.init_from_teacher': the student's transformer.wte.weight [32, 8]");
  }
  // Three teacher layers do not split over two student layers.
  const Config two = student("two", {"distill.init_from_teacher=true", "model.n_layer=3"});
  auto m = std::dynamic_pointer_cast<models::Gpt>(models::build_model(two));
  EXPECT_THROW(init_student_from_teacher(*m, *t), ConfigError);
}

TEST_F(Distill, EachTermIsInMetricsJsonl) {
  (void)trainer(student("m", {"train.steps=3"}))->run();
  std::ifstream in(metrics("m"));
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    ++lines;
    EXPECT_CONTAINS(line, "\"loss_ce\": ");
    EXPECT_CONTAINS(line, "\"loss_kd\": ");
  }
  EXPECT_EQ(lines, 3);
}

TEST_F(Distill, HiddenTermTrainsTheProjectionAndResumesExactly) {
  // A narrower student (d_model 8 against the teacher's 16): W is [8, 16].
  const std::vector<std::string> hidden = {"distill.hidden_weight=2", "model.d_model=8"};
  const std::unique_ptr<DistillTrainer> one = trainer(student("h1", hidden));
  EXPECT_EQ(one->hidden_map(), (std::vector<std::pair<int64_t, int64_t>>{{0, 1}}))
      << "one student layer reads the teacher's last";
  ASSERT_EQ(one->projection().shape(), (Shape{8, 16}));
  const std::vector<double> w0 = one->projection().to_vector();
  const StepReport first = one->train_step();
  EXPECT_GT(one->last_hidden(), 0.0);
  EXPECT_NEAR(first.loss, 0.5 * one->last_ce() + 0.5 * one->last_kd() + 2 * one->last_hidden(), 1e-6 * first.loss);
  EXPECT_NE(one->projection().to_vector(), w0) << "the projection is trained";
  // Without the term there is no projection and no hidden term in the log.
  EXPECT_FALSE(trainer(student("h0"))->projection().defined());

  // Saved in the student's checkpoint as its own group, beside (not in) the model's tensors,
  // and continued exactly by a resume.
  const TrainResult straight = trainer(student("a", hidden))->run();
  const io::CheckpointData ck = io::read_checkpoint(ckpt("a", 20));
  ASSERT_TRUE(ck.extra.count("distill"));
  ASSERT_NE(ck.extra.at("distill").find_tensor("projection"), nullptr);
  EXPECT_EQ(ck.extra.at("distill").find_tensor("projection")->shape(), (Shape{8, 16}));
  for (const auto& [name, t] : ck.model.tensors) EXPECT_EQ(name.find("projection"), std::string::npos) << name;
  const std::unique_ptr<DistillTrainer> b = trainer(student("b", {"distill.hidden_weight=2", "model.d_model=8",
                                                                   "checkpoint.resume=" + ckpt("a", 10)}));
  const TrainResult resumed = b->run();
  ASSERT_EQ(resumed.steps.size(), 10u);
  for (size_t i = 0; i < 10; ++i)
    EXPECT_EQ(resumed.steps[i].loss, straight.steps[10 + i].loss) << "step " << resumed.steps[i].step;
  expect_checkpoints_identical(ckpt("a", 20), ckpt("b", 20));
  EXPECT_EQ(io::read_checkpoint(ckpt("b", 20)).extra.at("distill").find_tensor("projection")->to_vector(),
            ck.extra.at("distill").find_tensor("projection")->to_vector());
}

TEST_F(Distill, AttentionTransferAddsItsTermToTheLoss) {
  // The term enters the loss at its weight, beside the CE and KD terms.
  const std::unique_ptr<DistillTrainer> one = trainer(student("att1", {"distill.attention_weight=3"}));
  const StepReport first = one->train_step();
  EXPECT_GT(one->last_attention(), 1e-6);  // small: the untrained student attends almost uniformly
  EXPECT_NEAR(first.loss, 0.5 * one->last_ce() + 0.5 * one->last_kd() + 3 * one->last_attention(), 1e-6 * first.loss);
  // Without the key: no term (and the loss of the run without it is unchanged by the code path).
  const std::unique_ptr<DistillTrainer> off = trainer(student("att0"));
  EXPECT_NEAR(off->train_step().loss, 0.5 * one->last_ce() + 0.5 * one->last_kd(), 1e-6 * first.loss);
  EXPECT_EQ(off->last_attention(), 0.0);

  // A student that is its teacher attends as it does: the term is zero.
  const std::unique_ptr<DistillTrainer> same = trainer(student(
      "att_same", {"distill.attention_weight=1", "model.n_layer=2", "model.dropout=0", "distill.init_from_teacher=true"}));
  (void)same->train_step();
  EXPECT_NEAR(same->last_attention(), 0.0, 1e-7);

  // Its gradient reaches the student: weighted heavily, the term falls over a short run, and it is
  // in every line of metrics.jsonl.
  const TrainResult r = trainer(student("att_run", {"distill.attention_weight=20", "distill.alpha=1"}))->run();
  ASSERT_EQ(r.steps.size(), 20u);
  std::ifstream in(metrics("att_run"));
  std::string line;
  std::vector<double> att;
  while (std::getline(in, line)) {
    const size_t at = line.find("\"loss_att\": ");
    ASSERT_NE(at, std::string::npos) << line;
    att.push_back(std::stod(line.substr(at + 12)));
  }
  ASSERT_EQ(att.size(), 20u);
  EXPECT_LT(att.back(), 0.5 * att.front()) << att.front() << " -> " << att.back();
}

TEST_F(Distill, AStudentWithFewerHeadsMatchesTheTeachersHeadAveragedAttention) {
  // The teacher has 2 heads, this student 1: the term compares the head-averaged distributions,
  // enters the loss at its weight (one KL per row, not divided by heads) and trains down.
  const std::unique_ptr<DistillTrainer> one = trainer(student("avg1", {"distill.attention_weight=3", "model.n_head=1"}));
  const StepReport first = one->train_step();
  EXPECT_GT(one->last_attention(), 1e-6);
  EXPECT_NEAR(first.loss, 0.5 * one->last_ce() + 0.5 * one->last_kd() + 3 * one->last_attention(), 1e-6 * first.loss);
  const TrainResult r =
      trainer(student("avg_run", {"distill.attention_weight=20", "distill.alpha=1", "model.n_head=1"}))->run();
  ASSERT_EQ(r.steps.size(), 20u);
  std::ifstream in(metrics("avg_run"));
  std::vector<double> att;
  for (std::string line; std::getline(in, line);) {
    const size_t at = line.find("\"loss_att\": ");
    ASSERT_NE(at, std::string::npos) << line;
    att.push_back(std::stod(line.substr(at + 12)));
  }
  ASSERT_EQ(att.size(), 20u);
  EXPECT_LT(att.back(), 0.5 * att.front()) << att.front() << " -> " << att.back();
}

TEST_F(Distill, AttentionRowsScoresTheDrawnRowsAndEveryRowIsTheAllRowsTerm) {
  // Every row of the 32 drawn: the all-rows term and step, bit for bit.
  const std::unique_ptr<DistillTrainer> all = trainer(student("ar0", {"distill.attention_weight=1"}));
  const StepReport a = all->train_step();
  const std::unique_ptr<DistillTrainer> every =
      trainer(student("ar32", {"distill.attention_weight=1", "distill.attention_rows=32"}));
  const StepReport e = every->train_step();
  EXPECT_EQ(every->last_attention(), all->last_attention());
  EXPECT_EQ(e.loss, a.loss);
  EXPECT_EQ(values_of(every->model()), values_of(all->model()));
  // 8 of them: an estimate of the same term (seq_len / 8 times the drawn rows' sum), not equal to
  // it, in the loss at its weight; head-averaged pairs sample alike.
  for (const std::string heads : {"2", "1"}) {
    const std::unique_ptr<DistillTrainer> full =
        trainer(student("arf" + heads, {"distill.attention_weight=1", "model.n_head=" + heads}));
    (void)full->train_step();
    const std::unique_ptr<DistillTrainer> some = trainer(
        student("ar8_" + heads, {"distill.attention_weight=1", "distill.attention_rows=8", "model.n_head=" + heads}));
    const StepReport s = some->train_step();
    EXPECT_GT(some->last_attention(), 0.0) << heads;
    EXPECT_NE(some->last_attention(), full->last_attention()) << heads;
    EXPECT_NEAR(some->last_attention(), full->last_attention(), 0.5 * full->last_attention()) << heads;
    EXPECT_NEAR(s.loss, 0.5 * some->last_ce() + 0.5 * some->last_kd() + some->last_attention(), 1e-6 * s.loss);
  }
}

TEST_F(Distill, HiddenLayersPairsTheNamedLayers) {
  using Pairs = std::vector<std::pair<int64_t, int64_t>>;
  EXPECT_EQ(hidden_layer_pairs("", 3, 6), (Pairs{{0, 1}, {1, 3}, {2, 5}})) << "uniform: the last of each share";
  EXPECT_EQ(hidden_layer_pairs("", 2, 3), (Pairs{{0, 0}, {1, 2}}));
  EXPECT_EQ(hidden_layer_pairs(" 0:0 , 1:4", 2, 6), (Pairs{{0, 0}, {1, 4}}));
  for (const char* bad : {"0:6", "2:0", "0-1", "0:1,", "x"}) {
    try {
      (void)hidden_layer_pairs(bad, 2, 6);
      FAIL() << bad << " accepted";
    } catch (const ConfigError& e) {
      EXPECT_CONTAINS(e.what(), "key 'distill.hidden_layers': ");
    }
  }
  // One student layer against the teacher's two: the default reads the teacher's last layer;
  // naming the first reads another target; naming both adds the second pair's term to the first.
  const std::vector<std::string> hidden = {"distill.hidden_weight=1", "model.d_model=8"};
  auto first_term = [&](const std::string& run, const std::string& layers) {
    std::vector<std::string> o = hidden;
    if (!layers.empty()) o.push_back("distill.hidden_layers=" + layers);
    const std::unique_ptr<DistillTrainer> t = trainer(student(run, o));
    (void)t->train_step();
    return std::make_pair(t->hidden_map(), t->last_hidden());
  };
  const auto [default_map, last] = first_term("hl0", "");
  const auto [first_map, first] = first_term("hl1", "0:0");
  const auto [both_map, both] = first_term("hl2", "0:0, 0:1");
  EXPECT_EQ(default_map, (Pairs{{0, 1}}));
  EXPECT_EQ(first_map, (Pairs{{0, 0}}));
  EXPECT_EQ(both_map, (Pairs{{0, 0}, {0, 1}}));
  EXPECT_GT(std::abs(first - last), 1e-6 * last) << "the named layer is another target";
  EXPECT_NEAR(both, first + last, 1e-6 * both);
}

TEST_F(Distill, AttentionLayersPairsTheNamedLayers) {
  EXPECT_EQ(attention_layer_pairs("", 2, 4), (std::vector<std::pair<int64_t, int64_t>>{{1, 3}})) << "MiniLM: last, last";
  EXPECT_EQ(attention_layer_pairs("0:1, 1 : 3", 2, 4), (std::vector<std::pair<int64_t, int64_t>>{{0, 1}, {1, 3}}));
  for (const char* bad : {"0:4", "2:0", "0-1", "0:1,", "0:1:2", "a:b"}) {
    try {
      (void)attention_layer_pairs(bad, 2, 4);
      FAIL() << bad << " accepted";
    } catch (const ConfigError& e) {
      EXPECT_CONTAINS(e.what(), "key 'distill.attention_layers': ");
    }
  }
  // The default pairs the last layers: the student's 0 with the teacher's 1.
  const std::unique_ptr<DistillTrainer> last = trainer(student("al0", {"distill.attention_weight=1"}));
  EXPECT_EQ(last->attention_map(), (std::vector<std::pair<int64_t, int64_t>>{{0, 1}}));
  (void)last->train_step();
  // Pairing the student's layer with both teacher layers adds the second pair's term to the first.
  const std::unique_ptr<DistillTrainer> first = trainer(student("al1", {"distill.attention_weight=1",
                                                                        "distill.attention_layers=0:0"}));
  (void)first->train_step();
  const std::unique_ptr<DistillTrainer> both = trainer(student("al2", {"distill.attention_weight=1",
                                                                       "distill.attention_layers=0:0, 0:1"}));
  EXPECT_EQ(both->attention_map(), (std::vector<std::pair<int64_t, int64_t>>{{0, 0}, {0, 1}}));
  (void)both->train_step();
  EXPECT_NE(first->last_attention(), last->last_attention());
  EXPECT_NEAR(both->last_attention(), first->last_attention() + last->last_attention(), 1e-6 * both->last_attention());
}

TEST_F(Distill, AttentionTransferRefusesAnotherPattern) {
  try {
    (void)trainer(student("win", {"distill.attention_weight=1", "model.attention.pattern=sliding",
                                  "model.attention.window=4"}));
    FAIL() << "a teacher with another attention pattern accepted";
  } catch (const ConfigError& e) {
    EXPECT_CONTAINS(e.what(), "model.attention");
  }
}

// What a gradient pass and a few steps leave: the pass's and each step's loss and attention
// term, the student's gradients of the pass, and its parameters after the steps.
struct Trace {
  std::vector<double> losses, att;
  std::vector<std::vector<double>> grads;
  std::vector<double> params;
};

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

TEST_F(Distill, AttentionTransferUnderCheckpointingIsThePlainRunBitForBit) {
  // Three checkpointed student blocks, the first and last paired (dropout and the hidden term on):
  // under full checkpointing the blocks run unrecorded and rerun in the backward, where the
  // term's gradient enters through the rerun's q and k, and the hidden term's through the next
  // block's input (autograd::expose); with disk offload the full blocks are half-blocks. Every
  // loss, term and gradient is the plain run's, bit for bit.
  auto trace = [&](const std::string& run, std::vector<std::string> extra) {
    std::vector<std::string> o = {"distill.attention_weight=2", "model.n_layer=3", "distill.attention_layers=0:0, 2:1",
                                  "distill.hidden_weight=0.5",
                                  "memory.offload_dir=" + (root_ / run / "spill").string(),
                                  "memory.offload_min_bytes=1024"};
    o.insert(o.end(), extra.begin(), extra.end());
    const Config c = student(run, o);
    const std::unique_ptr<DistillTrainer> t = trainer(c);
    Trace r;
    // One gradient pass (two micro-batches) with no step, then three steps.
    const std::unique_ptr<data::Loader> rows = data::make_loader(data_spec_of(c, 0, 1), data::Split::train);
    r.losses.push_back(t->forward_backward(*rows, 2).loss_sum);
    r.att.push_back(t->last_attention());
    for (const auto& [name, p] : t->model().named_parameters()) {
      EXPECT_TRUE(p.grad().defined()) << run << ": " << name;
      if (p.grad().defined()) r.grads.push_back(p.grad().to_vector());
    }
    for (int step = 0; step < 3; ++step) {
      r.losses.push_back(t->train_step().loss);
      r.att.push_back(t->last_attention());
    }
    r.params = values_of(t->model());
    return r;
  };
  // The last case: a one-head student of the two-head teacher (head-averaged distributions) scoring
  // a sample of its query rows, whose draw the rerun must not change.
  for (const char* precision : {"fp32", "fp16", "averaged_sampled"}) {
    // fp16: the dynamic loss scale (2^16) multiplies every gradient, the term's included.
    const bool averaged = std::string(precision) == "averaged_sampled";
    const std::string p = std::string("precision.compute=") + (averaged ? "fp32" : precision);
    std::vector<std::string> base = {p};
    if (averaged) base.insert(base.end(), {"model.n_head=1", "distill.attention_rows=5"});
    const Trace plain = trace(std::string("plain_") + precision, base);
    EXPECT_GT(plain.att.front(), 1e-6);
    std::vector<std::vector<std::string>> modes = {{"memory.checkpointing=full"},
                                                   {"memory.checkpointing=selective"},
                                                   {"memory.checkpointing=full", "memory.checkpoint_layers=1"}};
    if (std::string(precision) != "fp16") {
      modes.push_back({"memory.checkpointing=full", "memory.offload=disk"});
      modes.push_back({"memory.checkpointing=selective", "memory.offload=disk"});
    }
    for (size_t m = 0; m < modes.size(); ++m) {
      std::vector<std::string> with = modes[m];
      with.insert(with.end(), base.begin(), base.end());
      std::string label = precision;
      for (const std::string& k : modes[m]) label += " " + k;
      const Trace got = trace(std::string("mode") + std::to_string(m) + "_" + precision, with);
      EXPECT_TRUE(same_bits(got.losses, plain.losses)) << label << ": loss " << got.losses.front() << " vs " << plain.losses.front();
      EXPECT_TRUE(same_bits(got.att, plain.att)) << label << ": att " << got.att.front() << " vs " << plain.att.front();
      ASSERT_EQ(got.grads.size(), plain.grads.size()) << label;
      for (size_t i = 0; i < plain.grads.size(); ++i)
        EXPECT_TRUE(same_bits(got.grads[i], plain.grads[i])) << label << ": gradient " << i << " differs";
      EXPECT_TRUE(same_bits(got.params, plain.params)) << label << ": the parameters after 3 steps differ";
    }
  }
}

TEST_F(Distill, AttentionTransferKeepsFullCheckpointingsMemorySaving) {
  // Eight student blocks of d_model 64 over 256 tokens, the last paired with a fresh teacher of
  // the same shape: under full checkpointing the term adds its dq and dk of the one mapped layer
  // (2 C floats a token) to the backward, not a block's activations, so the peak stays far
  // below the plain run's.
  const std::vector<std::string> shape = {"model.n_layer=8", "model.d_model=64", "model.n_head=4", "model.max_seq_len=256",
                                    "data.seq_len=256", "data.batch_size=1", "model.dropout=0"};
  const Config tc = tiny("fresh_teacher", shape);
  io::CheckpointData data;
  data.config_yaml = to_yaml(tc);
  for (const auto& [name, p] : models::build_model(tc)->named_parameters()) data.model.tensors.emplace_back(name, p);
  const std::string teacher_path = (root_ / "fresh_teacher.h5").string();
  io::write_checkpoint(teacher_path, data);
  auto peak = [&](const std::string& run, std::vector<std::string> extra) {
    std::vector<std::string> o = shape;
    o.push_back("distill.teacher=" + teacher_path);
    o.insert(o.end(), extra.begin(), extra.end());
    const Config c = tiny(run, o);
    const std::unique_ptr<DistillTrainer> t = trainer(c);
    const std::unique_ptr<data::Loader> rows = data::make_loader(data_spec_of(c, 0, 1), data::Split::train);
    const int64_t before = memory::stats(Device::cpu()).current_bytes;
    memory::reset_peak(Device::cpu());
    (void)t->forward_backward(*rows, 1);
    return memory::stats(Device::cpu()).peak_bytes - before;
  };
  const int64_t none = peak("p_none", {"distill.attention_weight=1"});
  const int64_t full = peak("p_full", {"distill.attention_weight=1", "memory.checkpointing=full"});
  const int64_t full_without = peak("p_full0", {"memory.checkpointing=full"});
  std::printf("peak tensor bytes of a distillation pass: none %lld, full %lld, full without the term %lld\n",
              static_cast<long long>(none), static_cast<long long>(full), static_cast<long long>(full_without));
  EXPECT_LT(full, none / 2);
  EXPECT_LE(full, full_without + 2 * 64 * 256 * static_cast<int64_t>(sizeof(float)));  // at most dq and dk more
}

TEST_F(Distill, TheTeacherNeverCheckpoints) {
  // A teacher trained with full checkpointing records nothing as a teacher: its blocks run
  // plainly (no rerun, no recipes), whatever its own memory.checkpointing said.
  (void)train(tiny("teacher_ck", {"memory.checkpointing=full", "train.steps=10"}));
  const Config own = tiny("own", {"memory.checkpointing=full"});
  const auto built = std::dynamic_pointer_cast<models::Gpt>(models::build_model(own));
  ASSERT_NE(built, nullptr);
  EXPECT_EQ(built->transformer().checkpointing(), Checkpointing::Full);  // as its run built it
  const Config c = tiny("student_ck", {"distill.teacher=" + ckpt("teacher_ck", 10), "memory.checkpointing=full"});
  EXPECT_EQ(load_teacher(c)->transformer().checkpointing(), Checkpointing::None);
}

TEST_F(Distill, RefusesAConfigWithoutATeacherOrOfAnotherVocabulary) {
  EXPECT_THROW(check_distill_config(tiny("none")), ConfigError);
  const Config other = student("v", {"model.vocab_size=64"});
  try {
    (void)load_teacher(other);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_CONTAINS(e.what(), "key 'distill.teacher': ");
    EXPECT_CONTAINS(e.what(), "model.vocab_size 32, the student 64");
  }
}

}  // namespace
}  // namespace strand::train
