// The streaming loader (data/loader.h): sentence batching per step, DP rank and micro-batch;
// seeded shuffling; token batching; epochs and evaluation passes; exact resume; prefetch that
// changes nothing but timing; errors from the prefetch thread reach the caller.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <set>

#include "data/loader.h"
#include "data/permutation.h"
#include "tests/data/dataset_fixtures.h"

namespace tr {
namespace {

using namespace testing_data;

using Records = std::vector<std::int64_t>;
using StepRecords = std::vector<Records>;  // per micro-batch

// Record indices of each micro-batch of a step.
StepRecords records_of(const StepBatches& step, std::int64_t image_records = 0) {
  StepRecords out;
  for (const Batch& batch : step.micro_batches) {
    Records records;
    for (std::int64_t b = 0; b < batch.size(); ++b)
      records.push_back(image_records ? image_record(batch, b, image_records)
                                      : token_record(batch, b));
    out.push_back(records);
  }
  return out;
}

Records iota_records(std::int64_t begin, std::int64_t count) {
  Records r(static_cast<std::size_t>(count));
  std::iota(r.begin(), r.end(), begin);
  return r;
}

Records flatten(const StepRecords& step) {
  Records all;
  for (const Records& r : step) all.insert(all.end(), r.begin(), r.end());
  return all;
}

bool same_tensor(const Tensor& a, const Tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw(), b.raw(), a.bytes()) == 0;
}

// Bitwise equality of everything a step carries.
void expect_same_step(const StepBatches& a, const StepBatches& b) {
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_EQ(a.first_sample, b.first_sample);
  EXPECT_EQ(a.local_samples, b.local_samples);
  EXPECT_EQ(a.local_targets, b.local_targets);
  EXPECT_EQ(a.micro_batch_first_sample, b.micro_batch_first_sample);
  ASSERT_EQ(a.micro_batches.size(), b.micro_batches.size());
  for (std::size_t j = 0; j < a.micro_batches.size(); ++j) {
    const Batch &x = a.micro_batches[j], &y = b.micro_batches[j];
    EXPECT_TRUE(same_tensor(x.src, y.src) && same_tensor(x.src_len, y.src_len) &&
                same_tensor(x.tgt_in, y.tgt_in) && same_tensor(x.tgt_out, y.tgt_out) &&
                same_tensor(x.tgt_len, y.tgt_len) && same_tensor(x.images, y.images) &&
                same_tensor(x.labels, y.labels))
        << "micro-batch " << j;
  }
}

std::vector<StepBatches> take(Loader& loader, int steps) {
  std::vector<StepBatches> out;
  for (int i = 0; i < steps; ++i) {
    StepBatches s;
    EXPECT_TRUE(loader.next(s)) << "step " << i;
    out.push_back(std::move(s));
  }
  return out;
}

std::string translation_file(const TempDir& dir, std::int64_t records, std::int64_t max_src = 9,
                             std::int64_t max_tgt = 6) {
  TranslationSpec spec;
  spec.records = numbered_records(records, max_src, max_tgt);
  const std::string path = dir.file("tr.h5");
  write_translation(path, spec);
  return path;
}

// mean 0 / std 1, so image_record() can tell records apart.
std::string image_file(const TempDir& dir, std::int64_t records) {
  ImageSpec spec;
  spec.N = records;
  spec.mean = {0.0f, 0.0f};
  spec.std = {1.0f, 1.0f};
  const std::string path = dir.file("img.h5");
  write_images(path, spec);
  return path;
}

LoaderOptions sentences(const std::string& path, std::int64_t micro, std::int64_t accumulation,
                        int dp_size = 1, int dp_rank = 0) {
  LoaderOptions o;
  o.path = path;
  o.shuffle = false;
  o.micro_batch = micro;
  o.accumulation = accumulation;
  o.dp_size = dp_size;
  o.dp_rank = dp_rank;
  o.global_batch = micro * accumulation * dp_size;
  o.drop_last = true;
  o.prefetch = 0;
  return o;
}

LoaderOptions tokens(const std::string& path, std::int64_t max_tokens, std::int64_t accumulation,
                     int dp_size = 1, int dp_rank = 0) {
  LoaderOptions o = sentences(path, 1, accumulation, dp_size, dp_rank);
  o.batching = "tokens";
  o.max_tokens = max_tokens;
  return o;
}

// ---- sentence batching -----------------------------------------------------------------------

TEST(LoaderSentences, OneProcessStepKIsRecordsKBToKBPlusBInFileOrder) {
  TempDir dir;
  const std::string path = translation_file(dir, 21);
  Loader loader(sentences(path, 2, 2));  // B = 4: 5 steps per epoch, record 20 left out
  EXPECT_EQ(loader.steps_per_epoch(), 5);
  EXPECT_EQ(loader.info().records, 21);
  for (int k = 0; k < 12; ++k) {
    const std::int64_t epoch = k / 5, step = k % 5;
    EXPECT_EQ(loader.state().epoch, epoch);
    EXPECT_EQ(loader.state().step_in_epoch, step);
    StepBatches s;
    ASSERT_TRUE(loader.next(s));
    EXPECT_EQ(records_of(s),
              (StepRecords{iota_records(step * 4, 2), iota_records(step * 4 + 2, 2)}))
        << "step " << k;
    EXPECT_EQ(s.epoch, epoch);
    EXPECT_EQ(s.first_sample, epoch * 21 + step * 4);
    EXPECT_EQ(s.micro_batch_first_sample,
              (std::vector<std::int64_t>{epoch * 21 + step * 4, epoch * 21 + step * 4 + 2}));
    EXPECT_EQ(s.local_samples, 4);
    std::int64_t targets = 0;
    for (std::int64_t r : flatten(records_of(s))) targets += (r * 5) % 6 + 1;  // tgt + eos
    EXPECT_EQ(s.local_targets, targets);
  }
}

TEST(LoaderSentences, ImagesInFileOrder) {
  TempDir dir;
  const std::string path = image_file(dir, 10);
  LoaderOptions o = sentences(path, 3, 1);
  Loader loader(o);
  EXPECT_EQ(loader.steps_per_epoch(), 3);
  for (int k = 0; k < 4; ++k) {
    StepBatches s;
    ASSERT_TRUE(loader.next(s));
    ASSERT_EQ(s.micro_batches.size(), 1u);
    EXPECT_EQ(s.micro_batches[0].images.shape(), (Shape{3, 2, 3, 2}));
    EXPECT_EQ(records_of(s, 10), (StepRecords{iota_records((k % 3) * 3, 3)}));
    EXPECT_EQ(s.local_samples, 3);
    EXPECT_EQ(s.local_targets, 3);
  }
  EXPECT_EQ(loader.state().epoch, 1);
  EXPECT_EQ(loader.state().step_in_epoch, 1);
}

TEST(LoaderSentences, EachRankGetsItsMicroBatchesOfTheGlobalBatch) {
  TempDir dir;
  const std::string path = translation_file(dir, 24);
  const std::int64_t M = 3, A = 2, D = 2, G = M * A * D;
  for (int r = 0; r < D; ++r) {
    Loader loader(sentences(path, M, A, D, r));
    for (std::int64_t k = 0; k < 4; ++k) {
      StepBatches s;
      ASSERT_TRUE(loader.next(s));
      const std::int64_t step = k % 2;
      StepRecords expected;
      for (std::int64_t j = 0; j < A; ++j)
        expected.push_back(iota_records(step * G + (r * A + j) * M, M));
      EXPECT_EQ(records_of(s), expected) << "rank " << r << " step " << k;
      EXPECT_EQ(s.first_sample, (k / 2) * 24 + step * G + r * A * M);
      EXPECT_EQ(s.local_samples, A * M);
    }
  }
}

TEST(LoaderSentences, ShuffleIsSeededPerEpoch) {
  TempDir dir;
  const std::string path = translation_file(dir, 16);
  LoaderOptions o = sentences(path, 4, 1);
  o.shuffle = true;
  o.seed = 7;
  Loader a(o), b(o);
  std::vector<Records> epochs(3);
  for (int k = 0; k < 12; ++k) {
    StepBatches x, y;
    ASSERT_TRUE(a.next(x));
    ASSERT_TRUE(b.next(y));
    expect_same_step(x, y);
    const Records records = flatten(records_of(x));
    epochs[k / 4].insert(epochs[k / 4].end(), records.begin(), records.end());
  }
  for (int e = 0; e < 3; ++e) {
    // Step k holds positions [k*B, (k+1)*B) of the epoch's permutation, seeded by (seed, e).
    EXPECT_EQ(epochs[e], seeded_permutation(16, 7, static_cast<std::uint64_t>(e)));
    Records sorted = epochs[e];
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, iota_records(0, 16)) << "epoch " << e << " covers every record once";
  }
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
  EXPECT_NE(epochs[0], iota_records(0, 16));

