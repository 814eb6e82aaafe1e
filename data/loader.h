// Streaming batches for training and evaluation.
//
// Every rank computes the same deterministic sequence of global batches (seeded per-epoch
// permutation when shuffling, file order otherwise) and reads from the file only the records
// of its own micro-batches: hyperslab reads, done ahead by a prefetch thread whose queue is
// bounded by `prefetch` steps, so memory stays bounded whatever the dataset size.
//
// Sentence batching: step k uses the global batch of positions [k*G, (k+1)*G) of the epoch's
// order (G = global_batch), split into dp_size * accumulation micro-batches of micro_batch
// records; DP rank r gets micro-batches [r*A, (r+1)*A) (A = accumulation), i.e. the records
// [k*G + (r*A + j)*M, ... + M) for its j-th micro-batch. With shuffle off and one process,
// step k trains on records [k*G, (k+1)*G) in file order (DESIGN section 4).
// Token batching (translation): the epoch's order is cut into windows, sorted by length
// within a window, and packed into micro-batches whose padded size (rows x longest sequence)
// stays within max_tokens; a step takes the next dp_size * A micro-batches in a seeded order.
// Epochs wrap around: the permutation of epoch e is seeded by (seed, e).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset_info.h"
#include "models/model.h"

namespace tr {

struct LoaderOptions {
  std::string path;
  bool shuffle = true;
  std::uint64_t seed = 0;
  std::string batching = "sentences";  // sentences | tokens (translation only)
  std::int64_t global_batch = 32;      // records per step, all ranks (sentence batching)
  std::int64_t micro_batch = 32;       // records per micro-batch (sentence batching)
  std::int64_t max_tokens = 4096;      // padded tokens per micro-batch (token batching)
  std::int64_t accumulation = 1;       // micro-batches per step per DP rank
  int dp_rank = 0;
  int dp_size = 1;
  int prefetch = 2;                    // steps read ahead; 0 = read on demand, no thread
  DType image_dtype = DType::f32;      // dtype of Batch::images
  std::int64_t max_len = 0;            // translation: longest src+eos / bos+tgt allowed; 0 = any
  bool drop_last = false;              // evaluation: false keeps a short final batch, no wrap
};

// Where the stream stands; saved in checkpoints so a resumed run continues with the same data.
struct LoaderState {
  std::int64_t epoch = 0;
  std::int64_t step_in_epoch = 0;  // global steps already taken in this epoch
};

// One step's work for this rank.
struct StepBatches {
  std::vector<Batch> micro_batches;  // `accumulation` entries (fewer only at the end, eval)
  std::int64_t epoch = 0;
  std::int64_t first_sample = 0;      // global index of this rank's first sample this step
                                      // (epoch * records + position): keys dropout masks
  std::int64_t local_samples = 0;     // records in this rank's micro-batches
  std::int64_t local_targets = 0;     // non-pad target tokens (translation) or images
};

class Loader {
 public:
  Loader(const LoaderOptions& options);  // validates the file (read_dataset_info) up front
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  const DatasetInfo& info() const;
  // Training: never ends (epochs wrap). Evaluation (drop_last false, shuffle false): returns
  // false once every record was delivered exactly once.
  bool next(StepBatches& out);
  LoaderState state() const;        // the state before the next call to next()
  void restore(const LoaderState& state);
  std::int64_t steps_per_epoch() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tr
