// The factories that turn a config into the parts of a training run.
#include "framework/train/components.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string_view>

#include <algorithm>
#include <array>
#include <iomanip>
#include <optional>
#include <span>
#include <sstream>
#include <utility>
#include <vector>

#include "framework/core/error.h"
#include "framework/train/placement.h"
#include "parallel/comm/backends.h"
#include "parallel/comm/group.h"
#include "parallel/grad_sync.h"
#include "parallel/watchdog.h"

namespace strand::train {
namespace fs = std::filesystem;

int ulysses_degree_of(const Config& config) {
  const ParallelConfig& par = config.parallel;
  switch (par.sp_mode) {
    case SpMode::Ring: return 1;
    case SpMode::Ulysses: return static_cast<int>(par.sp);
    case SpMode::Hybrid: return static_cast<int>(par.ulysses_degree);
  }
  return 1;
}

parallel::SequenceLayout sequence_layout_of(const Config& config) {
  const ParallelConfig& par = config.parallel;
  const SeqLayout resolved = resolved_layout(config);
  const parallel::LayoutKind kind =
      resolved == SeqLayout::Zigzag ? parallel::LayoutKind::Zigzag : parallel::LayoutKind::Contiguous;
  const int sp = static_cast<int>(par.sp), u = ulysses_degree_of(config);
  try {
    if (par.sp_mode == SpMode::Hybrid) return parallel::SequenceLayout::hybrid(kind, config.data.seq_len, sp / u, u);
    return parallel::SequenceLayout::make(kind, config.data.seq_len, sp);
  } catch (const ValueError& e) {
    throw ConfigError(detail::concat("key 'data.seq_len': ", config.data.seq_len, " does not split under parallel.layout ",
                                     name_of(resolved), ", sp_mode ", name_of(par.sp_mode), ", sp ", sp,
                                     par.sp_mode == SpMode::Hybrid ? detail::concat(", ulysses_degree ", u) : "",
                                     ": ", e.what()));
  }
}

BatchSharder build_batch_sharder(const Config& config, parallel::Group& world, int64_t dp) {
  const int64_t sp = config.parallel.sp;
  std::optional<parallel::SequenceLayout> layout;
  if (sp > 1) layout = sequence_layout_of(config);
  auto grid = std::make_unique<parallel::ProcessGrid>(world, static_cast<int>(dp), static_cast<int>(sp),
                                                      ulysses_degree_of(config));
  return BatchSharder(std::move(grid), std::move(layout));
}

data::DataSpec data_spec_of(const Config& config, int64_t dp_rank, int64_t dp_size, const std::string& val_override) {
  data::DataSpec spec;
  spec.format = config.data.format;
  if (!config.data.train.empty()) spec.train = {config.data.train};
  if (!val_override.empty()) {
    spec.val = {val_override};
  } else if (!config.data.val.empty()) {
    spec.val = {config.data.val};
  }
  spec.task = config.data.task;
  spec.seq_len = config.data.seq_len;
  spec.batch_size = config.data.batch_size;
  spec.vocab_size = config.model.vocab_size;
  spec.seed = static_cast<uint64_t>(config.run.seed);
  spec.shuffle = config.data.shuffle;
  spec.dp_rank = dp_rank;
  spec.dp_size = dp_size;
  return spec;
}

void check_job_size(const Config& config, int world) {
  const ParallelConfig& par = config.parallel;
  // The --set that makes the config fit the job as it was started: keep sp when it divides the
  // ranks, else put every rank on the sequence (one process: sp 1).
  const std::string fix = world % par.sp == 0
                              ? detail::concat("--set parallel.dp=", world / par.sp)
                              : detail::concat(par.dp == 1 ? "" : "--set parallel.dp=1 ", "--set parallel.sp=", world);
  STRAND_CHECK(par.dp * par.sp == world, train::ConfigError, "key 'parallel.dp': dp x sp = ", par.dp, " x ", par.sp,
               " = ", par.dp * par.sp, " ranks, but the job has ", world, " (run with mpirun -np ", par.dp * par.sp,
               ", or ", fix, ")");
  // NCCL moves device buffers: with a model on the cpu it would only add two copies per message.
  // Refused rather than silently ignored.
  STRAND_CHECK(par.backend == CommBackend::Mpi || config.run.device == config::RunDevice::Cuda, train::ConfigError,
               "key 'parallel.backend': nccl needs GPU ranks (run.device: cuda), and this run trains on the cpu",
               parallel::built_with_nccl() ? "" : " (this build has no NCCL either)", "; use mpi");
  STRAND_CHECK(par.backend == CommBackend::Mpi || parallel::built_with_nccl(), train::ConfigError,
               "key 'parallel.backend': nccl, but this build has no NCCL; use mpi");
}

TrainingRanks build_training_ranks(const Config& config, parallel::Group* group) {
  TrainingRanks ranks;
  ranks.group = group;
  if (group != nullptr) {
    ranks.rank = group->rank();
    ranks.world = group->size();
  }
  const ParallelConfig& par = config.parallel;
  check_job_size(config, ranks.world);
  check_device(config);
  if (group != nullptr) {
    ranks.sharder = build_batch_sharder(config, *group, par.dp);
    ranks.dp_rank = ranks.sharder.grid().dp_rank();
  } else {
    ranks.local_group = parallel::make_local_group();
  }
  return ranks;
}

std::unique_ptr<optim::AdamW> build_optimizer(const Config& config, const models::Model& model) {
  std::vector<optim::AdamWParam> params;
  for (const auto& [name, param] : model.named_parameters()) params.push_back({name, param, model.decays(name)});
  optim::AdamWOptions adam;
  adam.lr = config.train.lr;
  adam.beta1 = config.train.betas[0];
  adam.beta2 = config.train.betas[1];
  adam.weight_decay = config.train.weight_decay;
  return std::make_unique<optim::AdamW>(std::move(params), adam);
}

optim::LrSchedule build_schedule(const Config& config) {
  const TrainConfig& tc = config.train;
  return optim::LrSchedule::make(tc.lr, tc.min_lr, tc.warmup_steps, tc.steps, tc.schedule);
}

std::unique_ptr<parallel::GradSync> build_grad_sync(const Config& config, const models::Model& model,
                                                    parallel::Group& group) {
  std::vector<Tensor> params;
  for (const auto& named : model.named_parameters()) params.push_back(named.second);
  const DType wire = config.parallel.grad_dtype == GradDtype::Bf16 ? DType::BF16 : DType::F32;
  return std::make_unique<parallel::GradSync>(std::move(params), group, config.parallel.bucket_mb << 20, wire);
}

TrainerParts::TrainerParts() = default;
TrainerParts::TrainerParts(TrainerParts&&) noexcept = default;
TrainerParts& TrainerParts::operator=(TrainerParts&&) noexcept = default;
TrainerParts::~TrainerParts() = default;

namespace {

// FNV-1a of the text, as the int64 an all-reduce carries.
int64_t text_hash(const std::string& text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const unsigned char c : text) h = (h ^ c) * 0x100000001b3ull;
  return static_cast<int64_t>(h >> 1);
}

// The dotted key of each line of to_yaml's text ("train.lr" for "  lr: 0.001" under "train:").
std::vector<std::pair<std::string, std::string>> keyed_lines(const std::string& yaml) {
  std::vector<std::pair<std::string, std::string>> out;
  std::vector<std::string> sections;  // by indentation level (two spaces each)
  std::istringstream in(yaml);
  for (std::string line; std::getline(in, line);) {
    const size_t indent = line.find_first_not_of(' ');
    const size_t colon = line.find(':');
    if (indent == std::string::npos || colon == std::string::npos) continue;
    const size_t level = indent / 2;
    sections.resize(level);
    const std::string name = line.substr(indent, colon - indent);
    std::string key;
    for (const std::string& s : sections) key += s + ".";
    out.emplace_back(key + name, line.substr(colon + 1));
    sections.push_back(name);
  }
  return out;
}

}  // namespace

