#include "data/loader.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>

#include "data/batch_plan.h"
#include "data/dataset_schema.h"
#include "data/h5.h"
#include "data/image_dataset.h"
#include "data/translation_dataset.h"

namespace tr {

namespace {

// One step read ahead, or how the stream stopped.
struct Item {
  StepBatches batches;
  LoaderState after;         // the state once this item is handed out
  bool end = false;          // evaluation pass complete
  std::exception_ptr error;  // reading failed: rethrown by next()
};

void check_options(const LoaderOptions& o) {
  const auto fail = [](const std::string& what) { throw UserError(what); };
  if (o.batching != "sentences" && o.batching != "tokens")
    fail("data.batching: '" + o.batching + "', expected sentences or tokens");
  if (o.dp_size < 1 || o.dp_rank < 0 || o.dp_rank >= o.dp_size)
    fail("loader: data-parallel rank " + std::to_string(o.dp_rank) + " of " +
         std::to_string(o.dp_size));
  if (o.accumulation < 1)
    fail("loader: accumulation " + std::to_string(o.accumulation) + ", expected at least 1");
  if (o.prefetch < 0)
    fail("data.prefetch: " + std::to_string(o.prefetch) + ", expected 0 (no read-ahead) or more");
  if (o.batching == "tokens") {
    if (o.max_tokens < 1)
      fail("data.max_tokens: " + std::to_string(o.max_tokens) + ", expected at least 1");
    return;
  }
  if (o.micro_batch < 1)
    fail("train.micro_batch: " + std::to_string(o.micro_batch) + ", expected at least 1");
  if (o.global_batch != o.micro_batch * o.accumulation * o.dp_size)
    fail("train.global_batch: " + std::to_string(o.global_batch) + " is not train.micro_batch " +
         std::to_string(o.micro_batch) + " x accumulation " + std::to_string(o.accumulation) +
         " x data-parallel size " + std::to_string(o.dp_size));
}

}  // namespace

struct Loader::Impl {
  LoaderOptions options;
  std::unique_ptr<ImageDataset> images;
  std::unique_ptr<TranslationDataset> translation;
  DatasetInfo info;
  std::vector<std::int64_t> lengths;  // token batching: padded length per record

  // The consumer's side: what next() hands out next. `planner` serves steps_per_epoch() and,
  // without prefetch, next() itself; the prefetch thread has a planner of its own.
  LoaderState cursor;
  std::optional<BatchPlanner> planner;

  // Prefetch: the thread fills `queue` with at most options.prefetch items.
  std::thread worker;
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<Item> queue;
  bool stopping = false;

  // Reads the step at `at` into `out` and advances `at`; false when a one-pass stream is over.
  bool produce(BatchPlanner& plans, LoaderState& at, StepBatches& out) const;
  void run_worker(LoaderState from);
  void start_worker();
  void stop_worker();
};

bool Loader::Impl::produce(BatchPlanner& plans, LoaderState& at, StepBatches& out) const {
  const std::int64_t steps = plans.steps_in_epoch(at.epoch);
  if (!options.drop_last && at.step_in_epoch >= steps) return false;
  if (steps == 0)
    throw UserError(info.path + ": epoch " + std::to_string(at.epoch) +
                    " packs into fewer micro-batches than one step takes (" +
                    std::to_string(options.dp_size * options.accumulation) +
                    "); lower data.max_tokens or use more records");
  const StepPlan plan = plans.step(at.epoch, at.step_in_epoch);
  out = StepBatches{};
  out.epoch = at.epoch;
  out.first_sample = plan.first_sample;
  out.micro_batch_first_sample = plan.first_samples;
  for (const std::vector<std::int64_t>& records : plan.micro_batches) {
    Batch batch;
    if (images) {
      images->read_batch(records, options.image_dtype, batch, options.augment,
                         static_cast<std::uint64_t>(at.epoch));
      out.local_targets += batch.size();
    } else {
      translation->read_batch(records, batch);
      const std::int32_t* len = batch.tgt_len.data<std::int32_t>();
      for (std::int64_t b = 0; b < batch.size(); ++b) out.local_targets += len[b];
    }
    out.local_samples += batch.size();
    out.micro_batches.push_back(std::move(batch));
  }
  if (++at.step_in_epoch >= steps && options.drop_last) {
    ++at.epoch;
    at.step_in_epoch = 0;
  }
  return true;
}

void Loader::Impl::run_worker(LoaderState from) {
  h5::silence_errors();  // per thread: HDF5 would otherwise print its error stack from here
  BatchPlanner plans(options, info.records, translation ? &lengths : nullptr);
  LoaderState at = from;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex);
      changed.wait(lock, [&] {
        return stopping || queue.size() < static_cast<std::size_t>(options.prefetch);
      });
      if (stopping) return;
    }
    // Reads outside the lock, so next() can take finished steps meanwhile.
    Item item;
    try {
      item.end = !produce(plans, at, item.batches);
      item.after = at;
    } catch (...) {
      item.error = std::current_exception();
    }
    const bool last = item.end || item.error;
    {
      std::lock_guard<std::mutex> lock(mutex);
      queue.push_back(std::move(item));
    }
    changed.notify_all();
    if (last) return;
  }
}

