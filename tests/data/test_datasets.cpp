// Dataset readers (data/image_dataset.h, data/translation_dataset.h, data/dataset_info.h):
// schema and record errors as one-line UserErrors naming file and record, with nothing from
// HDF5 on stderr; normalised pixels; translation batches with bos/eos and padding.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <set>

#include "data/dataset_info.h"
#include "data/image_dataset.h"
#include "data/permutation.h"
#include "data/translation_dataset.h"
#include "tests/data/dataset_fixtures.h"

namespace tr {
namespace {

using namespace testing_data;

// ---- image datasets ------------------------------------------------------------------------

TEST(ImageDataset, InfoDescribesTheFile) {
  TempDir dir;
  ImageSpec spec;
  spec.class_names = {"a", "b", "c", "d"};
  write_images(dir.file("img.h5"), spec);
  const DatasetInfo info = read_dataset_info(dir.file("img.h5"));
  EXPECT_EQ(info.kind, "images");
  EXPECT_EQ(info.path, dir.file("img.h5"));
  EXPECT_EQ(info.records, 10);
  EXPECT_EQ(info.height, 3);
  EXPECT_EQ(info.width, 2);
  EXPECT_EQ(info.channels, 2);
  EXPECT_EQ(info.num_classes, 4);
  EXPECT_EQ(info.mean, spec.mean);
  EXPECT_EQ(info.std, spec.std);
  EXPECT_EQ(info.class_names, spec.class_names);
}

struct SchemaCase {
  std::string name;
  std::function<void(const std::string& path)> write;
  std::string expected;  // part of the message after "<path>: "
};

void expect_schema_errors(const std::vector<SchemaCase>& cases,
                          const std::function<void(const std::string&)>& open) {
  TempDir dir;
  for (const SchemaCase& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = dir.file(c.name + ".h5");
    if (c.write) c.write(path);
    const std::string message = user_error_of([&] { open(path); });
    EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << "names the file first: " << message;
    EXPECT_CONTAINS(message, c.expected);
  }
}

std::vector<SchemaCase> image_schema_cases() {
  const auto with = [](std::function<void(ImageSpec&)> edit,
                       std::function<void(h5::File&)> extra = nullptr) {
    return [edit, extra](const std::string& path) {
      ImageSpec spec;
      if (edit) edit(spec);
      write_images(path, spec, extra);
    };
  };
  return {
      {"missing", nullptr, "no such file"},
      {"garbage",
       [](const std::string& path) { std::ofstream(path) << "this is not an HDF5 file\n"; },
       "not an HDF5 file"},
      {"empty", [](const std::string& path) { h5::File::create(path).close(); },
       "not a dataset: expected 'images' and 'labels'"},
      {"images_float",
       with([](ImageSpec& s) { s.omit = {"images"}; },
            [](h5::File& f) {
              f.write<float>("images", {10, 3, 2, 2}, std::vector<float>(120));
            }),
       "dataset 'images' holds float32 values, expected uint8"},
      {"images_int16",
       with([](ImageSpec& s) { s.omit = {"images"}; },
            [](h5::File& f) {
              f.write<std::int32_t>("images", {10, 3, 2, 2}, std::vector<std::int32_t>(120));
            }),
       "dataset 'images' holds 32-bit integer values, expected uint8"},
      {"images_rank3",
       with([](ImageSpec& s) { s.omit = {"images"}; },
            [](h5::File& f) {
              f.write<std::uint8_t>("images", {10, 6, 2}, std::vector<std::uint8_t>(120));
            }),
       "dataset 'images' has shape [10, 6, 2], expected [N,H,W,C]"},
      {"labels_missing", with([](ImageSpec& s) { s.omit = {"labels"}; }),
       "dataset 'labels' is missing"},
      {"labels_count",
       with(
           [](ImageSpec& s) { s.omit = {"labels"}; },
           [](h5::File& f) { f.write<std::int64_t>("labels", {9}, std::vector<std::int64_t>(9)); }),
       "dataset 'labels' has 9 records, dataset 'images' has 10"},
      {"labels_float",
       with([](ImageSpec& s) { s.omit = {"labels"}; },
            [](h5::File& f) { f.write<double>("labels", {10}, std::vector<double>(10)); }),
       "dataset 'labels' holds float64 values, expected integers"},
      {"num_classes_missing", with([](ImageSpec& s) { s.omit = {"num_classes"}; }),
       "root attribute 'num_classes' is missing"},
      {"num_classes_zero",
       with([](ImageSpec& s) { s.omit = {"num_classes"}; },
            [](h5::File& f) { f.write_attr_scalar<std::int64_t>("/", "num_classes", 0); }),
       "root attribute 'num_classes' is 0"},
      {"mean_missing", with([](ImageSpec& s) { s.omit = {"mean"}; }),
       "root attribute 'mean' is missing"},
      {"mean_per_channel", with([](ImageSpec& s) {
         s.mean = {0.1f, 0.2f, 0.3f};
       }),
       "root attribute 'mean' has 3 values, expected one per channel (2"},
      {"std_per_channel", with([](ImageSpec& s) { s.std = {1.0f}; }),
       "root attribute 'std' has 1 values, expected one per channel (2"},
      {"std_zero", with([](ImageSpec& s) {
         s.std = {1.0f, 0.0f};
       }),
       "std > 0"},
      {"class_names_count", with([](ImageSpec& s) {
         s.class_names = {"a", "b"};
       }),
       "root attribute 'class_names' has 2 names, expected num_classes 4"},
  };
}

TEST(ImageDataset, SchemaErrorsNameFileAndObject) {
  expect_schema_errors(image_schema_cases(),
                       [](const std::string& path) { read_dataset_info(path); });
}

TEST(ImageDataset, OpeningChecksTheSchemaToo) {
  std::vector<SchemaCase> cases = image_schema_cases();
  // The reader knows it wants images, so it names what is missing rather than the kinds.
  for (SchemaCase& c : cases)
    if (c.name == "empty") c.expected = "dataset 'images' is missing";
  expect_schema_errors(cases, [](const std::string& path) { ImageDataset dataset(path); });
}

// Expected normalised value, computed as the reader promises: x / 255, then (x - mean) / std,
// in the batch's element type.
template <typename T>
T normalised(std::uint8_t x, float mean, float std) {
  return (static_cast<T>(x) / static_cast<T>(255) - static_cast<T>(mean)) / static_cast<T>(std);
}

template <typename T>
void check_image_batch(DType dtype) {
  TempDir dir;
  ImageSpec spec;
  write_images(dir.file("img.h5"), spec);
  ImageDataset dataset(dir.file("img.h5"));
  // Unsorted, with an adjacent pair (3, 4) that is read as one run.
  const std::vector<std::int64_t> records = {7, 3, 4, 0, 9};
  Batch batch;
  dataset.read_batch(records, dtype, batch);
  ASSERT_EQ(batch.images.shape(), (Shape{5, spec.C, spec.H, spec.W}));
  ASSERT_EQ(batch.images.dtype(), dtype);
  ASSERT_EQ(batch.labels.shape(), (Shape{5}));
  ASSERT_EQ(batch.labels.dtype(), DType::i32);
  const T* x = batch.images.data<T>();
  for (std::size_t b = 0; b < records.size(); ++b) {
    EXPECT_EQ(batch.labels.data<std::int32_t>()[b], label_of(records[b], spec.classes));
    for (std::int64_t c = 0; c < spec.C; ++c)
      for (std::int64_t h = 0; h < spec.H; ++h)
        for (std::int64_t w = 0; w < spec.W; ++w) {
          const T expected = normalised<T>(pixel(records[b], h, w, c), spec.mean[c], spec.std[c]);
          EXPECT_EQ(x[((static_cast<std::int64_t>(b) * spec.C + c) * spec.H + h) * spec.W + w],
                    expected)
              << "record " << records[b] << " c" << c << " h" << h << " w" << w;
        }
  }
  // A known value by hand: record 0, pixel (0,0,0) is 0 -> (0 - 0.25) / 0.5.
  EXPECT_EQ(x[3 * spec.C * spec.H * spec.W], static_cast<T>(-0.5));
}

TEST(ImageDataset, NormalisesPerChannelIntoCHWFloat) {
  check_image_batch<float>(DType::f32);
}
TEST(ImageDataset, NormalisesPerChannelIntoCHWDouble) {
  check_image_batch<double>(DType::f64);
}

TEST(ImageDataset, LabelOutsideClassesNamesTheRecord) {
  TempDir dir;
  const std::string path = dir.file("img.h5");
  for (const auto& [labels, message] :
       std::vector<std::pair<std::vector<std::int64_t>, std::string>>{
           {{0, 1, 2, 3, 0, 1, 2, 4, 0, -1}, "record 7: label 4 is outside [0, num_classes 4)"},
           {{0, 1, 2, 3, 0, 1, 2, 3, 0, -1}, "record 9: label -1 is outside [0, num_classes 4)"}}) {
    ImageSpec spec;
    spec.omit = {"labels"};
    write_images(path, spec, [&](h5::File& f) { f.write<std::int64_t>("labels", {10}, labels); });
    // Labels are index-sized, so they are all checked when the file is opened.
    EXPECT_EQ(user_error_of([&] { read_dataset_info(path); }), path + ": " + message);
    EXPECT_EQ(user_error_of([&] { ImageDataset dataset(path); }), path + ": " + message);
  }
}

// ---- translation datasets ------------------------------------------------------------------

TEST(TranslationDataset, InfoDescribesTheFile) {
  TempDir dir;
  TranslationSpec spec;
  spec.records = numbered_records(6);
  spec.vocab = 900;
  spec.pad = 5;
  spec.bos = 6;
  spec.eos = 7;
  spec.unk = 8;
  spec.tokenizer = true;
  write_translation(dir.file("tr.h5"), spec);
  const DatasetInfo info = read_dataset_info(dir.file("tr.h5"));
  EXPECT_EQ(info.kind, "translation");
  EXPECT_EQ(info.records, 6);
  EXPECT_EQ(info.vocab_size, 900);
  EXPECT_EQ(info.pad_id, 5);
  EXPECT_EQ(info.bos_id, 6);
  EXPECT_EQ(info.eos_id, 7);
  EXPECT_EQ(info.unk_id, 8);
  EXPECT_TRUE(info.has_tokenizer);
  spec.tokenizer = false;
  write_translation(dir.file("tr.h5"), spec);
  EXPECT_FALSE(read_dataset_info(dir.file("tr.h5")).has_tokenizer);
}

std::vector<SchemaCase> translation_schema_cases() {
  const auto with = [](std::function<void(TranslationSpec&)> edit,
                       std::function<void(h5::File&)> extra = nullptr) {
    return [edit, extra](const std::string& path) {
      TranslationSpec spec;
      spec.records = numbered_records(5);  // src: 1+... tokens; tokens total known below
      if (edit) edit(spec);
      write_translation(path, spec, extra);
    };
  };
  const auto offsets = [](std::vector<std::int64_t> values) {
    return [values](h5::File& f) {
      f.write<std::int64_t>("tgt/offsets", {static_cast<std::int64_t>(values.size())}, values);
    };
  };
  // numbered_records(5) targets have 0, 5, 4, 3, 2 tokens: offsets 0 0 5 9 12 14.
  const auto tgt_tokens = [](h5::File& f) {
    f.write<std::int32_t>("tgt/tokens", {14}, std::vector<std::int32_t>(14, 9));
  };
  const auto replace_tgt = [tgt_tokens](std::function<void(h5::File&)> write_offsets) {
    return [tgt_tokens, write_offsets](h5::File& f) {
      tgt_tokens(f);
      write_offsets(f);
    };
  };
  const auto no_tgt = [](TranslationSpec& s) { s.omit = {"tgt"}; };
  return {
      {"tgt_missing", with(no_tgt), "dataset 'tgt/tokens' is missing"},
      {"tokens_float",
       with(no_tgt,
            [](h5::File& f) {
              f.write<float>("tgt/tokens", {14}, std::vector<float>(14));
              f.write<std::int64_t>("tgt/offsets", {6}, {0, 0, 5, 9, 12, 14});
            }),
       "dataset 'tgt/tokens' holds float32 values, expected int32"},
      {"tokens_int64",
       with(no_tgt,
            [](h5::File& f) {
              f.write<std::int64_t>("tgt/tokens", {14}, std::vector<std::int64_t>(14));
              f.write<std::int64_t>("tgt/offsets", {6}, {0, 0, 5, 9, 12, 14});
            }),
       "dataset 'tgt/tokens' holds 64-bit integer values, expected int32"},
      {"tokens_rank2",
       with(no_tgt,
            [](h5::File& f) {
              f.write<std::int32_t>("tgt/tokens", {7, 2}, std::vector<std::int32_t>(14));
              f.write<std::int64_t>("tgt/offsets", {6}, {0, 0, 5, 9, 12, 14});
            }),
       "dataset 'tgt/tokens' has shape [7, 2], expected [T]"},
      {"offsets_float", with(no_tgt, replace_tgt([](h5::File& f) {
                               f.write<double>("tgt/offsets", {6}, {0, 0, 5, 9, 12, 14});
                             })),
       "dataset 'tgt/offsets' holds float64 values, expected integers"},
      {"offsets_empty", with(no_tgt, replace_tgt([](h5::File& f) {
                               f.write<std::int64_t>("tgt/offsets", {0},
                                                     std::vector<std::int64_t>{});
                             })),
       "dataset 'tgt/offsets' is empty, expected N+1 values"},
      {"record_counts_differ", with(no_tgt, replace_tgt(offsets({0, 0, 5, 9, 14}))),
       "'src' has 5 records, 'tgt' has 4"},
      {"offsets_decrease", with(no_tgt, replace_tgt(offsets({0, 0, 5, 4, 12, 14}))),
       "dataset 'tgt/offsets' decreases at record 2 (5 to 4)"},
      {"offsets_beyond_tokens", with(no_tgt, replace_tgt(offsets({0, 0, 5, 9, 15, 16}))),
       "dataset 'tgt/offsets': record 3 ends at 15, beyond the 14 tokens of 'tgt/tokens'"},
      {"offsets_start_not_zero", with(no_tgt, replace_tgt(offsets({1, 1, 5, 9, 12, 14}))),
       "dataset 'tgt/offsets' starts at 1, expected 0"},
      {"offsets_short_of_tokens", with(no_tgt, replace_tgt(offsets({0, 0, 5, 9, 12, 13}))),
       "dataset 'tgt/offsets' ends at 13 but 'tgt/tokens' holds 14 tokens"},
      {"vocab_missing", with([](TranslationSpec& s) { s.omit = {"vocab_size"}; }),
       "root attribute 'vocab_size' is missing"},
      {"eos_missing", with([](TranslationSpec& s) { s.omit = {"eos_id"}; }),
       "root attribute 'eos_id' is missing"},
      {"bos_outside_vocab", with([](TranslationSpec& s) { s.bos = 1000; }),
       "root attribute 'bos_id' is 1000, outside [0, vocab_size 1000)"},
      {"vocab_float",
       with([](TranslationSpec& s) { s.omit = {"vocab_size"}; },
            [](h5::File& f) { f.write_attr_scalar<double>("/", "vocab_size", 1000.0); }),
       "root attribute 'vocab_size' holds floating-point values"},
  };
}

TEST(TranslationDataset, SchemaErrorsNameFileAndObject) {
  expect_schema_errors(translation_schema_cases(),
                       [](const std::string& path) { read_dataset_info(path); });
}

TEST(TranslationDataset, OpeningChecksTheSchemaToo) {
  expect_schema_errors(translation_schema_cases(),
                       [](const std::string& path) { TranslationDataset dataset(path); });
}

TEST(TranslationDataset, BatchAddsBosEosAndPads) {
  TempDir dir;
  TranslationSpec spec;
  spec.pad = 9;
  spec.records = {{{10, 11, 12}, {20}}, {{13}, {}}, {{}, {21, 22, 23, 24}}, {{14, 15}, {25, 26}}};
  write_translation(dir.file("tr.h5"), spec);
  TranslationDataset dataset(dir.file("tr.h5"));
  EXPECT_EQ(dataset.src_tokens(0), 3);
  EXPECT_EQ(dataset.tgt_tokens(2), 4);
  EXPECT_EQ(dataset.padded_length(2), 5);
  Batch batch;
  // Unsorted, with an adjacent run (2, 3) and an empty source and an empty target.
  dataset.read_batch({2, 3, 0, 1}, batch);
  const std::int32_t P = 9, B = 1, E = 2;
  ASSERT_EQ(batch.src.shape(), (Shape{4, 4}));
  ASSERT_EQ(batch.tgt_in.shape(), (Shape{4, 5}));
  ASSERT_EQ(batch.tgt_out.shape(), (Shape{4, 5}));
  const std::vector<std::int32_t> src(batch.src.data<std::int32_t>(),
                                      batch.src.data<std::int32_t>() + 16);
  EXPECT_EQ(src, (std::vector<std::int32_t>{E, P, P, P, 14, 15, E, P, 10, 11, 12, E, 13, E, P, P}));
  const std::vector<std::int32_t> tin(batch.tgt_in.data<std::int32_t>(),
                                      batch.tgt_in.data<std::int32_t>() + 20);
  EXPECT_EQ(tin, (std::vector<std::int32_t>{B, 21, 22, 23, 24, B, 25, 26, P, P,  //
                                            B, 20, P,  P,  P,  B, P,  P,  P, P}));
  const std::vector<std::int32_t> tout(batch.tgt_out.data<std::int32_t>(),
                                       batch.tgt_out.data<std::int32_t>() + 20);
  EXPECT_EQ(tout, (std::vector<std::int32_t>{21, 22, 23, 24, E, 25, 26, E, P, P,  //
                                             20, E,  P,  P,  P, E,  P,  P, P, P}));
  const std::vector<std::int32_t> src_len(batch.src_len.data<std::int32_t>(),
                                          batch.src_len.data<std::int32_t>() + 4);
  const std::vector<std::int32_t> tgt_len(batch.tgt_len.data<std::int32_t>(),
                                          batch.tgt_len.data<std::int32_t>() + 4);
  EXPECT_EQ(src_len, (std::vector<std::int32_t>{1, 3, 4, 2}));
  EXPECT_EQ(tgt_len, (std::vector<std::int32_t>{5, 3, 2, 1}));
  EXPECT_EQ(batch.size(), 4);
}

TEST(TranslationDataset, TokenOutsideVocabularyNamesTheRecord) {
  TempDir dir;
  TranslationSpec spec;
  spec.vocab = 50;
  spec.records = {{{10}, {11}}, {{12}, {13}}, {{14}, {15, 50}}, {{-3}, {16}}};
  const std::string path = dir.file("tr.h5");
  write_translation(path, spec);
  TranslationDataset dataset(path);
  Batch batch;
  dataset.read_batch({0, 1}, batch);
  EXPECT_EQ(user_error_of([&] {
              dataset.read_batch({1, 2}, batch);
            }),
            path + ": record 2: target token 50 is outside [0, vocab_size 50)");
  EXPECT_EQ(user_error_of([&] { dataset.read_batch({3}, batch); }),
            path + ": record 3: source token -3 is outside [0, vocab_size 50)");
}

TEST(TranslationDataset, RecordsLongerThanMaxLenAreErrors) {
  TempDir dir;
  TranslationSpec spec;
  spec.records = {{{10, 11}, {12}}, {{13}, {14, 15, 16, 17, 18}}, {{10, 11, 12, 13, 14}, {}}};
  const std::string path = dir.file("tr.h5");
  write_translation(path, spec);
  TranslationDataset dataset(path);
  dataset.check_max_len(0);  // no limit
  dataset.check_max_len(6);  // longest record + eos/bos is 6
  EXPECT_EQ(user_error_of([&] { dataset.check_max_len(5); }),
            path + ": record 1: target has 5 tokens, more than model.max_len - 1 = 4");
  EXPECT_EQ(user_error_of([&] { dataset.check_max_len(2); }),
            path + ": record 0: source has 2 tokens, more than model.max_len - 1 = 1");
}

// ---- seeded permutations -------------------------------------------------------------------

TEST(SeededPermutation, IsAPermutationFixedBySeedAndStream) {
  for (std::int64_t n : {0, 1, 2, 5, 100, 5000}) {
    const std::vector<std::int64_t> p = seeded_permutation(n, 42, 3);
    std::vector<std::int64_t> sorted = p;
    std::sort(sorted.begin(), sorted.end());
    std::vector<std::int64_t> identity(static_cast<std::size_t>(n));
    std::iota(identity.begin(), identity.end(), std::int64_t{0});
    EXPECT_EQ(sorted, identity) << "n " << n;
    EXPECT_EQ(seeded_permutation(n, 42, 3), p);
  }
  EXPECT_NE(seeded_permutation(100, 42, 3), seeded_permutation(100, 42, 4));
  EXPECT_NE(seeded_permutation(100, 42, 3), seeded_permutation(100, 43, 3));
}

TEST(SeededPermutation, SameOnEveryPlatform) {
  // Pinned values: the permutation comes from Philox alone, never from the standard library.
  EXPECT_EQ(seeded_permutation(10, 1234, 0),
            (std::vector<std::int64_t>{3, 6, 4, 2, 9, 5, 0, 7, 1, 8}));
}

}  // namespace
}  // namespace tr