  o.seed = 8;
  Loader c(o);
  Records other;
  for (const StepBatches& s : take(c, 4)) {
    const Records records = flatten(records_of(s));
    other.insert(other.end(), records.begin(), records.end());
  }
  EXPECT_NE(other, epochs[0]);
}

// The ranks of a DP group together read exactly the global batch one process would read, in
// the same order and with the same dropout keys.
void expect_ranks_partition(const LoaderOptions& single, const LoaderOptions& rank0,
                            const LoaderOptions& rank1, int steps) {
  Loader one(single), r0(rank0), r1(rank1);
  for (int k = 0; k < steps; ++k) {
    StepBatches s, s0, s1;
    ASSERT_TRUE(one.next(s));
    ASSERT_TRUE(r0.next(s0));
    ASSERT_TRUE(r1.next(s1));
    StepRecords joined = records_of(s0);
    const StepRecords second = records_of(s1);
    joined.insert(joined.end(), second.begin(), second.end());
    EXPECT_EQ(joined, records_of(s)) << "step " << k;
    std::vector<std::int64_t> keys = s0.micro_batch_first_sample;
    keys.insert(keys.end(), s1.micro_batch_first_sample.begin(), s1.micro_batch_first_sample.end());
    EXPECT_EQ(keys, s.micro_batch_first_sample);
    EXPECT_EQ(s0.first_sample, s.first_sample);
    EXPECT_EQ(s0.local_samples + s1.local_samples, s.local_samples);
    EXPECT_EQ(s0.local_targets + s1.local_targets, s.local_targets);
    EXPECT_EQ(s0.micro_batches.size(), rank0.accumulation);
    EXPECT_EQ(s1.micro_batches.size(), rank1.accumulation);
    Records all = flatten(joined);
    std::sort(all.begin(), all.end());
    EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end()) << "ranks overlap";
  }
}

