#include "data/translation_dataset.h"

#include <numeric>

#include "data/dataset_schema.h"

namespace tr {

DatasetInfo TranslationDataset::read_info(const h5::File& file) {
  const std::string& path = file.path();
  DatasetInfo info;
  info.path = path;
  info.kind = "translation";
  std::int64_t records[2] = {0, 0};
  const char* sides[2] = {"src", "tgt"};
  for (int s = 0; s < 2; ++s) {
    const std::string side = sides[s];
    schema::require_shape(file, side + "/tokens", 1, "[T]");
    schema::require_int32(file, side + "/tokens");
    const Shape offsets = schema::require_shape(file, side + "/offsets", 1, "[N+1]");
    schema::require_integer(file, side + "/offsets");
    if (offsets[0] < 1)
      throw UserError(path + ": dataset '" + side +
                      "/offsets' is empty, expected N+1 values (0, then the end of each record)");
    records[s] = offsets[0] - 1;
  }
  if (records[0] != records[1])
    throw UserError(path + ": 'src' has " + std::to_string(records[0]) + " records, 'tgt' has " +
                    std::to_string(records[1]) + " (from the lengths of their offsets)");
  info.records = records[0];

  info.vocab_size = schema::int_attr(file, "vocab_size");
  if (info.vocab_size < 1 || info.vocab_size > (std::int64_t{1} << 31) - 1)
    throw UserError(path + ": root attribute 'vocab_size' is " + std::to_string(info.vocab_size) +
                    ", expected a positive 32-bit count");
  std::int32_t* ids[4] = {&info.pad_id, &info.bos_id, &info.eos_id, &info.unk_id};
  const char* id_names[4] = {"pad_id", "bos_id", "eos_id", "unk_id"};
  for (int i = 0; i < 4; ++i) {
    const std::int64_t id = schema::int_attr(file, id_names[i]);
    if (id < 0 || id >= info.vocab_size)
      throw UserError(path + ": root attribute '" + id_names[i] + "' is " + std::to_string(id) +
                      ", outside [0, vocab_size " + std::to_string(info.vocab_size) + ")");
    *ids[i] = static_cast<std::int32_t>(id);
  }
  info.has_tokenizer = file.exists("tokenizer");
  return info;
}

std::vector<std::int64_t> TranslationDataset::read_offsets(const h5::File& file,
                                                           const std::string& side) {
  const std::string name = file.path() + ": dataset '" + side + "/offsets'";
  const std::int64_t tokens = file.shape(side + "/tokens")[0];
  std::vector<std::int64_t> offsets = file.read<std::int64_t>(side + "/offsets");
  if (offsets.empty() || offsets[0] != 0)
    throw UserError(name + " starts at " +
                    (offsets.empty() ? "nothing" : std::to_string(offsets[0])) + ", expected 0");
  for (std::size_t i = 1; i < offsets.size(); ++i) {
    if (offsets[i] < offsets[i - 1])
      throw UserError(name + " decreases at record " + std::to_string(i - 1) + " (" +
                      std::to_string(offsets[i - 1]) + " to " + std::to_string(offsets[i]) + ")");
    if (offsets[i] > tokens)
      throw UserError(name + ": record " + std::to_string(i - 1) + " ends at " +
                      std::to_string(offsets[i]) + ", beyond the " + std::to_string(tokens) +
                      " tokens of '" + side + "/tokens'");
  }
  // Offsets that end early are usually record starts without the final end (N values, not
  // N+1), which would silently drop or misalign the last record.
  if (offsets.back() != tokens)
    throw UserError(name + " ends at " + std::to_string(offsets.back()) + " but '" + side +
                    "/tokens' holds " + std::to_string(tokens) +
                    " tokens; expected N+1 values: 0, then the end of each record");
  return offsets;
}

TranslationDataset::TranslationDataset(const std::string& path)
    : TranslationDataset(h5::File::open(path)) {}

// Members initialise in declaration order: the schema is checked before the token readers open.
TranslationDataset::TranslationDataset(const h5::File& file)
    : info_(read_info(file)),
      src_offsets_(read_offsets(file, "src")),
      tgt_offsets_(read_offsets(file, "tgt")),
      src_(file.path(), "src/tokens"),
      tgt_(file.path(), "tgt/tokens") {}

void TranslationDataset::check_max_len(std::int64_t max_len) const {
  if (max_len <= 0) return;
  const auto check = [&](std::int64_t record, std::int64_t tokens, const char* side) {
    if (tokens + 1 > max_len)
      schema::record_error(
          info_.path, record,
          std::string(side) + " has " + std::to_string(tokens) +
              " tokens, more than model.max_len - 1 = " + std::to_string(max_len - 1));
  };
  for (std::int64_t i = 0; i < info_.records; ++i) {
    check(i, src_tokens(i), "source");
    check(i, tgt_tokens(i), "target");
  }
}

namespace {

// Reads the token ranges of `records` (sorted by record index, so by offset) of one side in
// one gather; returns them concatenated in that order.
std::vector<std::int32_t> read_tokens(const RowGather& gather,
                                      const std::vector<std::int64_t>& offsets,
                                      const std::vector<std::int64_t>& sorted_records) {
  std::vector<RowRun> runs;
  std::int64_t total = 0;
  for (std::int64_t r : sorted_records) {
    const std::int64_t count = offsets[r + 1] - offsets[r];
    append_run(runs, offsets[r], count);
    total += count;
  }
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(total));
  gather.read(runs, H5T_NATIVE_INT32, tokens.data());
  return tokens;
}

}  // namespace

