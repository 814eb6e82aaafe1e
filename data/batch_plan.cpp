#include "data/batch_plan.h"

#include <algorithm>
#include <numeric>

#include "data/permutation.h"

namespace tr {

namespace {

// Philox streams of the two per-epoch permutations: records use stream = epoch, the order of
// packed micro-batches a disjoint range of streams.
constexpr std::uint64_t kMicroBatchStream = std::uint64_t{1} << 62;

// Token batching sorts this many micro-batches' worth of records at a time: enough for little
// padding, few enough that the batches of a window still come from one stretch of the order.
constexpr std::int64_t kWindowMicroBatches = 64;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}

}  // namespace

BatchPlanner::BatchPlanner(const LoaderOptions& options, std::int64_t records,
                           const std::vector<std::int64_t>* lengths)
    : options_(options), records_(records), lengths_(lengths) {
  if (options_.batching == "tokens") {
    TR_CHECK(lengths_ && static_cast<std::int64_t>(lengths_->size()) == records_,
             "token batching needs every record's length");
    window_ = options_.sort_window;
    if (window_ <= 0) {
      const std::int64_t total =
          std::accumulate(lengths_->begin(), lengths_->end(), std::int64_t{0});
      const std::int64_t mean = std::max<std::int64_t>(1, records_ ? total / records_ : 1);
      window_ = kWindowMicroBatches * std::max<std::int64_t>(1, options_.max_tokens / mean);
    }
  }
}

std::vector<std::int64_t> BatchPlanner::epoch_order(std::int64_t epoch) const {
  if (options_.shuffle)
    return seeded_permutation(records_, options_.seed, static_cast<std::uint64_t>(epoch));
  std::vector<std::int64_t> order(static_cast<std::size_t>(records_));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  return order;
}

void BatchPlanner::prepare(std::int64_t epoch) {
  if (epoch == epoch_) return;
  if (options_.batching == "tokens") {
    pack_tokens(epoch_order(epoch));
    if (options_.shuffle) {
      // Batches of similar lengths would otherwise come in runs (short ones first in each
      // window); a seeded order of the micro-batches mixes them.
      const std::int64_t count = static_cast<std::int64_t>(mb_begin_.size()) - 1;
      const std::vector<std::int64_t> perm = seeded_permutation(
          count, options_.seed, kMicroBatchStream | static_cast<std::uint64_t>(epoch));
      std::vector<std::int64_t> records, begin{0};
      records.reserve(mb_records_.size());
      for (std::int64_t j : perm) {
        records.insert(records.end(), mb_records_.begin() + mb_begin_[j],
                       mb_records_.begin() + mb_begin_[j + 1]);
        begin.push_back(static_cast<std::int64_t>(records.size()));
      }
      mb_records_ = std::move(records);
      mb_begin_ = std::move(begin);
    }
  } else if (options_.shuffle) {
    order_ = epoch_order(epoch);
  }
  epoch_ = epoch;
}

void BatchPlanner::pack_tokens(const std::vector<std::int64_t>& order) {
  const std::vector<std::int64_t>& length = *lengths_;
  mb_records_.clear();
  mb_records_.reserve(order.size());
  mb_begin_.assign(1, 0);
  std::vector<std::int64_t> window;
  for (std::size_t w = 0; w < order.size(); w += static_cast<std::size_t>(window_)) {
    const std::size_t end = std::min(order.size(), w + static_cast<std::size_t>(window_));
    window.assign(order.begin() + static_cast<std::ptrdiff_t>(w),
                  order.begin() + static_cast<std::ptrdiff_t>(end));
    // Stable: equal lengths keep their order, so the result does not depend on the library.
    std::stable_sort(window.begin(), window.end(),
                     [&](std::int64_t a, std::int64_t b) { return length[a] < length[b]; });
    std::int64_t rows = 0, longest = 0;
    for (std::int64_t r : window) {
      const std::int64_t grown = std::max(longest, length[r]);
      if (rows > 0 && (rows + 1) * grown > options_.max_tokens) {
        mb_begin_.push_back(static_cast<std::int64_t>(mb_records_.size()));
        rows = 0;
      }
      longest = rows == 0 ? length[r] : std::max(longest, length[r]);
      ++rows;
      mb_records_.push_back(r);
    }
    if (rows > 0) mb_begin_.push_back(static_cast<std::int64_t>(mb_records_.size()));
  }
}

std::int64_t BatchPlanner::steps_in_epoch(std::int64_t epoch) {
  const bool whole_only = options_.drop_last;
  if (options_.batching == "tokens") {
    prepare(epoch);
    const std::int64_t units = static_cast<std::int64_t>(mb_begin_.size()) - 1;
    const std::int64_t per_step = options_.dp_size * options_.accumulation;
    return whole_only ? units / per_step : ceil_div(units, per_step);
  }
  return whole_only ? records_ / options_.global_batch : ceil_div(records_, options_.global_batch);
}

StepPlan BatchPlanner::step(std::int64_t epoch, std::int64_t step) {
  TR_CHECK(step >= 0 && step < steps_in_epoch(epoch), "BatchPlanner: step out of range");
  prepare(epoch);
  const std::int64_t D = options_.dp_size, r = options_.dp_rank;
  const std::int64_t base = epoch * records_;
  const bool tokens = options_.batching == "tokens";
  // A step covers a span of units (records, or micro-batches for token batching); rank r takes
  // the r-th of dp_size near-equal parts. For a whole step that is exactly the micro-batches
  // [r*A, (r+1)*A) of the header; only a short last step (evaluation) splits differently.
  const std::int64_t units = tokens ? static_cast<std::int64_t>(mb_begin_.size()) - 1 : records_;
  const std::int64_t per_step = tokens ? D * options_.accumulation : options_.global_batch;
  const std::int64_t span_begin = step * per_step;
  const std::int64_t span = std::min(per_step, units - span_begin);
  const std::int64_t begin = span_begin + r * span / D, end = span_begin + (r + 1) * span / D;

  StepPlan plan;
  if (tokens) {
    plan.first_sample = base + mb_begin_[begin];
    for (std::int64_t j = begin; j < end; ++j) {
      plan.micro_batches.emplace_back(mb_records_.begin() + mb_begin_[j],
                                      mb_records_.begin() + mb_begin_[j + 1]);
      plan.first_samples.push_back(base + mb_begin_[j]);
    }
    return plan;
  }
  plan.first_sample = base + begin;
  for (std::int64_t p = begin; p < end; p += options_.micro_batch) {
    const std::int64_t q = std::min(end, p + options_.micro_batch);
    std::vector<std::int64_t> records(static_cast<std::size_t>(q - p));
    for (std::int64_t i = p; i < q; ++i)
      records[static_cast<std::size_t>(i - p)] = options_.shuffle ? order_[i] : i;
    plan.micro_batches.push_back(std::move(records));
    plan.first_samples.push_back(base + p);
  }
  return plan;
}

}  // namespace tr
