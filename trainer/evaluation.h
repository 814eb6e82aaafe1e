// Evaluation on a held-out dataset: loss (the training criterion), accuracy (ViT: top-1;
// translation: teacher-forced next-token accuracy) and, for translation, corpus BLEU (translation,
// sacreBLEU's 13a on detokenised greedy or beam output).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "models/model.h"
#include "parallel/communicator.h"

namespace tr {

struct EvalOptions {
  std::string path;              // dataset file
  std::int64_t batch = 64;       // records per forward pass
  std::int64_t max_batches = 0;  // 0 = every record
  bool bleu = true;              // translation: decode and score (slower than the loss alone)
  int beam = 1;                  // 1 = greedy
  const Tokenizer* tokenizer = nullptr;            // translation BLEU: detokenises both sides
  std::vector<std::string>* hypotheses = nullptr;  // when set, receives this rank's translations
  // Data-parallel evaluation: each DP rank evaluates its share, results are summed over the
  // group (BLEU from summed n-gram statistics). Null: the whole set on this process.
  Communicator* dp = nullptr;
};

struct EvalResult {
  double loss = 0;
  std::int64_t targets = 0;  // tokens or images the loss averages over
  std::int64_t records = 0;
  double accuracy = 0;  // images: top-1; translation: teacher-forced token accuracy
  double bleu = -1;     // translation with options.bleu; -1 otherwise
};

// Runs on the model's device (Model::device()): the CPU, or the GPU a training run is on.
EvalResult evaluate(Model& model, const EvalOptions& options);

}  // namespace tr
