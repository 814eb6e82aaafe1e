// `trainer prepare translation`: tokenizes a parallel corpus (two text files, one sentence per
// line, line i of one the translation of line i of the other) into the translation dataset of
// DESIGN section 5:
//   /src/tokens int32 [T_src], /src/offsets int64 [N + 1], /tgt/tokens, /tgt/offsets
//   (record i is tokens[offsets[i], offsets[i + 1]), with no BOS/EOS), root attributes
//   vocab_size, pad_id, bos_id, eos_id, unk_id, and /tokenizer uint8 [bytes] holding the
//   serialized SentencePiece model.
// One joint model is trained on both sides (the model shares one embedding between source,
// target and output), unless an existing tokenizer is reused: a validation or test set must
// use the training set's tokenizer.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace tr {

struct PrepareTranslationOptions {
  std::string src;  // source-language text, gzipped or plain
  std::string tgt;  // target-language text, same number of lines
  std::string out;  // HDF5 file to write (parent directories are created)
  // Training: pieces in the joint vocabulary (0: 8000). Reusing a tokenizer: 0, or its size.
  std::int32_t vocab_size = 0;
  std::string model_type = "unigram";  // unigram | bpe (training only)
  // Reuse instead of training: a SentencePiece .model file or a prepared dataset whose
  // /tokenizer is taken over.
  std::string tokenizer;
  // > 0: drop pairs where either side has more than max_len - 1 tokens, leaving room for the
  // EOS (source) or BOS (target) a model adds; so no record exceeds a model of max_len
  // positions. 0: keep every length.
  std::int64_t max_len = 0;
  double character_coverage = 1.0;  // see TokenizerTrainOptions
  int num_threads = 1;              // tokenizer training threads (1: same model everywhere)
  std::uint32_t seed = 0;
  std::int64_t chunk_tokens = 1 << 16;   // HDF5 chunk of the token arrays, and write buffer
  std::int64_t chunk_offsets = 1 << 14;  // the same for the offset arrays
  // Progress lines ("training the tokenizer ..."); null: silent.
  std::function<void(const std::string&)> log;
};

// What was written, for the command's report.
struct PreparedTranslation {
  std::int64_t lines = 0;          // sentence pairs read
  std::int64_t records = 0;        // pairs written
  std::int64_t dropped_empty = 0;  // pairs with an empty (or all-whitespace) side
  std::int64_t dropped_long = 0;   // pairs with a side over max_len - 1 tokens
  std::int64_t src_tokens = 0, tgt_tokens = 0;
  std::int64_t src_unk = 0, tgt_unk = 0;          // unk ids among them
  std::int64_t src_longest = 0, tgt_longest = 0;  // tokens in the longest written record
  std::int32_t vocab_size = 0;
  bool tokenizer_trained = false;
};

// Writes options.out through a temporary file renamed into place at the end: on any error
// (missing file, line counts that differ, tokenizer failures) nothing is left at the output
// path. Memory stays bounded by the chunk sizes whatever the corpus size: the inputs are read
// twice, once to count tokens (HDF5 datasets here have a fixed extent) and once to write.
PreparedTranslation prepare_translation(const PrepareTranslationOptions& options);

}  // namespace tr
