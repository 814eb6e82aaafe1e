#include "data/prepare_translation.h"

#include <algorithm>
#include <cstring>

#include "data/gz_reader.h"
#include "data/h5.h"
#include "data/temp_output.h"
#include "data/tokenizer.h"
#include "layers/error.h"
#include "layers/tensor.h"

namespace tr {

namespace {

constexpr std::int32_t kDefaultVocabSize = 8000;

std::int64_t count_lines(const std::string& path) {
  GzReader reader(path);
  std::string line;
  std::int64_t lines = 0;
  while (reader.read_line(line)) ++lines;
  return lines;
}

struct PairCounts {
  std::int64_t lines = 0, records = 0, dropped_empty = 0, dropped_long = 0;
  std::int64_t src_tokens = 0, tgt_tokens = 0, src_unk = 0, tgt_unk = 0;
  std::int64_t src_longest = 0, tgt_longest = 0;
};

// Encodes every line pair and hands the kept ones to `keep(src_ids, tgt_ids)`. Both passes go
// through here, so the counting pass and the writing pass keep exactly the same pairs.
template <typename Keep>
PairCounts for_each_pair(const PrepareTranslationOptions& options, const Tokenizer& tokenizer,
                         Keep&& keep) {
  GzReader src(options.src), tgt(options.tgt);
  std::string src_line, tgt_line;
  PairCounts counts;
  while (true) {
    const bool have_src = src.read_line(src_line);
    const bool have_tgt = tgt.read_line(tgt_line);
    if (have_src != have_tgt)
      throw UserError(options.src + ", " + options.tgt + ": the files changed while being read");
    if (!have_src) break;
    ++counts.lines;
    const std::vector<std::int32_t> src_ids = tokenizer.encode(src_line);
    const std::vector<std::int32_t> tgt_ids = tokenizer.encode(tgt_line);
    const auto src_len = static_cast<std::int64_t>(src_ids.size());
    const auto tgt_len = static_cast<std::int64_t>(tgt_ids.size());
    if (src_len == 0 || tgt_len == 0) {
      ++counts.dropped_empty;
      continue;
    }
    if (options.max_len > 0 && (src_len > options.max_len - 1 || tgt_len > options.max_len - 1)) {
      ++counts.dropped_long;
      continue;
    }
    ++counts.records;
    counts.src_tokens += src_len;
    counts.tgt_tokens += tgt_len;
    counts.src_unk += std::count(src_ids.begin(), src_ids.end(), tokenizer.unk_id());
    counts.tgt_unk += std::count(tgt_ids.begin(), tgt_ids.end(), tokenizer.unk_id());
    counts.src_longest = std::max(counts.src_longest, src_len);
    counts.tgt_longest = std::max(counts.tgt_longest, tgt_len);
    keep(src_ids, tgt_ids);
  }
  return counts;
}

// Streams one side's records into `group`/tokens and `group`/offsets, whose final sizes are
// known from the counting pass, through buffers of one chunk each.
class SequenceWriter {
 public:
  SequenceWriter(h5::File& file, const std::string& group, std::int64_t records,
                 std::int64_t tokens, const PrepareTranslationOptions& options)
      : file_(file),
        tokens_name_(group + "/tokens"),
        offsets_name_(group + "/offsets"),
        chunk_tokens_(options.chunk_tokens),
        chunk_offsets_(options.chunk_offsets) {
    file_.create_dataset(tokens_name_, {tokens}, DType::i32, h5::WriteOptions{chunk_tokens_});
    file_.create_dataset(offsets_name_, {records + 1}, DType::i64,
                         h5::WriteOptions{chunk_offsets_});
    offsets_.push_back(0);
  }

  void add(const std::vector<std::int32_t>& ids) {
    tokens_.insert(tokens_.end(), ids.begin(), ids.end());
    end_ += static_cast<std::int64_t>(ids.size());
    offsets_.push_back(end_);
    if (static_cast<std::int64_t>(tokens_.size()) >= chunk_tokens_) flush_tokens();
    if (static_cast<std::int64_t>(offsets_.size()) >= chunk_offsets_) flush_offsets();
  }

  void finish() {
    flush_tokens();
    flush_offsets();
  }

 private:
  template <typename T>
  void write(const std::string& name, std::int64_t start, std::vector<T>& values) {
    if (values.empty()) return;
    Tensor rows = Tensor::empty({static_cast<std::int64_t>(values.size())}, dtype_of<T>());
    std::memcpy(rows.raw(), values.data(), values.size() * sizeof(T));
    file_.write_rows(name, start, rows);
    values.clear();
  }
  void flush_tokens() {
    const auto n = static_cast<std::int64_t>(tokens_.size());
    write(tokens_name_, tokens_written_, tokens_);
    tokens_written_ += n;
  }
  void flush_offsets() {
    const auto n = static_cast<std::int64_t>(offsets_.size());
    write(offsets_name_, offsets_written_, offsets_);
    offsets_written_ += n;
  }