TEST(LoaderSentences, DataParallelRanksPartitionEachGlobalBatch) {
  TempDir dir;
  const std::string path = translation_file(dir, 32);
  LoaderOptions single = sentences(path, 2, 4), r0 = sentences(path, 2, 2, 2, 0),
                r1 = sentences(path, 2, 2, 2, 1);
  for (LoaderOptions* o : {&single, &r0, &r1}) {
    o->shuffle = true;
    o->seed = 3;
  }
  expect_ranks_partition(single, r0, r1, 9);
}

TEST(LoaderSentences, FirstSampleKeysAreUniqueAcrossEpochs) {
  TempDir dir;
  const std::string path = translation_file(dir, 10);
  LoaderOptions o = sentences(path, 2, 2);
  o.shuffle = true;
  Loader loader(o);
  std::set<std::int64_t> keys;
  std::int64_t samples = 0;
  for (const StepBatches& s : take(loader, 6)) {  // 3 epochs of 2 steps
    for (std::size_t j = 0; j < s.micro_batches.size(); ++j) {
      for (std::int64_t i = 0; i < s.micro_batches[j].size(); ++i) {
        const std::int64_t key = s.micro_batch_first_sample[j] + i;
        EXPECT_GE(key, s.epoch * 10);
        EXPECT_LT(key, (s.epoch + 1) * 10);
        keys.insert(key);
        ++samples;
      }
    }
  }
  EXPECT_EQ(static_cast<std::int64_t>(keys.size()), samples);
}

