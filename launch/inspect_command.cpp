// `strand inspect CKPT`: what a checkpoint holds: its config, step, tokens seen, and a table of
// the model's parameters (name, shape, dtype, element count) with the total.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>

#include "framework/io/checkpoint.h"
#include "launch/commands.h"

namespace strand::launch {

namespace {

// "12,345,678": parameter counts read at a glance.
std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  const int first = static_cast<int>(digits.size() % 3);
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (static_cast<int>(i) - first) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// The first of the int64 datasets `name` in the groups given, or -1 (older or foreign files
// may lack the trainer group; the optimizer's step is the same count).
int64_t first_int(std::initializer_list<const io::CheckpointGroup*> groups, const std::string& name) {
  for (const io::CheckpointGroup* g : groups) {
    auto it = g->int64s.find(name);
    if (it != g->int64s.end() && it->second.size() == 1) return it->second[0];
  }
  return -1;
}

std::string count_or_unknown(int64_t n) { return n < 0 ? std::string("unknown") : with_commas(n); }

void print_inspection(const io::CheckpointData& ck) {
  std::printf("checkpoint: %s (%s version %lld)\n", ck.source.c_str(), io::kCheckpointFormat,
              static_cast<long long>(ck.version));
  std::printf("step: %s\n", count_or_unknown(first_int({&ck.trainer, &ck.optimizer}, "step")).c_str());
  std::printf("tokens seen: %s\n", count_or_unknown(first_int({&ck.trainer}, "tokens_seen")).c_str());

  // The resolved YAML, indented under its heading.
  std::printf("config:\n");
  std::istringstream yaml(ck.config_yaml);
  for (std::string line; std::getline(yaml, line);) std::printf("  %s\n", line.c_str());

  // Parameter table, columns sized to their widest entry.
  const auto& params = ck.model.tensors;
  size_t name_w = 4, shape_w = 5, count_w = 5;
  for (const auto& [name, t] : params) {
    name_w = std::max(name_w, name.size());
    shape_w = std::max(shape_w, shape_str(t.shape()).size());
    count_w = std::max(count_w, with_commas(t.numel()).size());
  }
  std::printf("parameters:\n");
  std::printf("  %-*s  %-*s  %-8s  %*s\n", static_cast<int>(name_w), "name", static_cast<int>(shape_w), "shape",
              "dtype", static_cast<int>(count_w), "count");
  int64_t total = 0;
  for (const auto& [name, t] : params) {
    total += t.numel();
    std::printf("  %-*s  %-*s  %-8s  %*s\n", static_cast<int>(name_w), name.c_str(), static_cast<int>(shape_w),
                shape_str(t.shape()).c_str(), dtype_name(t.dtype()), static_cast<int>(count_w),
                with_commas(t.numel()).c_str());
  }
  std::printf("  total: %zu tensors, %s parameters (%.2f M)\n", params.size(), with_commas(total).c_str(),
              static_cast<double>(total) / 1e6);

  // Optimizer state: moments m/<param> and v/<param> per parameter.
  if (ck.optimizer.empty()) {
    std::printf("optimizer: none\n");
  } else {
    size_t moments = 0;
    for (const auto& [name, t] : ck.optimizer.tensors) moments += name.rfind("m/", 0) == 0 ? 1 : 0;
    std::printf("optimizer: step %s, moments for %zu of %zu parameters\n",
                count_or_unknown(first_int({&ck.optimizer}, "step")).c_str(), moments, params.size());
  }
  for (const auto& [group, contents] : ck.extra)
    std::printf("group %s: %zu tensors, %zu int lists\n", group.c_str(), contents.tensors.size(),
                contents.int64s.size());
  // A pruned model (docs/checkpoint-format.md, "Pruned models"): its query heads per layer.
  if (const auto pruning = ck.extra.find("pruning"); pruning != ck.extra.end()) {
    std::string heads;
    for (size_t i = 0;; ++i) {
      const auto kept = pruning->second.int64s.find("layer_" + std::to_string(i) + ".kept_heads");
      if (kept == pruning->second.int64s.end()) break;
      heads += (heads.empty() ? "" : " ") + std::to_string(kept->second.size());
    }
    std::printf("pruned: query heads kept per layer %s\n", heads.c_str());
  }
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  CLI::App* inspect = app.add_subcommand("inspect", "Print a checkpoint's config, step and parameter table");
  inspect->add_option("checkpoint", *path, "Checkpoint file (.h5)")->required();
  // read_checkpoint throws one CheckpointError line naming the file for a missing or bad file.
  inspect->callback([path]() { print_inspection(io::read_checkpoint(*path)); });
}

}  // namespace strand::launch