  h5::File& file_;
  std::string tokens_name_, offsets_name_;
  std::int64_t chunk_tokens_, chunk_offsets_;
  std::vector<std::int32_t> tokens_;
  std::vector<std::int64_t> offsets_;
  std::int64_t end_ = 0;  // tokens added so far: the next offset
  std::int64_t tokens_written_ = 0, offsets_written_ = 0;
};

void say(const PrepareTranslationOptions& options, const std::string& line) {
  if (options.log) options.log(line);
}

}  // namespace

PreparedTranslation prepare_translation(const PrepareTranslationOptions& options) {
  TR_CHECK(options.chunk_tokens > 0 && options.chunk_offsets > 0,
           "prepare_translation: chunk sizes must be positive");
  if (options.max_len < 0 || options.max_len == 1)
    throw UserError("max_len " + std::to_string(options.max_len) +
                    ": must be 0 (no limit) or at least 2 (one token plus EOS/BOS)");
  // Cheap checks first: a mismatch must not wait for the tokenizer training.
  const std::int64_t src_lines = count_lines(options.src);
  const std::int64_t tgt_lines = count_lines(options.tgt);
  if (src_lines != tgt_lines)
    throw UserError(options.src + " has " + std::to_string(src_lines) + " lines but " +
                    options.tgt + " has " + std::to_string(tgt_lines) +
                    "; a parallel corpus needs the same number of lines on both sides");
  if (src_lines == 0) throw UserError(options.src + ": is empty");

  PreparedTranslation result;
  std::string model;
  if (!options.tokenizer.empty()) {
    model = Tokenizer::load(options.tokenizer).bytes();
  } else {
    TokenizerTrainOptions train;
    train.inputs = {options.src, options.tgt};
    train.vocab_size = options.vocab_size > 0 ? options.vocab_size : kDefaultVocabSize;
    train.model_type = options.model_type;
    train.character_coverage = options.character_coverage;
    train.num_threads = options.num_threads;
    train.seed = options.seed;
    say(options, "training a joint " + train.model_type + " tokenizer of " +
                     std::to_string(train.vocab_size) + " pieces on " + options.src + " and " +
                     options.tgt + " (" + std::to_string(src_lines) + " lines each)");
    model = train_tokenizer(train);
    result.tokenizer_trained = true;
  }
  const std::string origin = options.tokenizer.empty() ? "trained tokenizer" : options.tokenizer;
  const Tokenizer tokenizer = Tokenizer::from_bytes(model, origin);
  result.vocab_size = tokenizer.vocab_size();
  if (!options.tokenizer.empty() && options.vocab_size > 0 &&
      options.vocab_size != result.vocab_size)
    throw UserError(options.tokenizer + ": the tokenizer has " + std::to_string(result.vocab_size) +
                    " pieces, but a vocabulary size of " + std::to_string(options.vocab_size) +
                    " was asked for");
  const std::pair<const char*, std::int32_t> specials[] = {{"pad", tokenizer.pad_id()},
                                                           {"bos", tokenizer.bos_id()},
                                                           {"eos", tokenizer.eos_id()},
                                                           {"unk", tokenizer.unk_id()}};
  for (const auto& [name, id] : specials)
    if (id < 0)
      throw UserError(origin + ": the tokenizer defines no " + name +
                      " piece; translation needs pad, bos, eos and unk (train with " + name +
                      "_id set)");

  say(options, "counting tokens");
  const PairCounts counts = for_each_pair(options, tokenizer, [](const auto&, const auto&) {});
  if (counts.records == 0)
    throw UserError(options.src + ", " + options.tgt + ": no sentence pair is left (" +
                    std::to_string(counts.dropped_empty) + " with an empty side, " +
                    std::to_string(counts.dropped_long) + " longer than max_len - 1 tokens)");

  say(options, "writing " + options.out);
  TempOutput output(options.out);
  h5::File file = h5::File::create(output.temp_path());
  SequenceWriter src_writer(file, "src", counts.records, counts.src_tokens, options);
  SequenceWriter tgt_writer(file, "tgt", counts.records, counts.tgt_tokens, options);
  const PairCounts written = for_each_pair(
      options, tokenizer,
      [&](const std::vector<std::int32_t>& src_ids, const std::vector<std::int32_t>& tgt_ids) {
        src_writer.add(src_ids);
        tgt_writer.add(tgt_ids);
      });
  // Guards against an input that changed between the passes (or a nondeterministic encoder).
  if (written.records != counts.records || written.src_tokens != counts.src_tokens ||
      written.tgt_tokens != counts.tgt_tokens)
    throw UserError(options.src + ", " + options.tgt + ": the files changed while being read");
  src_writer.finish();
  tgt_writer.finish();

  file.write_attr_scalar<std::int64_t>("/", "vocab_size", result.vocab_size);
  file.write_attr_scalar<std::int32_t>("/", "pad_id", tokenizer.pad_id());
  file.write_attr_scalar<std::int32_t>("/", "bos_id", tokenizer.bos_id());
  file.write_attr_scalar<std::int32_t>("/", "eos_id", tokenizer.eos_id());
  file.write_attr_scalar<std::int32_t>("/", "unk_id", tokenizer.unk_id());
  const std::vector<std::uint8_t> bytes(model.begin(), model.end());
  file.write<std::uint8_t>("tokenizer", {static_cast<std::int64_t>(bytes.size())}, bytes);
  file.write_attr("tokenizer", "format", "sentencepiece");
  file.close();
  output.commit();

  result.lines = counts.lines;
  result.records = counts.records;
  result.dropped_empty = counts.dropped_empty;
  result.dropped_long = counts.dropped_long;
  result.src_tokens = counts.src_tokens;
  result.tgt_tokens = counts.tgt_tokens;
  result.src_unk = counts.src_unk;
  result.tgt_unk = counts.tgt_unk;
  result.src_longest = counts.src_longest;
  result.tgt_longest = counts.tgt_longest;
  return result;
}

}  // namespace tr