// ---- token batching --------------------------------------------------------------------------

// Every micro-batch's padded size stays within the budget.
void expect_within_budget(const StepBatches& s, std::int64_t max_tokens) {
  for (const Batch& b : s.micro_batches) {
    const std::int64_t longest = std::max(b.src.dim(1), b.tgt_in.dim(1));
    EXPECT_LE(b.size() * longest, max_tokens);
    EXPECT_GE(b.size(), 1);
  }
}

TEST(LoaderTokens, BudgetRespectedAndEveryRecordOncePerPass) {
  TempDir dir;
  const std::string path = translation_file(dir, 200, 30, 20);
  for (bool shuffle : {false, true}) {
    SCOPED_TRACE(shuffle ? "shuffle" : "file order");
    LoaderOptions o = tokens(path, 64, 2);
    o.shuffle = shuffle;
    o.drop_last = false;
    o.sort_window = 40;
    Loader loader(o);
    Records seen;
    StepBatches s;
    std::int64_t steps = 0;
    while (loader.next(s)) {
      expect_within_budget(s, 64);
      const Records records = flatten(records_of(s));
      seen.insert(seen.end(), records.begin(), records.end());
      ++steps;
    }
    EXPECT_EQ(steps, loader.steps_per_epoch());
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(seen, iota_records(0, 200));
  }
}

TEST(LoaderTokens, TrainingEpochsNeverRepeatARecordAndSortWithinWindows) {
  TempDir dir;
  const std::string path = translation_file(dir, 150, 25, 20);
  LoaderOptions o = tokens(path, 80, 1);
  o.shuffle = true;
  o.seed = 11;
  Loader loader(o);
  const std::int64_t steps = loader.steps_per_epoch();
  ASSERT_GT(steps, 5);
  Records epoch0;
  for (const StepBatches& s : take(loader, static_cast<int>(steps))) {
    expect_within_budget(s, 80);
    EXPECT_EQ(s.epoch, 0);
    for (const Records& mb : records_of(s)) epoch0.insert(epoch0.end(), mb.begin(), mb.end());
  }
  Records sorted = epoch0;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end());
  EXPECT_EQ(static_cast<std::int64_t>(sorted.size()), 150);  // A = 1, D = 1: nothing left over
  StepBatches next;
  ASSERT_TRUE(loader.next(next));
  EXPECT_EQ(next.epoch, 1);

  // In file order, records are packed by length within each window: lengths never decrease
  // inside a micro-batch.
  o.shuffle = false;
  Loader ordered(o);
  TranslationSpec spec;
  spec.records = numbered_records(150, 25, 20);
  for (const StepBatches& s : take(ordered, 5)) {
    for (const Records& mb : records_of(s)) {
      for (std::size_t i = 1; i < mb.size(); ++i) {
        const auto length = [&](std::int64_t r) {
          return std::max(spec.records[r].src.size(), spec.records[r].tgt.size());
        };
        EXPECT_LE(length(mb[i - 1]), length(mb[i]));
      }
    }
  }
}

TEST(LoaderTokens, DataParallelRanksPartitionEachGlobalBatch) {
  TempDir dir;
  const std::string path = translation_file(dir, 120, 20, 12);
  LoaderOptions single = tokens(path, 48, 4), r0 = tokens(path, 48, 2, 2, 0),
                r1 = tokens(path, 48, 2, 2, 1);
  for (LoaderOptions* o : {&single, &r0, &r1}) {
    o->shuffle = true;
    o->seed = 5;
  }
  expect_ranks_partition(single, r0, r1, 12);
}

