// `prepare synthetic`: copy and reverse tasks as translation datasets without a tokenizer.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "data/dataset_fixtures.h"
#include "data/dataset_info.h"
#include "data/h5.h"
#include "data/loader.h"
#include "data/prepare_synthetic.h"
#include "data/translation_dataset.h"

namespace tr {
namespace {

using testing_data::TempDir;
using testing_data::user_error_of;

PrepareSyntheticOptions options(const std::string& out, const std::string& task) {
  PrepareSyntheticOptions o;
  o.task = task;
  o.records = 50;
  o.vocab_size = 12;
  o.min_len = 2;
  o.max_len = 7;
  o.seed = 5;
  o.out = out;
  o.chunk_tokens = 16;  // several chunks, so the buffered writer's flushes are exercised
  return o;
}

// Every record of a side, read back through the offsets.
std::vector<std::vector<std::int32_t>> records_of(const std::string& path,
                                                  const std::string& side) {
  h5::File f = h5::File::open(path);
  const auto tokens = f.read<std::int32_t>(side + "/tokens");
  const auto offsets = f.read<std::int64_t>(side + "/offsets");
  std::vector<std::vector<std::int32_t>> out;
  for (std::size_t i = 0; i + 1 < offsets.size(); ++i)
    out.emplace_back(tokens.begin() + offsets[i], tokens.begin() + offsets[i + 1]);
  return out;
}

std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(PrepareSynthetic, ReverseTaskWritesTheTranslationFormat) {
  TempDir dir;
  const std::string path = dir.file("sub/reverse.h5");
  const PrepareSyntheticOptions o = options(path, "reverse");
  const PreparedSynthetic r = prepare_synthetic(o);
  EXPECT_EQ(r.records, 50);

  const DatasetInfo info = read_dataset_info(path);
  EXPECT_EQ(info.kind, "translation");
  EXPECT_EQ(info.records, 50);
  EXPECT_EQ(info.vocab_size, 12);
  EXPECT_EQ(info.pad_id, 0);
  EXPECT_EQ(info.bos_id, 1);
  EXPECT_EQ(info.eos_id, 2);
  EXPECT_EQ(info.unk_id, 3);
  EXPECT_FALSE(info.has_tokenizer);
  EXPECT_EQ(h5::File::open(path).read_attr_string("/", "task"), "reverse");

  const auto src = records_of(path, "src");
  const auto tgt = records_of(path, "tgt");
  ASSERT_EQ(src.size(), 50u);
  ASSERT_EQ(tgt.size(), 50u);
  std::int64_t tokens = 0, shortest = 100, longest = 0;
  std::vector<int> seen(12, 0);
  for (std::size_t i = 0; i < src.size(); ++i) {
    std::vector<std::int32_t> reversed(src[i].rbegin(), src[i].rend());
    EXPECT_EQ(tgt[i], reversed) << "record " << i;
    EXPECT_EQ(src[i], synthetic_source(o, static_cast<std::int64_t>(i)));
    const auto n = static_cast<std::int64_t>(src[i].size());
    tokens += n;
    shortest = std::min(shortest, n);
    longest = std::max(longest, n);
    for (std::int32_t t : src[i]) {
      ASSERT_GE(t, 4);
      ASSERT_LT(t, 12);
      ++seen[static_cast<std::size_t>(t)];
    }
  }
  EXPECT_EQ(r.tokens, tokens);
  EXPECT_GE(shortest, 2);
  EXPECT_LE(longest, 7);
  // 50 records of 2..7 tokens: both ends of the length range and every id do occur.
  EXPECT_EQ(shortest, 2);
  EXPECT_EQ(longest, 7);
  for (int t = 4; t < 12; ++t) EXPECT_GT(seen[static_cast<std::size_t>(t)], 0) << "id " << t;

  // Nothing but the file itself is left in its directory (the temporary was renamed).
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir.file("sub")))
    names.push_back(e.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"reverse.h5"});
}

