// `trainer prepare synthetic`: a translation dataset (DESIGN section 5) of random token
// sequences whose target is the source itself (`copy`) or the source reversed (`reverse`):
// the tasks on which a small encoder-decoder must reach near-perfect token accuracy, used by
// the smoke config and the end-to-end tests. No text and no tokenizer is involved:
//   /src/tokens int32 [T], /src/offsets int64 [N + 1], /tgt/tokens, /tgt/offsets,
//   root attributes vocab_size, pad_id 0, bos_id 1, eos_id 2, unk_id 3, and `task`;
//   no /tokenizer (`trainer translate --ids` reads and writes token ids instead of text).
// Record i has a length drawn uniformly from [min_len, max_len] and tokens drawn uniformly from
// [4, vocab_size), all from a generator keyed by (seed, i): the file is a pure function of the
// options, and record i is the same whatever the number of records.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tr {

struct PrepareSyntheticOptions {
  std::string task = "reverse";  // copy | reverse
  std::int64_t records = 1000;
  std::int32_t vocab_size = 16;  // the 4 special ids included; at least 5
  std::int64_t min_len = 1;      // tokens per record (without eos/bos), at least 1
  std::int64_t max_len = 10;
  std::uint64_t seed = 0;
  std::string out;                      // HDF5 file to write (parent directories are created)
  std::int64_t chunk_tokens = 1 << 16;  // HDF5 chunk of the token arrays, and write buffer
};

struct PreparedSynthetic {
  std::int64_t records = 0;
  std::int64_t tokens = 0;  // per side
};

// The source tokens of record `index` (what the file holds at src record `index`).
std::vector<std::int32_t> synthetic_source(const PrepareSyntheticOptions& options,
                                           std::int64_t index);

// Validates the options (UserError naming the option: --task, --records, --vocab, --min-len,
// --max-len), then writes options.out through a temporary file renamed into place: on any error
// nothing is left at the output path.
PreparedSynthetic prepare_synthetic(const PrepareSyntheticOptions& options);

}  // namespace tr