void Loader::Impl::start_worker() {
  stopping = false;
  worker = std::thread([this, from = cursor] { run_worker(from); });
}

void Loader::Impl::stop_worker() {
  if (!worker.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex);
    stopping = true;
  }
  changed.notify_all();
  worker.join();  // a read in progress finishes first; nothing else blocks the thread
  queue.clear();
  stopping = false;
}

Loader::Loader(const LoaderOptions& options) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.options = options;
  check_options(options);
  TR_CHECK(options.image_dtype == DType::f32 || options.image_dtype == DType::f64,
           "Loader: image batches are f32 or f64");
  const std::string kind = schema::dataset_kind(h5::File::open(options.path));
  if (kind == "images") {
    if (options.batching == "tokens")
      throw UserError("data.batching: tokens needs a translation dataset; " + options.path +
                      " holds images");
    m.images = std::make_unique<ImageDataset>(options.path);
    m.info = m.images->info();
  } else {
    m.translation = std::make_unique<TranslationDataset>(options.path);
    m.info = m.translation->info();
    m.translation->check_max_len(options.max_len);
    if (options.batching == "tokens") {
      m.lengths.resize(static_cast<std::size_t>(m.info.records));
      for (std::int64_t i = 0; i < m.info.records; ++i) {
        m.lengths[static_cast<std::size_t>(i)] = m.translation->padded_length(i);
        if (m.lengths[static_cast<std::size_t>(i)] > options.max_tokens)
          schema::record_error(options.path, i,
                               std::to_string(m.lengths[static_cast<std::size_t>(i)]) +
                                   " tokens with bos/eos, more than data.max_tokens " +
                                   std::to_string(options.max_tokens));
      }
    }
  }
  m.planner.emplace(options, m.info.records, m.translation ? &m.lengths : nullptr);
  if (options.drop_last && m.planner->steps_in_epoch(0) == 0)
    throw UserError(
        options.path + ": " + std::to_string(m.info.records) + " records do not fill one step (" +
        (options.batching == "tokens"
             ? std::to_string(options.dp_size * options.accumulation) +
                   " micro-batches of data.max_tokens " + std::to_string(options.max_tokens)
             : "train.global_batch " + std::to_string(options.global_batch)) +
        ")");
}

Loader::~Loader() {
  impl_->stop_worker();
}

const DatasetInfo& Loader::info() const {
  return impl_->info;
}

bool Loader::next(StepBatches& out) {
  Impl& m = *impl_;
  if (m.options.prefetch == 0) {
    LoaderState at = m.cursor;
    if (!m.produce(*m.planner, at, out)) return false;
    m.cursor = at;
    return true;
  }
  if (!m.worker.joinable()) m.start_worker();
  std::unique_lock<std::mutex> lock(m.mutex);
  m.changed.wait(lock, [&] { return !m.queue.empty(); });
  // The end marker and errors stay queued: every later call answers the same.
  Item& front = m.queue.front();
  if (front.error) std::rethrow_exception(front.error);
  if (front.end) return false;
  out = std::move(front.batches);
  m.cursor = front.after;
  m.queue.pop_front();
  lock.unlock();
  m.changed.notify_all();
  return true;
}

LoaderState Loader::state() const {
  return impl_->cursor;
}

void Loader::restore(const LoaderState& state) {
  Impl& m = *impl_;
  const std::int64_t steps =
      state.epoch >= 0 && state.step_in_epoch >= 0 ? m.planner->steps_in_epoch(state.epoch) : -1;
  const bool valid =
      m.options.drop_last ? state.step_in_epoch < steps : state.step_in_epoch <= steps;
  if (steps < 0 || !valid)
    throw UserError(m.info.path + ": cannot resume the data stream at epoch " +
                    std::to_string(state.epoch) + ", step " + std::to_string(state.step_in_epoch) +
                    ": that epoch has " + std::to_string(std::max<std::int64_t>(steps, 0)) +
                    " steps (did the dataset or the batch size change?)");
  m.stop_worker();
  m.cursor = state;
}

std::int64_t Loader::steps_per_epoch() const {
  return impl_->planner->steps_in_epoch(impl_->cursor.epoch);
}

}  // namespace tr