TEST(PrepareSynthetic, CopyTaskTargetsEqualSources) {
  TempDir dir;
  const std::string path = dir.file("copy.h5");
  prepare_synthetic(options(path, "copy"));
  EXPECT_EQ(records_of(path, "src"), records_of(path, "tgt"));
}

TEST(PrepareSynthetic, LoaderBuildsBatchesFromIt) {
  TempDir dir;
  const std::string path = dir.file("reverse.h5");
  prepare_synthetic(options(path, "reverse"));
  LoaderOptions lo;
  lo.path = path;
  lo.shuffle = false;
  lo.global_batch = lo.micro_batch = 8;
  lo.prefetch = 0;
  lo.drop_last = true;
  Loader loader(lo);
  StepBatches step;
  ASSERT_TRUE(loader.next(step));
  ASSERT_EQ(step.micro_batches.size(), 1u);
  const Batch& b = step.micro_batches[0];
  EXPECT_EQ(b.size(), 8);
  // Record 0: src + [eos]; [bos] + reversed src -> reversed src + [eos].
  const auto src = records_of(path, "src")[0];
  const auto n = static_cast<std::int64_t>(src.size());
  for (std::int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(b.src.data<std::int32_t>()[i], src[static_cast<std::size_t>(i)]);
    EXPECT_EQ(b.tgt_out.data<std::int32_t>()[i], src[static_cast<std::size_t>(n - 1 - i)]);
  }
  EXPECT_EQ(b.src.data<std::int32_t>()[n], 2);
  EXPECT_EQ(b.tgt_in.data<std::int32_t>()[0], 1);
  EXPECT_EQ(b.tgt_out.data<std::int32_t>()[n], 2);
}

TEST(PrepareSynthetic, SameSeedSameFileOtherSeedOtherRecords) {
  TempDir dir;
  PrepareSyntheticOptions o = options(dir.file("a.h5"), "reverse");
  prepare_synthetic(o);
  o.out = dir.file("b.h5");
  prepare_synthetic(o);
  EXPECT_EQ(bytes_of(dir.file("a.h5")), bytes_of(dir.file("b.h5")));
  EXPECT_EQ(records_of(dir.file("a.h5"), "src"), records_of(dir.file("b.h5"), "src"));

  o.out = dir.file("c.h5");
  o.seed = 6;
  prepare_synthetic(o);
  EXPECT_NE(records_of(dir.file("a.h5"), "src"), records_of(dir.file("c.h5"), "src"));

  // Record i does not depend on how many records are written.
  o.out = dir.file("d.h5");
  o.seed = 5;
  o.records = 10;
  prepare_synthetic(o);
  const auto all = records_of(dir.file("a.h5"), "src");
  EXPECT_EQ(records_of(dir.file("d.h5"), "src"),
            std::vector<std::vector<std::int32_t>>(all.begin(), all.begin() + 10));
}

TEST(PrepareSynthetic, BadOptionsNameTheOptionAndWriteNothing) {
  TempDir dir;
  const std::string path = dir.file("bad.h5");
  struct Case {
    const char* option;
    void (*change)(PrepareSyntheticOptions&);
  };
  const Case cases[] = {
      {"--task", [](PrepareSyntheticOptions& o) { o.task = "sort"; }},
      {"--records", [](PrepareSyntheticOptions& o) { o.records = 0; }},
      {"--vocab", [](PrepareSyntheticOptions& o) { o.vocab_size = 4; }},
      {"--min-len", [](PrepareSyntheticOptions& o) { o.min_len = 0; }},
      {"--max-len", [](PrepareSyntheticOptions& o) { o.max_len = 1; }},
  };
  for (const Case& c : cases) {
    PrepareSyntheticOptions o = options(path, "reverse");
    c.change(o);
    const std::string message = user_error_of([&] { prepare_synthetic(o); });
    EXPECT_NE(message.find(c.option), std::string::npos) << message;
    EXPECT_FALSE(std::filesystem::exists(path)) << c.option;
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.file("")));
}

}  // namespace
}  // namespace tr