MemoryEstimate estimate_memory(const Config& config, bool training) {
  const ModelConfig& m = config.model;
  const double c = static_cast<double>(m.d_model), f = static_cast<double>(m.d_ff);
  const double kv = c / static_cast<double>(m.n_head) * static_cast<double>(m.n_kv_head);
  const double mlp = (m.activation == Activation::SwiGLU ? 3.0 : 2.0) * c * f;
  const double per_layer = 2.0 * c * c + 2.0 * c * kv + mlp;  // q, o; k, v; the MLP
  MemoryEstimate e;
  e.parameters = static_cast<double>(m.vocab_size) * c + static_cast<double>(m.n_layer) * per_layer;
  // encdec: a decoder stack as deep again, each layer with cross-attention besides.
  if (m.arch == Arch::EncDec) e.parameters += static_cast<double>(m.n_layer) * (2.0 * per_layer - mlp);
  if (m.pos == PosEncoding::Learned) e.parameters += static_cast<double>(m.max_seq_len) * c;
  e.state_bytes = e.parameters * 4.0 * (training ? 4.0 : 1.0);
  const double rows = static_cast<double>(config.data.batch_size) * static_cast<double>(config.data.seq_len) /
                      static_cast<double>(config.parallel.sp);
  e.activation_bytes = training ? static_cast<double>(m.n_layer) * rows * (c + f) * 4.0 : rows * (c + f) * 4.0;
  if (training && config.memory.checkpointing == strand::config::Checkpointing::Full) {
    // A checkpointed block keeps only its [rows, C] input; one block's rerun is held at a time.
    const int64_t k = config.memory.checkpoint_layers == 0 ? m.n_layer : std::min(config.memory.checkpoint_layers, m.n_layer);
    e.activation_bytes = (static_cast<double>(m.n_layer - k) + 1.0) * rows * (c + f) * 4.0 + static_cast<double>(k) * rows * c * 4.0;
  }
  return e;
}

