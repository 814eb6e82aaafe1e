// Subword tokenizer: a thin wrapper over SentencePiece (unigram or BPE), plus its training.
//
// A model is an opaque byte string (SentencePiece's serialized ModelProto). The translation
// dataset stores it as /tokenizer, so a dataset decodes itself; a standalone .model file (as
// spm_train writes) holds the same bytes. Models trained here use pad 0, bos 1, eos 2, unk 3.
//
// Encoding applies SentencePiece's normalisation (NFKC, whitespace collapsed and trimmed), so
// decode(encode(s)) equals s up to that normalisation. Encoding and decoding are const and may
// be called from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace tr {

class Tokenizer {
 public:
  // A SentencePiece .model file, or a prepared translation dataset (HDF5) whose /tokenizer
  // dataset holds the model. Errors name the file: "x.model: not a SentencePiece model".
  static Tokenizer load(const std::string& path);
  // Serialized model bytes (as train_tokenizer returns them); `origin` names their source in
  // error messages.
  static Tokenizer from_bytes(std::string bytes, const std::string& origin = "tokenizer");

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Ids of `text`, with no BOS/EOS added (a stored record holds none, DESIGN section 4).
  std::vector<std::int32_t> encode(std::string_view text) const;
  // Text of `ids`; control ids (pad, bos, eos) decode to nothing. An id outside the vocabulary
  // is a UserError naming the tokenizer.
  std::string decode(std::span<const std::int32_t> ids) const;
  // The piece (subword string) of one id, "▁the" style.
  std::string piece(std::int32_t id) const;

  std::int32_t vocab_size() const;  // number of pieces, special ones included
  // -1 where the model defines no such piece.
  std::int32_t pad_id() const;
  std::int32_t bos_id() const;
  std::int32_t eos_id() const;
  std::int32_t unk_id() const;

  const std::string& bytes() const { return bytes_; }  // the serialized model
  const std::string& origin() const { return origin_; }

 private:
  Tokenizer(std::string bytes, std::string origin);

  std::string bytes_;
  std::string origin_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};

struct TokenizerTrainOptions {
  // Text files, one sentence per line, gzipped or plain; empty lines are skipped. A joint
  // vocabulary for translation passes both sides.
  std::vector<std::string> inputs;
  std::int32_t vocab_size = 8000;      // pieces in all, the 4 special ones included
  std::string model_type = "unigram";  // unigram | bpe
  // Share of characters covered by the vocabulary; rarer ones map to unk. 1.0 suits languages
  // with small alphabets (English, German); CJK text wants 0.9995.
  double character_coverage = 1.0;
  // Training is reproducible for a fixed thread count; 1 makes the model the same on every
  // machine. More threads only speed up the unigram EM steps.
  int num_threads = 1;
  std::uint32_t seed = 0;
};

// Trains a model on every line of the inputs (no sampling, no shuffling: the whole corpus is
// used in file order, so the result depends only on the inputs and the options) and returns
// its serialized bytes. SentencePiece's own logging stays quiet; failures (for instance a
// vocabulary larger than the corpus allows) are one-line UserErrors naming the inputs.
std::string train_tokenizer(const TokenizerTrainOptions& options);

}  // namespace tr
