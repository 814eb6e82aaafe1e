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
//
// drop_last picks the kind of stream. true (training): epochs wrap, and records that do not
// fill a whole step at the end of an epoch are left out of it (with shuffle, other ones each
// epoch). false (evaluation): one pass over every record exactly once; the last step may be
// short, its span of records (token batching: micro-batches) split among the DP ranks in
// near-equal contiguous parts, so a rank may get fewer micro-batches than `accumulation`, or
// none; every rank still gets the same number of steps, then next() returns false. Call
// restore({}) to start another pass.
//
// Dropout keys: sample i of micro-batch j has the global index
// micro_batch_first_sample[j] + i = epoch * records + (the number of samples the epoch's
// steps deliver before it, over all ranks), unique across epochs and, for a given global
// batch, independent of the TP x DP layout.
//
// Thread safety: one thread uses a Loader; the prefetch thread is internal. Errors met while
// reading ahead (a bad token, a label out of range, an I/O failure) are rethrown, unchanged,
// by the next() that would have returned the failed step, and by every next() after it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset_info.h"
#include "data/image_augment.h"
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
  int prefetch = 2;                // steps read ahead; 0 = read on demand, no thread
  DType image_dtype = DType::f32;  // dtype of Batch::images
  ImageAugment augment;            // images: training-time flips and shifts (none by default)
  std::int64_t max_len = 0;        // translation: longest src+eos / bos+tgt allowed; 0 = any
  bool drop_last = false;          // evaluation: false keeps a short final batch, no wrap
  std::int64_t sort_window = 0;    // token batching: records sorted by length together;
                                   // 0 = about 64 micro-batches' worth
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
  std::int64_t first_sample = 0;   // global index of this rank's first sample this step
                                   // (epoch * records + position): keys dropout masks
  std::int64_t local_samples = 0;  // records in this rank's micro-batches
  std::int64_t local_targets = 0;  // non-pad target tokens (translation) or images
  std::vector<std::int64_t> micro_batch_first_sample;  // first_sample of each micro-batch
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
  LoaderState state() const;  // the state before the next call to next()
  // Continues from `state` as an uninterrupted loader would (read-ahead work is dropped).
  // Token batching: resume with the same dp_size * accumulation (micro-batches per step).
  void restore(const LoaderState& state);
  // Steps of the epoch state() is in (token batching: the count varies a little between
  // shuffled epochs, since packing follows the order).
  std::int64_t steps_per_epoch() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tr