double machine_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 0.0;
}

void check_memory_fits(const Config& config, bool training, double available, int ranks_here) {
  if (available <= 0) return;
  const MemoryEstimate e = estimate_memory(config, training);
  if (e.total() * ranks_here <= available) return;
  const auto gib = [](double bytes) { return detail::concat(std::fixed, std::setprecision(1), bytes / 1073741824.0, " GiB"); };
  const bool params = e.state_bytes >= e.activation_bytes;
  const std::string machine =
      ranks_here > 1 ? detail::concat(ranks_here, " ranks on this machine need ", gib(e.total() * ranks_here), "; it has ")
                     : std::string("the machine has ");
  throw ConfigError(detail::concat(
      params ? "keys 'model.d_model', 'model.n_layer', 'model.vocab_size', 'model.d_ff'"
             : "keys 'data.batch_size', 'data.seq_len', 'model.n_layer', 'model.d_model'",
      ": this config needs at least ", gib(e.total()), " on each rank (",
      e.parameters < 1e15 ? std::to_string(static_cast<int64_t>(e.parameters)) : detail::concat(std::setprecision(3), e.parameters),
      " parameters: ", gib(e.state_bytes), training ? " with gradients and AdamW moments" : "",
      "; activations: ", gib(e.activation_bytes), "), ", machine, gib(available),
      params ? "; shrink the model" : "; shorten the rows or split them over more ranks (parallel.sp)",
      ranks_here > 1 ? " or place fewer ranks on each machine" : ""));
}

std::string launch_environment() {
  std::string text = "launch:\n";
  // The subcommand (argv[1]): ranks running train beside eval would wait on each other.
  std::ifstream cmdline("/proc/self/cmdline");
  std::string program, command;
  std::getline(cmdline, program, '\0');
  std::getline(cmdline, command, '\0');
  text += "  command: " + command + "\n";
  std::error_code ec;
  text += "  cwd: " + fs::current_path(ec).string() + "\n";
  // strand's own variables, in a fixed order.
  std::vector<std::string> vars;
  for (char** e = environ; *e != nullptr; ++e)
    if (std::string_view(*e).starts_with("STRAND_")) vars.emplace_back(*e);
  std::sort(vars.begin(), vars.end());
  for (const std::string& v : vars) {
    const size_t eq = v.find('=');
    text += "  " + v.substr(0, eq) + ": " + v.substr(eq + 1) + "\n";
  }
  return text;
}