void TranslationDataset::read_batch(const std::vector<std::int64_t>& records, Batch& batch) const {
  const auto B = static_cast<std::int64_t>(records.size());
  std::vector<std::int64_t> sorted = records;
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    TR_CHECK(sorted[i] >= 0 && sorted[i] < info_.records, "translation record out of range");
    TR_CHECK(i == 0 || sorted[i] != sorted[i - 1], "duplicate record in a translation batch");
  }
  const std::vector<std::int32_t> src = read_tokens(src_, src_offsets_, sorted);
  const std::vector<std::int32_t> tgt = read_tokens(tgt_, tgt_offsets_, sorted);

  // Where each record's tokens start in the gathered buffers (which follow `sorted`).
  std::vector<std::int64_t> src_at(records.size()), tgt_at(records.size());
  std::int64_t S = 1, T = 1;
  {
    std::vector<std::int64_t> by_record(records.size());
    std::iota(by_record.begin(), by_record.end(), std::int64_t{0});
    std::sort(by_record.begin(), by_record.end(),
              [&](std::int64_t a, std::int64_t b) { return records[a] < records[b]; });
    std::int64_t src_pos = 0, tgt_pos = 0;
    for (std::int64_t b : by_record) {
      const std::int64_t r = records[static_cast<std::size_t>(b)];
      src_at[static_cast<std::size_t>(b)] = src_pos;
      tgt_at[static_cast<std::size_t>(b)] = tgt_pos;
      src_pos += src_tokens(r);
      tgt_pos += tgt_tokens(r);
      S = std::max(S, src_tokens(r) + 1);
      T = std::max(T, tgt_tokens(r) + 1);
    }
  }

  for (Tensor* t : {&batch.src_len, &batch.tgt_len}) ensure_shape(*t, {B}, DType::i32);
  ensure_shape(batch.src, {B, S}, DType::i32);
  ensure_shape(batch.tgt_in, {B, T}, DType::i32);
  ensure_shape(batch.tgt_out, {B, T}, DType::i32);
  std::int32_t* src_out = batch.src.data<std::int32_t>();
  std::int32_t* tgt_in = batch.tgt_in.data<std::int32_t>();
  std::int32_t* tgt_out = batch.tgt_out.data<std::int32_t>();
  std::fill(src_out, src_out + B * S, info_.pad_id);
  std::fill(tgt_in, tgt_in + B * T, info_.pad_id);
  std::fill(tgt_out, tgt_out + B * T, info_.pad_id);

  const auto check = [&](std::int32_t token, std::int64_t record, const char* side) {
    if (token < 0 || token >= info_.vocab_size)
      schema::record_error(info_.path, record,
                           std::string(side) + " token " + std::to_string(token) +
                               " is outside [0, vocab_size " + std::to_string(info_.vocab_size) +
                               ")");
    return token;
  };
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t r = records[static_cast<std::size_t>(b)];
    const std::int64_t ns = src_tokens(r), nt = tgt_tokens(r);
    const std::int32_t* s = src.data() + src_at[static_cast<std::size_t>(b)];
    const std::int32_t* t = tgt.data() + tgt_at[static_cast<std::size_t>(b)];
    std::int32_t* row = src_out + b * S;
    for (std::int64_t i = 0; i < ns; ++i) row[i] = check(s[i], r, "source");
    row[ns] = info_.eos_id;
    std::int32_t* in = tgt_in + b * T;
    std::int32_t* out = tgt_out + b * T;
    in[0] = info_.bos_id;
    for (std::int64_t i = 0; i < nt; ++i) {
      in[i + 1] = out[i] = check(t[i], r, "target");
    }
    out[nt] = info_.eos_id;
    batch.src_len.data<std::int32_t>()[b] = static_cast<std::int32_t>(ns + 1);
    batch.tgt_len.data<std::int32_t>()[b] = static_cast<std::int32_t>(nt + 1);
  }
}

}  // namespace tr
