#include "data/prepare_synthetic.h"

#include <algorithm>
#include <cstring>

#include "data/h5.h"
#include "data/temp_output.h"
#include "layers/error.h"
#include "layers/tensor.h"

namespace tr {

namespace {

constexpr std::int32_t kPad = 0, kBos = 1, kEos = 2, kUnk = 3, kFirstToken = 4;

// SplitMix64 (Steele et al.): a tiny generator whose output is fully specified, so the same
// options give the same file with every compiler and standard library.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t state) : state_(state) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n), n > 0 (multiply-shift; the bias is below 2^-32 for the ranges used).
  std::uint64_t below(std::uint64_t n) {
    return static_cast<std::uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }

 private:
  std::uint64_t state_;
};

// The generator of record `index`: independent streams per (seed, index).
SplitMix64 record_rng(std::uint64_t seed, std::int64_t index) {
  SplitMix64 mix(seed ^ 0x5DEECE66Dull);
  const std::uint64_t base = mix.next();
  SplitMix64 keyed(base + static_cast<std::uint64_t>(index) * 0xD1B54A32D192ED03ull);
  return SplitMix64(keyed.next());
}

std::int64_t record_length(const PrepareSyntheticOptions& o, SplitMix64& rng) {
  return o.min_len + static_cast<std::int64_t>(
                         rng.below(static_cast<std::uint64_t>(o.max_len - o.min_len + 1)));
}

void validate(const PrepareSyntheticOptions& o) {
  if (o.task != "copy" && o.task != "reverse")
    throw UserError("--task: '" + o.task + "', expected copy or reverse");
  if (o.records < 1)
    throw UserError("--records: " + std::to_string(o.records) + ", expected at least 1");
  if (o.vocab_size < kFirstToken + 1)
    throw UserError("--vocab: " + std::to_string(o.vocab_size) +
                    ", expected at least 5 (ids 0-3 are pad, bos, eos, unk)");
  if (o.min_len < 1)
    throw UserError("--min-len: " + std::to_string(o.min_len) + ", expected at least 1");
  if (o.max_len < o.min_len)
    throw UserError("--max-len: " + std::to_string(o.max_len) + " is below --min-len " +
                    std::to_string(o.min_len));
  if (o.max_len > (std::int64_t{1} << 24))
    throw UserError("--max-len: " + std::to_string(o.max_len) + ", expected at most 2^24");
  TR_CHECK(o.chunk_tokens > 0, "prepare_synthetic: chunk_tokens must be positive");
}

// Buffers rows of one 1-D dataset and writes them chunk by chunk.
template <typename T>
class RowWriter {
 public:
  RowWriter(h5::File& file, std::string name, std::int64_t rows, std::int64_t chunk)
      : file_(file), name_(std::move(name)), chunk_(chunk) {
    file_.create_dataset(
        name_, {rows}, dtype_of<T>(),
        h5::WriteOptions{std::min<std::int64_t>(chunk, std::max<std::int64_t>(rows, 1))});
  }
  void add(T value) {
    buffer_.push_back(value);
    if (static_cast<std::int64_t>(buffer_.size()) >= chunk_) flush();
  }
  void flush() {
    if (buffer_.empty()) return;
    const auto n = static_cast<std::int64_t>(buffer_.size());
    Tensor rows = Tensor::empty({n}, dtype_of<T>());
    std::memcpy(rows.raw(), buffer_.data(), buffer_.size() * sizeof(T));
    file_.write_rows(name_, written_, rows);
    written_ += n;
    buffer_.clear();
  }

 private:
  h5::File& file_;
  std::string name_;
  std::int64_t chunk_;
  std::vector<T> buffer_;
  std::int64_t written_ = 0;
};

}  // namespace

std::vector<std::int32_t> synthetic_source(const PrepareSyntheticOptions& options,
                                           std::int64_t index) {
  SplitMix64 rng = record_rng(options.seed, index);
  const std::int64_t length = record_length(options, rng);
  const auto range = static_cast<std::uint64_t>(options.vocab_size - kFirstToken);
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(length));
  for (std::int32_t& t : tokens) t = kFirstToken + static_cast<std::int32_t>(rng.below(range));
  return tokens;
}

PreparedSynthetic prepare_synthetic(const PrepareSyntheticOptions& options) {
  validate(options);
  // The token arrays have a fixed extent: count first (lengths are the first draw of each
  // record's stream, so this pass is cheap).
  PreparedSynthetic result;
  result.records = options.records;
  for (std::int64_t i = 0; i < options.records; ++i) {
    SplitMix64 rng = record_rng(options.seed, i);
    result.tokens += record_length(options, rng);
  }

  TempOutput output(options.out);
  h5::File file = h5::File::create(output.temp_path());
  {
    const std::int64_t chunk = options.chunk_tokens;
    RowWriter<std::int32_t> src_tokens(file, "src/tokens", result.tokens, chunk);
    RowWriter<std::int32_t> tgt_tokens(file, "tgt/tokens", result.tokens, chunk);
    RowWriter<std::int64_t> src_offsets(file, "src/offsets", options.records + 1, chunk);
    RowWriter<std::int64_t> tgt_offsets(file, "tgt/offsets", options.records + 1, chunk);
    std::int64_t end = 0;
    src_offsets.add(0);
    tgt_offsets.add(0);
    for (std::int64_t i = 0; i < options.records; ++i) {
      const std::vector<std::int32_t> src = synthetic_source(options, i);
      for (std::int32_t t : src) src_tokens.add(t);
      if (options.task == "copy") {
        for (std::int32_t t : src) tgt_tokens.add(t);
      } else {
        for (auto it = src.rbegin(); it != src.rend(); ++it) tgt_tokens.add(*it);
      }
      end += static_cast<std::int64_t>(src.size());
      src_offsets.add(end);
      tgt_offsets.add(end);
    }
    TR_CHECK(end == result.tokens, "prepare_synthetic: token count changed between passes");
    src_tokens.flush();
    tgt_tokens.flush();
    src_offsets.flush();
    tgt_offsets.flush();
  }
  file.write_attr_scalar<std::int64_t>("/", "vocab_size", options.vocab_size);
  file.write_attr_scalar<std::int32_t>("/", "pad_id", kPad);
  file.write_attr_scalar<std::int32_t>("/", "bos_id", kBos);
  file.write_attr_scalar<std::int32_t>("/", "eos_id", kEos);
  file.write_attr_scalar<std::int32_t>("/", "unk_id", kUnk);
  file.write_attr("/", "task", options.task);
  file.close();
  output.commit();
  return result;
}

}  // namespace tr
