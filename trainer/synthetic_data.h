// Synthetic tasks that need no dataset: a quick end-to-end check of the whole training path.
//   images: class k draws a bright horizontal bar in band k of the image, plus noise;
//   copy:   the target is the source sequence of random tokens.
#pragma once

#include <cstdint>

#include "models/model.h"

namespace tr {

// Fills `batch` (reusing its tensors) with B synthetic samples, the i-th drawn from the
// counter-based RNG at (seed, index + i): the same index always gives the same sample.
void synthetic_image_batch(Batch& batch, const ModelConfig& config, std::int64_t B,
                           std::uint64_t seed, std::int64_t index, DType dtype);
void synthetic_copy_batch(Batch& batch, const ModelConfig& config, std::int64_t B,
                          std::int64_t max_tokens, std::uint64_t seed, std::int64_t index);

}  // namespace tr
