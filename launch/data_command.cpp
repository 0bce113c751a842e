// `strand data prepare`: tokenizes text into llm.c .bin shards (docs/data-format.md).
#include <cstdio>
#include <memory>

#include "data/prepare.h"
#include "launch/commands.h"

namespace strand::launch {

namespace {

void print_files(const char* split, const std::vector<std::string>& files, int64_t tokens) {
  std::printf("%s: %lld tokens in", split, static_cast<long long>(tokens));
  for (const auto& f : files) std::printf(" %s", f.c_str());
  std::printf("\n");
}

}  // namespace

void add_data_command(CLI::App& app) {
  CLI::App* data = app.add_subcommand("data", "Data preparation");
  data->require_subcommand(1);

  auto options = std::make_shared<data::PrepareOptions>();
  CLI::App* prepare = data->add_subcommand(
      "prepare", "Tokenize text files or directories into .bin token shards (.bin and .h5 token files are copied)");
  prepare->add_option("--input", options->inputs, "Files or directories; .bin and .h5/.hdf5 files already hold tokens")
      ->required();
  prepare->add_option("--out", options->out_prefix, "Output prefix: writes PREFIX_train.bin and PREFIX_val.bin")
      ->required();
  prepare->add_option("--tokenizer", options->tokenizer, "byte or sentencepiece")
      ->check(CLI::IsMember({"byte", "sentencepiece"}))
      ->capture_default_str();
  prepare->add_option("--val-fraction", options->val_fraction, "Fraction of tokens (the tail) for validation")
      ->capture_default_str();
  prepare->add_option("--sp-model", options->sp_model,
                      "sentencepiece: load this .model instead of training one to PREFIX.model");
  prepare->add_option("--vocab-size", options->sp_train.vocab_size, "sentencepiece: vocabulary to train")
      ->capture_default_str();
  prepare->add_option("--sp-type", options->sp_train.model_type, "sentencepiece: unigram or bpe")
      ->check(CLI::IsMember({"unigram", "bpe"}))
      ->capture_default_str();
  prepare->add_option("--shard-tokens", options->shard_tokens, "At most this many tokens per .bin file")
      ->capture_default_str();
  // The flag's target must outlive this function: CLI11 writes it during parse().
  auto quiet = std::make_shared<bool>(false);
  prepare->add_flag("--quiet", *quiet, "No progress bar");

  prepare->callback([options, quiet]() {
    options->progress = !*quiet;
    const data::PrepareResult r = data::prepare_dataset(*options);
    std::printf("read %lld files (%.1f MB); tokenizer %s, vocab %lld%s%s\n", static_cast<long long>(r.documents),
                static_cast<double>(r.input_bytes) / 1e6, options->tokenizer.c_str(),
                static_cast<long long>(r.vocab_size), r.tokenizer_model.empty() ? "" : ", model ",
                r.tokenizer_model.c_str());
    print_files("train", r.train_files, r.train_tokens);
    if (!r.val_files.empty()) print_files("val", r.val_files, r.val_tokens);
  });
}

}  // namespace strand::launch