// ---- evaluation passes -----------------------------------------------------------------------

TEST(LoaderEval, EachRecordExactlyOnceAcrossRanksThenFalse) {
  TempDir dir;
  const std::string path = translation_file(dir, 11);
  for (int prefetch : {0, 2}) {
    SCOPED_TRACE("prefetch " + std::to_string(prefetch));
    Records seen;
    std::vector<StepRecords> last(2);
    for (int r = 0; r < 2; ++r) {
      LoaderOptions o = sentences(path, 2, 1, 2, r);
      o.drop_last = false;
      o.prefetch = prefetch;
      Loader loader(o);
      EXPECT_EQ(loader.steps_per_epoch(), 3);
      StepBatches s;
      int steps = 0;
      while (loader.next(s)) {
        const Records records = flatten(records_of(s));
        seen.insert(seen.end(), records.begin(), records.end());
        last[r] = records_of(s);
        ++steps;
      }
      EXPECT_EQ(steps, 3) << "every rank takes the same number of steps";
      EXPECT_FALSE(loader.next(s));
      EXPECT_EQ(loader.state().step_in_epoch, 3);
      // Another pass after rewinding gives the same first step.
      loader.restore({});
      ASSERT_TRUE(loader.next(s));
      EXPECT_EQ(records_of(s), (StepRecords{iota_records(r * 2, 2)}));
    }
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(seen, iota_records(0, 11));
    // The short last step (records 8..10) is split between the ranks.
    EXPECT_EQ(last[0], (StepRecords{{8}}));
    EXPECT_EQ(last[1], (StepRecords{{9, 10}}));
  }
}

TEST(LoaderEval, ShortLastStepForOneProcessAndShuffledPass) {
  TempDir dir;
  const std::string path = image_file(dir, 10);
  for (bool shuffle : {false, true}) {
    LoaderOptions o = sentences(path, 2, 2);
    o.drop_last = false;
    o.shuffle = shuffle;
    o.prefetch = 1;
    Loader loader(o);
    Records seen;
    std::vector<std::int64_t> sizes;
    StepBatches s;
    while (loader.next(s)) {
      const Records records = flatten(records_of(s, 10));
      seen.insert(seen.end(), records.begin(), records.end());
      sizes.push_back(s.local_samples);
    }
    EXPECT_EQ(sizes, (std::vector<std::int64_t>{4, 4, 2}));
    if (!shuffle) {
      EXPECT_EQ(seen, iota_records(0, 10));
    }
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(seen, iota_records(0, 10));
  }
}

TEST(LoaderEval, TokenBatchingPassAcrossRanks) {
  TempDir dir;
  const std::string path = translation_file(dir, 57, 15, 10);
  Records seen;
  std::vector<int> steps(2, 0);
  for (int r = 0; r < 2; ++r) {
    LoaderOptions o = tokens(path, 40, 3, 2, r);
    o.drop_last = false;
    o.prefetch = r;  // one rank with, one without read-ahead
    Loader loader(o);
    StepBatches s;
    while (loader.next(s)) {
      expect_within_budget(s, 40);
      const Records records = flatten(records_of(s));
      seen.insert(seen.end(), records.begin(), records.end());
      ++steps[r];
    }
  }
  EXPECT_EQ(steps[0], steps[1]);
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, iota_records(0, 57));
}

// ---- resume and prefetch ---------------------------------------------------------------------

