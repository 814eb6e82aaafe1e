// Translation dataset (DESIGN section 5): /src/tokens int32 [T], /src/offsets int64 [N+1],
// /tgt/tokens, /tgt/offsets; root attributes vocab_size, pad_id, bos_id, eos_id, unk_id;
// optional /tokenizer. Record i of a side is tokens[offsets[i], offsets[i+1]), without BOS/EOS.
//
// The offsets are the index of the file (two int64 per record) and stay in memory, validated
// at open; tokens are read per batch and checked against the vocabulary as they are read.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset_info.h"
#include "data/h5.h"
#include "data/row_gather.h"
#include "models/model.h"

namespace tr {

class TranslationDataset {
 public:
  // Validates the schema (datasets, dtypes, shapes, attributes) and returns what the file
  // declares; the offsets are not read.
  static DatasetInfo read_info(const h5::File& file);
  // Reads `side`'s offsets ("src" or "tgt") and checks that they start at or after 0, never
  // decrease and stay within the side's tokens.
  static std::vector<std::int64_t> read_offsets(const h5::File& file, const std::string& side);

  explicit TranslationDataset(const std::string& path);
  const DatasetInfo& info() const { return info_; }

  std::int64_t src_tokens(std::int64_t record) const {
    return src_offsets_[record + 1] - src_offsets_[record];
  }
  std::int64_t tgt_tokens(std::int64_t record) const {
    return tgt_offsets_[record + 1] - tgt_offsets_[record];
  }
  // The longer of the two padded sequences the record becomes: src + [eos], [bos] + tgt.
  std::int64_t padded_length(std::int64_t record) const {
    return std::max(src_tokens(record), tgt_tokens(record)) + 1;
  }
  // Throws a UserError naming the first record whose src + [eos] or [bos] + tgt is longer than
  // max_len (the model's positions); max_len <= 0 accepts any length.
  void check_max_len(std::int64_t max_len) const;

  // Fills batch.src, src_len, tgt_in, tgt_out, tgt_len for `records` (distinct indices, in
  // batch order), right-padded with pad_id to the longest sequence of the batch. A token
  // outside [0, vocab_size) is a UserError naming the record.
  void read_batch(const std::vector<std::int64_t>& records, Batch& batch) const;

 private:
  explicit TranslationDataset(const h5::File& file);

  DatasetInfo info_;
  std::vector<std::int64_t> src_offsets_, tgt_offsets_;
  RowGather src_, tgt_;
};

}  // namespace tr
