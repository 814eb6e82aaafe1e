// `trainer smoke`: trains a small model on a synthetic task (no dataset needed) and reports the
// held-out accuracy. Exercises the whole single-process path: model, loss, backward, gradient
// clipping, AdamW with warmup + cosine schedule.
#pragma once

#include <cstdint>
#include <string>

namespace tr {

struct SmokeOptions {
  std::string model = "vit";  // vit | encoder_decoder
  std::int64_t steps = 200;
  std::int64_t batch = 32;
  std::uint64_t seed = 1;
  double lr = 1e-3;
  std::int64_t log_every = 20;
  std::string init;             // weights file to start from (DESIGN section 5); empty: seeded init
  std::string save;             // weights file written after training; empty: none
  std::string device = "auto";  // cpu | cuda | auto (the GPU where one is usable)
};

// Returns the held-out accuracy in [0, 1].
double run_smoke(const SmokeOptions& options);

}  // namespace tr
