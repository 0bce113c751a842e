// Checkpoint <-> training state: which dataset holds what, and the checks on the way back.
#include "framework/train/train_state.h"

#include "framework/io/atomic_file.h"
#include "framework/train/pruned_heads.h"

namespace strand::train {

namespace {

const std::string kMoment1 = "m/";
const std::string kMoment2 = "v/";

const Tensor& require_tensor(const io::CheckpointGroup& group, const std::string& name) {
  const Tensor* t = group.find_tensor(name);
  if (t == nullptr) {
    throw io::CheckpointError(detail::concat(group.origin.empty() ? "checkpoint" : group.origin,
                                             ": missing dataset '", name, "'"));
  }
  return *t;
}

}  // namespace

io::CheckpointData make_checkpoint(const Config& config, const nn::Module& model, const optim::AdamW& optimizer,
                                   const optim::LrSchedule& schedule, const LoopState& state) {
  io::CheckpointData data;
  data.config_yaml = to_yaml(config);
  if (is_pruned(config.model)) data.extra[kPruningGroup] = pruning_group(config.model);
  for (const auto& [name, param] : model.named_parameters()) {
    // The checkpoint holds fp32 values (the master copy for lower-precision parameters).
    data.model.tensors.emplace_back(name, param.dtype() == DType::F64 ? param : param.copy_as(DType::F32, Device::cpu()));
  }

  const optim::AdamWState opt = optimizer.state();
  for (size_t i = 0; i < opt.names.size(); ++i) {
    data.optimizer.tensors.emplace_back(kMoment1 + opt.names[i], opt.m[i].copy_as(opt.m[i].dtype(), Device::cpu()));
  }
  for (size_t i = 0; i < opt.names.size(); ++i) {
    data.optimizer.tensors.emplace_back(kMoment2 + opt.names[i], opt.v[i].copy_as(opt.v[i].dtype(), Device::cpu()));
  }
  data.optimizer.set_int("step", opt.step);

  io::CheckpointGroup& t = data.trainer;
  t.set_int("step", state.step);
  t.set_int("tokens_seen", state.tokens_seen);
  t.int64s["loader_position"] = state.loader.to_ints();
  t.uint64s["rng_seed"] = {state.seed};
  t.float64s["loss_scale"] = state.loss_scale;
  t.set_int("loss_scale_good_steps", state.loss_scale_good_steps);
  t.set_int("skipped_steps", state.skipped_steps);
  // The schedule, for inspection: a resumed run takes its schedule from the config.
  t.float64s["schedule/lr"] = schedule.lr;
  t.float64s["schedule/min_lr"] = schedule.min_lr;
  t.set_int("schedule/warmup_steps", schedule.warmup_steps);
  t.set_int("schedule/total_steps", schedule.total_steps);
  t.float64s["schedule/current_lr"] = optimizer.lr();
  return data;
}

LoopState restore_checkpoint(const io::CheckpointData& data, nn::Module& model, optim::AdamW& optimizer) {
  // Shapes and names first: nothing is copied unless every parameter fits.
  io::load_into(model.named_parameters(), data);

  optim::AdamWState opt;
  opt.step = data.optimizer.get_int("step");
  for (const auto& p : optimizer.params()) {
    opt.names.push_back(p.name);
    opt.m.push_back(require_tensor(data.optimizer, kMoment1 + p.name));
    opt.v.push_back(require_tensor(data.optimizer, kMoment2 + p.name));
  }
  optimizer.load_state(opt);

  const io::CheckpointGroup& t = data.trainer;
  LoopState state;
  state.step = t.get_int("step");
  state.tokens_seen = t.get_int("tokens_seen");
  state.loader = data::LoaderPosition::from_ints(t.get_ints("loader_position"));
  const auto& seed = t.get_uints("rng_seed");
  STRAND_CHECK(seed.size() == 1, io::CheckpointError, t.origin, ": 'rng_seed' holds ", seed.size(),
               " values, expected 1");
  state.seed = seed[0];
  state.loss_scale = t.get_float("loss_scale");
  state.loss_scale_good_steps = t.get_int("loss_scale_good_steps");
  state.skipped_steps = t.get_int("skipped_steps");
  return state;
}

}  // namespace strand::train
