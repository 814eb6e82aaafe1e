// Which records each step and rank reads: the batching rules of data/loader.h as pure
// functions of (options, records, epoch, step), with no file access. Every rank computes the
// same plans, so the ranks agree on each global batch without talking to each other.
#pragma once

#include <cstdint>
#include <vector>

#include "data/loader.h"

namespace tr {

// One rank's share of one step.
struct StepPlan {
  std::vector<std::vector<std::int64_t>> micro_batches;  // record indices, in batch order
  std::vector<std::int64_t> first_samples;  // per micro-batch: epoch * records + position
  std::int64_t first_sample = 0;            // of the share (also when it is empty)
};

class BatchPlanner {
 public:
  // `lengths` (token batching only, else null): each record's padded length, the longer of
  // src + [eos] and [bos] + tgt. It must outlive the planner.
  BatchPlanner(const LoaderOptions& options, std::int64_t records,
               const std::vector<std::int64_t>* lengths);

  // Steps of `epoch`: whole global batches only when options.drop_last (training); otherwise
  // every record once, the last step possibly short. With token batching the count varies a
  // little between shuffled epochs, since packing depends on the order.
  std::int64_t steps_in_epoch(std::int64_t epoch);
  StepPlan step(std::int64_t epoch, std::int64_t step);

  // Records sorted and packed together by token batching (options.sort_window, or its default).
  std::int64_t window() const { return window_; }

 private:
  // Builds the order (and for token batching the micro-batches) of `epoch`; keeps the last one.
  void prepare(std::int64_t epoch);
  void pack_tokens(const std::vector<std::int64_t>& order);
  std::vector<std::int64_t> epoch_order(std::int64_t epoch) const;

  LoaderOptions options_;
  std::int64_t records_ = 0;
  const std::vector<std::int64_t>* lengths_ = nullptr;
  std::int64_t window_ = 0;
  std::int64_t epoch_ = -1;  // whose plan the members below hold
  // Sentence batching with shuffle: record at each position of the epoch (else identity).
  std::vector<std::int64_t> order_;
  // Token batching: micro-batch j holds mb_records_[mb_begin_[j], mb_begin_[j + 1]), in step
  // order; mb_begin_[j] is also the epoch position of its first sample.
  std::vector<std::int64_t> mb_records_, mb_begin_;
};

}  // namespace tr
