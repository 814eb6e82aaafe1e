// Translation with an EncoderDecoder: encode once, then greedy or beam search
// (trainer/beam_search.h) with incremental decoding (models/decoder_cache.h).
#pragma once

#include <cstdint>
#include <vector>

#include "models/encoder_decoder.h"

namespace tr {

struct DecodeOptions {
  int beam = 1;  // 1: greedy search
  // The most tokens a translation may have before eos (which is then forced). 0: from the
  // source, 2 * src_len + 10 (src_len counts the source's eos). Always capped by the model's
  // max_len - 1, since bos + the tokens must fit its target positions.
  std::int64_t max_len = 0;
  // alpha: a finished hypothesis scores sum(log p) / (its tokens incl. eos)^alpha. The default
  // 1 ranks by average log-probability per token; 0 ranks by the raw sum (favours short output).
  double length_penalty = 1.0;
  // Decoding starts from bos and stops at eos; bos and pad are never produced.
  std::int32_t bos_id = 1, eos_id = 2, pad_id = 0;
};

// Throws UserError naming the bad option (beam, max_len, length_penalty).
void validate_decode_options(const DecodeOptions& options);

// Per sentence of the batch: the most tokens before eos (see DecodeOptions::max_len).
std::vector<std::int64_t> output_limits(const Tensor& src_len, const DecodeOptions& options,
                                        std::int64_t model_max_len);

// Translates a source-only batch (src, src_len as in Batch; targets unused). Returns each
// sentence's best hypothesis as token ids without bos and eos. Runs the encoder through the
// model's own forward buffers: not between a training forward and its backward.
std::vector<std::vector<std::int32_t>> translate_batch(EncoderDecoder& model, const Batch& batch,
                                                       const DecodeOptions& options);

}  // namespace tr