void check_ranks_agree(const Config& config, parallel::Group& group) {
  if (group.size() <= 1) return;
  const std::string mine = to_yaml(config) + launch_environment();
  std::array<int64_t, 2> lo{text_hash(mine), static_cast<int64_t>(mine.size())}, hi = lo;
  group.all_reduce(std::span<int64_t>(lo), parallel::ReduceOp::Min);
  group.all_reduce(std::span<int64_t>(hi), parallel::ReduceOp::Max);
  if (lo == hi) return;
  // They differ: rank 0's text goes to every rank, and each rank that differs names the first
  // key where it does (its error ends the job on every rank).
  Tensor text = Tensor::zeros({hi[1]}, DType::I32);
  int32_t* chars = text.data<int32_t>();
  if (group.rank() == 0)
    for (size_t i = 0; i < mine.size(); ++i) chars[i] = static_cast<unsigned char>(mine[i]);
  group.broadcast(text, 0);
  std::string root;
  for (int64_t i = 0; i < hi[1] && chars[i] != 0; ++i) root += static_cast<char>(chars[i]);
  if (root == mine) {
    group.barrier();  // a rank that differs reports; this one waits to be ended with the job
    throw ConfigError("the ranks were started with different configs or environments (another rank names the first "
                      "difference)");
  }
  const auto a = keyed_lines(root), b = keyed_lines(mine);
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    if (i < a.size() && i < b.size() && a[i] == b[i]) continue;
    const std::string key = i < b.size() ? b[i].first : a[i].first;
    const std::string on_root = i < a.size() && a[i].first == key ? a[i].second : " (absent)";
    const std::string here = i < b.size() && b[i].first == key ? b[i].second : " (absent)";
    if (key.starts_with("launch."))
      throw ConfigError(detail::concat(key, ": the ranks were started in different environments: rank 0 has", on_root,
                                       ", rank ", group.rank(), " has", here,
                                       " (start every rank with the same command, directory and STRAND_* variables)"));
    throw ConfigError(detail::concat("key '", key, "': the ranks were started with different configs: rank 0 has",
                                     on_root, ", rank ", group.rank(), " has", here,
                                     " (every rank must run the same config and --set options)"));
  }
  throw ConfigError("the ranks were started with different configs");
}

TrainerParts build_trainer_parts(Config config, std::shared_ptr<models::Model> model, parallel::Group* group) {
  STRAND_CHECK(model != nullptr, ValueError, "Trainer: no model");
  TrainerParts parts;
  parts.watchdog = std::make_unique<parallel::Watchdog>(config.parallel.timeout_s, group ? group->rank() : 0,
                                                        group ? group->size() : 1);
  // Before any other collective: ranks with different configs would otherwise hang or train
  // silently wrong in the grid and the gradient sum.
  if (group != nullptr) check_ranks_agree(config, *group);
  parts.ranks = build_training_ranks(config, group);
  // run.device: parameters move before the optimizer makes its moments beside them and the
  // gradient sync takes their handles; batches follow through the sharder.
  const Device device = training_device(config);
  std::vector<Tensor> params;
  for (const auto& named : model->named_parameters()) params.push_back(named.second);
  place_tensors(params, device);
  parts.ranks.sharder.set_device(device);
  if (config.parallel.backend == CommBackend::Nccl)
    parts.ranks.nccl_group = parallel::make_nccl_group(parts.ranks.bootstrap_group(), device.index);
  // Gradients are summed over every rank (dp x sp: each holds the whole model). Collective.
  parts.grad_sync = build_grad_sync(config, *model, parts.ranks.sum_group());
  parts.optimizer = build_optimizer(config, *model);
  parts.schedule = build_schedule(config);
  parts.data = data_spec_of(config, parts.ranks.dp_rank, config.parallel.dp);
  parts.train_loader = data::make_loader(parts.data, data::Split::train);
  parts.model = std::move(model);
  parts.config = std::move(config);
  return parts;
}

}  // namespace strand::train
