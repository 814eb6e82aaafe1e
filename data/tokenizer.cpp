#include "data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <unordered_map>

#include "data/gz_reader.h"
#include "data/h5.h"
#include "layers/error.h"

namespace tr {

namespace {

// SentencePiece statuses read "Internal: ./src/trainer_interface.cc(660) [(a) == (b)] What
// went wrong."; the user needs only the last part.
std::string status_message(const sentencepiece::util::Status& status) {
  std::string message = status.message();
  const std::size_t bracket = message.rfind("] ");
  if (bracket != std::string::npos) message = message.substr(bracket + 2);
  return message;
}

bool is_hdf5(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char signature[8] = {};
  in.read(signature, 8);
  return in.gcount() == 8 && std::memcmp(signature, "\x89HDF\r\n\x1a\n", 8) == 0;
}

std::string join(const std::vector<std::string>& items) {
  std::string text;
  for (const std::string& item : items) text += (text.empty() ? "" : ", ") + item;
  return text;
}

// Feeds the trainer every non-empty line of the inputs, one file after the other. Read errors
// are kept and reported through status() rather than thrown through SentencePiece's frames.
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::vector<std::string>& paths) : paths_(paths) { Next(); }

  bool done() const override { return done_; }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override {
    if (error_.empty()) return {};
    return {sentencepiece::util::StatusCode::kInternal, error_};
  }
  const std::string& error() const { return error_; }

  void Next() override {
    try {
      while (!done_) {
        if (!reader_) {
          if (next_file_ == paths_.size()) {
            done_ = true;
            return;
          }
          reader_.emplace(paths_[next_file_++]);
        }
        if (!reader_->read_line(line_)) {
          reader_.reset();
          continue;
        }
        if (!line_.empty()) return;
      }
    } catch (const UserError& e) {
      error_ = e.what();
      done_ = true;
    }
  }

 private:
  std::vector<std::string> paths_;
  std::size_t next_file_ = 0;
  std::optional<GzReader> reader_;
  std::string line_;
  std::string error_;
  bool done_ = false;
};

}  // namespace

Tokenizer::Tokenizer(std::string bytes, std::string origin)
    : bytes_(std::move(bytes)),
      origin_(std::move(origin)),
      processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  const auto status = processor_->LoadFromSerializedProto(bytes_);
  if (!status.ok())
    throw UserError(origin_ + ": not a SentencePiece model (" + status_message(status) + ")");
}

Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_bytes(std::string bytes, const std::string& origin) {
  return Tokenizer(std::move(bytes), origin);
}

Tokenizer Tokenizer::load(const std::string& path) {
  if (is_hdf5(path)) {
    h5::File file = h5::File::open(path);
    if (!file.is_dataset("tokenizer"))
      throw UserError(path + ": holds no tokenizer (dataset 'tokenizer' is missing)");
    const std::vector<std::uint8_t> data = file.read<std::uint8_t>("tokenizer");
    return Tokenizer(std::string(data.begin(), data.end()), path + ": dataset 'tokenizer'");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(path + ": no such file");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw UserError(path + ": cannot read");
  return Tokenizer(std::move(bytes), path);
}

std::vector<std::int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int> ids;
  const auto status = processor_->Encode(text, &ids);
  if (!status.ok()) throw UserError(origin_ + ": cannot encode (" + status_message(status) + ")");
  return std::vector<std::int32_t>(ids.begin(), ids.end());
}

std::string Tokenizer::decode(std::span<const std::int32_t> ids) const {
  const std::int32_t size = vocab_size();
  for (std::int32_t id : ids)
    if (id < 0 || id >= size)
      throw UserError(origin_ + ": id " + std::to_string(id) + " is outside the vocabulary of " +
                      std::to_string(size));
  std::string text;
  const auto status = processor_->Decode(std::vector<int>(ids.begin(), ids.end()), &text);
  if (!status.ok()) throw UserError(origin_ + ": cannot decode (" + status_message(status) + ")");
  return text;
}

std::string Tokenizer::piece(std::int32_t id) const {
  if (id < 0 || id >= vocab_size())
    throw UserError(origin_ + ": id " + std::to_string(id) + " is outside the vocabulary of " +
                    std::to_string(vocab_size()));
  return processor_->IdToPiece(id);
}

std::int32_t Tokenizer::vocab_size() const {
  return processor_->GetPieceSize();
}
std::int32_t Tokenizer::pad_id() const {
  return processor_->pad_id();
}
std::int32_t Tokenizer::bos_id() const {
  return processor_->bos_id();
}
std::int32_t Tokenizer::eos_id() const {
  return processor_->eos_id();
}
std::int32_t Tokenizer::unk_id() const {
  return processor_->unk_id();
}

std::string train_tokenizer(const TokenizerTrainOptions& options) {
  const std::string inputs = options.inputs.empty() ? "(no input)" : join(options.inputs);
  if (options.inputs.empty()) throw UserError("tokenizer training: no input files");
  if (options.model_type != "unigram" && options.model_type != "bpe")
    throw UserError("tokenizer model type '" + options.model_type + "': expected unigram or bpe");
  if (options.vocab_size < 5)
    throw UserError("tokenizer vocabulary size " + std::to_string(options.vocab_size) +
                    ": must exceed the 4 special pieces (pad, bos, eos, unk)");
  if (options.num_threads < 1) throw UserError("tokenizer training: num_threads must be >= 1");
  for (const std::string& path : options.inputs) GzReader check(path);  // fail early, clearly

  const std::unordered_map<std::string, std::string> spec = {
      {"model_type", options.model_type},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"character_coverage", std::to_string(options.character_coverage)},
      {"pad_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"unk_id", "3"},
      // Every sentence, in file order: sampling or shuffling would make the model depend on
      // the random generator and on the corpus size threshold.
      {"input_sentence_size", "0"},
      {"shuffle_input_sentence", "false"},
      {"num_threads", std::to_string(options.num_threads)},
      // Errors come back as statuses; SentencePiece's INFO/WARNING lines would only clutter.
      {"minloglevel", "2"},
  };
  sentencepiece::SetRandomGeneratorSeed(options.seed);
  LineIterator lines(options.inputs);
  std::string model;
  const auto status = sentencepiece::SentencePieceTrainer::Train(spec, &lines, &model);
  if (!lines.error().empty()) throw UserError(lines.error());
  if (!status.ok())
    throw UserError("tokenizer training on " + inputs + ": " + status_message(status));
  return model;
}

}  // namespace tr
