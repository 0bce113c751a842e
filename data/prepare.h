// `strand data prepare`: text (and existing token files) to llm.c .bin shards, with a val split.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace strand::data {

struct PrepareOptions {
  std::vector<std::string> inputs;  // files or directories (read recursively, in sorted path order)
  std::string out_prefix;           // writes PREFIX_train.bin, PREFIX_val.bin (numbered when split)
  std::string tokenizer = "byte";   // byte | sentencepiece
  std::string sp_model;             // sentencepiece: load this model; empty = train one to PREFIX.model
  SentencePieceTrainOptions sp_train;
  double val_fraction = 0.1;        // the last fraction of the token stream becomes the val split
  int64_t shard_tokens = 100'000'000;  // at most this many tokens per .bin file (llm.c's fineweb size)
  bool progress = true;             // progress bar on stderr
};

struct PrepareResult {
  std::vector<std::string> train_files;
  std::vector<std::string> val_files;  // empty when val_fraction is 0
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
  int64_t documents = 0;   // input files read
  int64_t input_bytes = 0;
  int64_t vocab_size = 0;
  std::string tokenizer_model;  // the SentencePiece model used (trained or loaded); empty for byte
};

// The input files in the order they are read: each file as given, each directory's regular
// files (hidden ones skipped) recursively in sorted path order. DataError names a missing input.
std::vector<std::string> list_input_files(const std::vector<std::string>& inputs);

// Reads every input, tokenizes text files (one document each, followed by the tokenizer's
// end-of-document token when it has one), appends the tokens of .bin shards and of HDF5
// inputs' `tokens` as they are, splits the stream (train = head, val = the tail
// val_fraction of it) and writes the shards.
PrepareResult prepare_dataset(const PrepareOptions& options);

}  // namespace strand::data