void expect_resume_exact(const LoaderOptions& o, int before, int after) {
  Loader a(o);
  std::vector<StepBatches> steps = take(a, before);
  const LoaderState saved = a.state();
  std::vector<StepBatches> rest = take(a, after);

  Loader b(o);
  b.restore(saved);
  EXPECT_EQ(b.state().epoch, saved.epoch);
  EXPECT_EQ(b.state().step_in_epoch, saved.step_in_epoch);
  for (int k = 0; k < after; ++k) {
    StepBatches s;
    ASSERT_TRUE(b.next(s));
    expect_same_step(s, rest[k]);
  }
  EXPECT_EQ(b.state().epoch, a.state().epoch);
  EXPECT_EQ(b.state().step_in_epoch, a.state().step_in_epoch);

  // Rewinding a loader that has read ahead drops what it read.
  a.restore(saved);
  for (int k = 0; k < after; ++k) {
    StepBatches s;
    ASSERT_TRUE(a.next(s));
    expect_same_step(s, rest[k]);
  }
}

TEST(LoaderResume, RestoredStateContinuesIdentically) {
  TempDir dir;
  const std::string text = translation_file(dir, 30, 12, 9);
  const std::string images = image_file(dir, 14);
  for (int prefetch : {0, 3}) {
    SCOPED_TRACE("prefetch " + std::to_string(prefetch));
    LoaderOptions o = sentences(text, 2, 2);
    o.shuffle = true;
    o.seed = 9;
    o.prefetch = prefetch;
    expect_resume_exact(o, 5, 9);  // 7 steps per epoch: the resumed part crosses an epoch

    LoaderOptions t = tokens(text, 30, 2);
    t.shuffle = true;
    t.prefetch = prefetch;
    expect_resume_exact(t, 4, 10);

    LoaderOptions i = sentences(images, 4, 1);
    i.shuffle = true;
    i.prefetch = prefetch;
    expect_resume_exact(i, 2, 5);
  }
}

TEST(LoaderPrefetch, SameBatchesWithAndWithoutReadAhead) {
  TempDir dir;
  const std::string text = translation_file(dir, 30, 12, 9);
  const std::string images = image_file(dir, 14);
  LoaderOptions variants[] = {sentences(text, 3, 2), tokens(text, 40, 2), sentences(images, 2, 3)};
  for (LoaderOptions& o : variants) {
    o.shuffle = true;
    o.seed = 21;
    o.prefetch = 0;
    Loader sync(o);
    o.prefetch = 1;
    Loader one(o);
    o.prefetch = 4;
    Loader four(o);
    for (int k = 0; k < 12; ++k) {
      StepBatches a, b, c;
      ASSERT_TRUE(sync.next(a));
      ASSERT_TRUE(one.next(b));
      ASSERT_TRUE(four.next(c));
      expect_same_step(a, b);
      expect_same_step(a, c);
    }
  }
}

TEST(LoaderPrefetch, DestroyedWhileReadingAhead) {
  TempDir dir;
  const std::string path = translation_file(dir, 40);
  for (int round = 0; round < 10; ++round) {
    LoaderOptions o = sentences(path, 2, 1);
    o.prefetch = 3;
    Loader loader(o);
    StepBatches s;
    if (round % 2) {
      ASSERT_TRUE(loader.next(s));  // the thread is running and refilling its queue
      EXPECT_EQ(records_of(s), (StepRecords{{0, 1}}));
    }
  }
  SUCCEED();
}

TEST(LoaderPrefetch, ReadErrorsReachTheCallerUnchanged) {
  TempDir dir;
  TranslationSpec spec;
  spec.vocab = 1000;
  spec.records = numbered_records(12);
  spec.records[5].tgt = {7, 1000};
  const std::string path = dir.file("bad.h5");
  write_translation(path, spec);
  const std::string expected =
      path + ": record 5: target token 1000 is outside [0, vocab_size 1000)";
  for (int prefetch : {0, 1, 3}) {
    SCOPED_TRACE("prefetch " + std::to_string(prefetch));
    LoaderOptions o = sentences(path, 2, 1);
    o.prefetch = prefetch;
    Loader loader(o);
    take(loader, 2);  // records 0..3 are fine
    StepBatches s;
    EXPECT_EQ(user_error_of([&] { loader.next(s); }), expected);
    EXPECT_EQ(user_error_of([&] { loader.next(s); }), expected);  // and stays so
    EXPECT_EQ(loader.state().step_in_epoch, 2);
  }
}

// HDF5 keeps its error printing per thread: a failed read in the prefetch thread must reach
// the caller as one UserError line, with nothing printed.
TEST(LoaderPrefetch, FileErrorsInTheThreadPrintNothing) {
  TempDir dir;
  for (int prefetch : {0, 2}) {
    const std::string path = translation_file(dir, 400, 30, 30);
    LoaderOptions o = sentences(path, 2, 1);
    o.prefetch = prefetch;
    Loader loader(o);  // reads the index; tokens are read by the first next()
    {
      // Overwrites all but the start of the file (superblock, root group) while it is open.
      std::FILE* f = std::fopen(path.c_str(), "r+b");
      ASSERT_NE(f, nullptr);
      std::fseek(f, 0, SEEK_END);
      const long size = std::ftell(f);
      ASSERT_GT(size, 3000);
      std::fseek(f, 3000, SEEK_SET);
      const std::vector<char> junk(static_cast<std::size_t>(size - 3000), '\xA5');
      ASSERT_EQ(std::fwrite(junk.data(), 1, junk.size(), f), junk.size());
      std::fclose(f);
    }
    StepBatches s;
    EXPECT_CONTAINS(user_error_of([&] { loader.next(s); }), path + ": ");
  }
}

// ---- configuration errors --------------------------------------------------------------------

TEST(LoaderErrors, BadOptionsAndFilesAreOneLineUserErrors) {
  TempDir dir;
  const std::string text = translation_file(dir, 10);
  const std::string images = image_file(dir, 10);
  LoaderOptions o = sentences(text, 2, 1);
  o.global_batch = 5;
  EXPECT_CONTAINS(user_error_of([&] { Loader l(o); }),
                  "train.global_batch: 5 is not train.micro_batch 2 x accumulation 1");
  EXPECT_CONTAINS(user_error_of([&] { Loader l(tokens(images, 64, 1)); }),
                  "data.batching: tokens needs a translation dataset");
  EXPECT_EQ(user_error_of([&] { Loader l(sentences(text, 11, 1)); }),
            text + ": 10 records do not fill one step (train.global_batch 11)");
  // Record 1 of numbered_records has 7 % 9 + 1 = 8 source tokens, 9 with eos; record 5 has
  // the most, 9 (10 with eos).
  Loader fits(tokens(text, 10, 1));
  EXPECT_EQ(user_error_of([&] { Loader l(tokens(text, 8, 1)); }),
            text + ": record 1: 9 tokens with bos/eos, more than data.max_tokens 8");
  LoaderOptions capped = sentences(text, 2, 1);
  capped.max_len = 10;
  Loader long_enough(capped);
  capped.max_len = 8;
  EXPECT_EQ(user_error_of([&] { Loader l(capped); }),
            text + ": record 1: source has 8 tokens, more than model.max_len - 1 = 7");
  EXPECT_CONTAINS(user_error_of([&] { Loader l(sentences(dir.file("none.h5"), 2, 1)); }),
                  "none.h5: no such file");
  LoaderOptions bad_batching = sentences(text, 2, 1);
  bad_batching.batching = "words";
  EXPECT_CONTAINS(user_error_of([&] { Loader l(bad_batching); }), "data.batching: 'words'");

  Loader loader(sentences(text, 2, 1));
  EXPECT_CONTAINS(user_error_of([&] {
                    loader.restore({0, 5});
                  }),
                  "cannot resume the data stream at epoch 0, step 5");
  EXPECT_CONTAINS(user_error_of([&] { loader.restore({-1, 0}); }), "cannot resume");
}

}  // namespace
}  // namespace tr
