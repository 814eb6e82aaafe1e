// `prepare` converters: IDX images -> image dataset, parallel text -> translation dataset, and
// the SentencePiece tokenizer wrapper. Inputs are tiny files written here (plain and gzipped).
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "data/h5.h"
#include "data/idx_reader.h"
#include "data/prepare_images.h"
#include "data/prepare_translation.h"
#include "data/tokenizer.h"
#include "layers/error.h"

namespace tr {
namespace {

namespace fs = std::filesystem;

// ---- helpers ---------------------------------------------------------------------------------

class Scratch : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("test_prepare_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  // Files in the scratch directory: a failed conversion must leave no temporary behind.
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir_)) names.push_back(entry.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }

  fs::path dir_;
};

void write_bytes(const std::string& path, const std::string& bytes, bool gzip) {
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr) << path;
    ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
    ASSERT_EQ(gzclose(f), Z_OK);
  } else {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(out.good()) << path;
  }
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// An IDX file: magic 0x0000080<ndim>, big-endian dimensions, then the bytes.
std::string idx_bytes(const std::vector<std::uint32_t>& dims,
                      const std::vector<std::uint8_t>& data) {
  std::string bytes = {0, 0, 8, static_cast<char>(dims.size())};
  for (std::uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) bytes += static_cast<char>((d >> shift) & 0xff);
  bytes.append(data.begin(), data.end());
  return bytes;
}

// The message of the UserError `f` throws; fails the test when it throws none.
std::string user_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a UserError";
  return "";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// ---- images ----------------------------------------------------------------------------------

constexpr std::uint32_t kN = 5, kH = 3, kW = 4;

class PrepareImages : public Scratch {
 protected:
  void SetUp() override {
    Scratch::SetUp();
    std::mt19937 rng(7);
    for (std::uint32_t i = 0; i < kN * kH * kW; ++i) pixels_.push_back(rng() % 256);
    labels_ = {0, 2, 1, 2, 0};
  }
  // Writes images and labels (optionally gzipped); returns their paths.
  std::pair<std::string, std::string> write_inputs(const std::string& stem, bool gzip) {
    const std::string ext = gzip ? ".gz" : "";
    const std::string images = path(stem + "-images-idx3-ubyte" + ext);
    const std::string labels = path(stem + "-labels-idx1-ubyte" + ext);
    write_bytes(images, idx_bytes({kN, kH, kW}, pixels_), gzip);
    write_bytes(labels, idx_bytes({kN}, labels_), gzip);
    return {images, labels};
  }
  PrepareImagesOptions options(const std::pair<std::string, std::string>& inputs,
                               const std::string& out) {
    PrepareImagesOptions o;
    o.images = inputs.first;
    o.labels = inputs.second;
    o.out = path(out);
    o.chunk_rows = 2;  // 5 images: two full chunks and a partial one
    return o;
  }

  std::vector<std::uint8_t> pixels_, labels_;
};

TEST_F(PrepareImages, WritesImagesLabelsAndStatistics) {
  for (bool gzip : {false, true}) {
    SCOPED_TRACE(gzip ? "gzipped" : "plain");
    const std::string out = gzip ? "gz.h5" : "plain.h5";
    const PreparedImages report = prepare_images(options(write_inputs(out, gzip), out));
    EXPECT_EQ(report.records, kN);
    EXPECT_EQ(report.num_classes, 3);
    EXPECT_FALSE(report.stats_reused);

    h5::File file = h5::File::open(path(out));
    EXPECT_EQ(file.shape("images"), (Shape{kN, kH, kW, 1}));
    EXPECT_EQ(file.stored_type("images").dtype, DType::u8);
    EXPECT_EQ(file.read<std::uint8_t>("images"), pixels_);
    EXPECT_EQ(file.stored_type("labels").dtype, DType::i64);
    EXPECT_EQ(file.read<std::int64_t>("labels"), (std::vector<std::int64_t>{0, 2, 1, 2, 0}));
    EXPECT_EQ(file.read_attr_scalar<std::int64_t>("/", "num_classes"), 3);
    EXPECT_FALSE(file.has_attr("/", "class_names"));

    // Population statistics of x / 255, computed the plain two-pass way.
    double mean = 0, var = 0;
    for (std::uint8_t p : pixels_) mean += p / 255.0;
    mean /= pixels_.size();
    for (std::uint8_t p : pixels_) var += (p / 255.0 - mean) * (p / 255.0 - mean);
    const double std = std::sqrt(var / pixels_.size());
    const auto stored_mean = file.read_attr<float>("/", "mean");
    const auto stored_std = file.read_attr<float>("/", "std");
    ASSERT_EQ(stored_mean.size(), 1u);
    ASSERT_EQ(stored_std.size(), 1u);
    EXPECT_FLOAT_EQ(stored_mean[0], static_cast<float>(mean));
    EXPECT_FLOAT_EQ(stored_std[0], static_cast<float>(std));
    EXPECT_EQ(report.mean, stored_mean);
    EXPECT_EQ(report.std, stored_std);
  }
  for (const std::string& name : listing()) EXPECT_FALSE(contains(name, ".tmp")) << name;
}

TEST_F(PrepareImages, ClassNamesAndNumClassesOverride) {
  PrepareImagesOptions o = options(write_inputs("a", false), "named.h5");
  o.num_classes = 10;
  o.class_names = parse_class_names("fashion-mnist");
  prepare_images(o);
  h5::File file = h5::File::open(o.out);
  EXPECT_EQ(file.read_attr_scalar<std::int64_t>("/", "num_classes"), 10);
  const auto names = file.read_attr_strings("/", "class_names");
  ASSERT_EQ(names.size(), 10u);
  EXPECT_EQ(names[0], "T-shirt/top");
  EXPECT_EQ(names[9], "Ankle boot");

  EXPECT_EQ(parse_class_names("cat,dog"), (std::vector<std::string>{"cat", "dog"}));
  o.out = path("wrong_names.h5");
  o.class_names = {"cat", "dog"};
  EXPECT_TRUE(contains(user_error([&] { prepare_images(o); }), "2 given for 10 classes"));
  o.num_classes = 2;  // label 2 exists
  o.class_names.clear();
  const std::string message = user_error([&] { prepare_images(o); });
  EXPECT_TRUE(contains(message, o.labels)) << message;
  EXPECT_TRUE(contains(message, "label 2 of record 1")) << message;
  EXPECT_FALSE(fs::exists(o.out));
}

TEST_F(PrepareImages, StatsFromReusesTrainingStatistics) {
  PrepareImagesOptions train = options(write_inputs("train", false), "train.h5");
  train.num_classes = 10;
  train.class_names = fashion_mnist_class_names();
  const PreparedImages train_report = prepare_images(train);

  pixels_.assign(pixels_.size(), 0);  // constant images: their own std would be 0
  pixels_[0] = 255;
  labels_ = {1, 1, 1, 1, 1};
  PrepareImagesOptions test = options(write_inputs("test", true), "test.h5");
  test.stats_from = train.out;
  const PreparedImages report = prepare_images(test);
  EXPECT_TRUE(report.stats_reused);
  h5::File file = h5::File::open(test.out);
  EXPECT_EQ(file.read_attr<float>("/", "mean"), train_report.mean);
  EXPECT_EQ(file.read_attr<float>("/", "std"), train_report.std);
  EXPECT_EQ(file.read_attr_scalar<std::int64_t>("/", "num_classes"), 10);  // not max label + 1
  EXPECT_EQ(file.read_attr_strings("/", "class_names"), fashion_mnist_class_names());
}

TEST_F(PrepareImages, BadMagicNamesTheFileAndWritesNothing) {
  const auto inputs = write_inputs("a", false);
  // A good file at the output path survives a failed conversion.
  write_bytes(path("out.h5"), "previous", false);
  PrepareImagesOptions swapped = options({inputs.second, inputs.first}, "out.h5");
  const std::string message = user_error([&] { prepare_images(swapped); });
  EXPECT_TRUE(contains(message, inputs.second)) << message;
  EXPECT_TRUE(contains(message, "bad IDX magic 0x00000801, expected 0x00000803")) << message;
  EXPECT_FALSE(contains(message, "\n"));
  EXPECT_EQ(read_bytes(path("out.h5")), "previous");

  write_bytes(path("not-idx.gz"), "hello world, not an IDX file", true);
  const std::string labels_message = user_error([&] { read_idx(path("not-idx.gz"), 1); });
  EXPECT_TRUE(contains(labels_message, path("not-idx.gz"))) << labels_message;
  EXPECT_TRUE(contains(labels_message, "magic")) << labels_message;
}

TEST_F(PrepareImages, TruncatedFileNamesTheFileAndWritesNothing) {
  const auto inputs = write_inputs("a", false);
  const std::string full = idx_bytes({kN, kH, kW}, pixels_);
  for (bool gzip : {false, true}) {
    SCOPED_TRACE(gzip ? "gzipped" : "plain");
    const std::string images = path(gzip ? "cut-images.gz" : "cut-images");
    if (gzip) {
      // A gzip stream cut in the middle: zlib reports the unexpected end.
      write_bytes(images, full, true);
      const std::string compressed = read_bytes(images);
      write_bytes(images, compressed.substr(0, compressed.size() - 12), false);
    } else {
      write_bytes(images, full.substr(0, full.size() - 30), false);
    }
    const std::string message = user_error([&] {
      prepare_images(options({images, inputs.second}, "out.h5"));
    });
    EXPECT_TRUE(contains(message, images)) << message;
    EXPECT_TRUE(contains(message, "truncated") || contains(message, "unexpected end")) << message;
    EXPECT_FALSE(fs::exists(path("out.h5")));
  }
  write_bytes(path("header-only"), std::string("\0\0\x08\x03\0\0", 6), false);
  EXPECT_TRUE(
      contains(user_error([&] { read_idx(path("header-only"), 3); }), "truncated IDX header"));
  write_bytes(path("long-labels"), idx_bytes({2}, {1, 2, 3}), false);
  EXPECT_TRUE(contains(user_error([&] { read_idx(path("long-labels"), 1); }),
                       "more data than its IDX header declares"));
  for (const std::string& name : listing()) EXPECT_FALSE(contains(name, ".tmp")) << name;
}

TEST_F(PrepareImages, CountMismatchNamesBothFiles) {
  const auto inputs = write_inputs("a", true);
  const std::string labels = path("four-labels.gz");
  write_bytes(labels, idx_bytes({4}, {0, 1, 2, 0}), true);
  const std::string message = user_error([&] {
    prepare_images(options({inputs.first, labels}, "out.h5"));
  });
  EXPECT_TRUE(contains(message, inputs.first)) << message;
  EXPECT_TRUE(contains(message, labels)) << message;
  EXPECT_TRUE(contains(message, "5 images")) << message;
  EXPECT_TRUE(contains(message, "4 labels")) << message;
  EXPECT_FALSE(fs::exists(path("out.h5")));
  EXPECT_TRUE(contains(user_error([&] { read_idx(path("missing.gz"), 1); }), "no such file"));
}

// ---- translation -----------------------------------------------------------------------------

// A synthetic parallel corpus of plain ASCII words (so SentencePiece's normalisation leaves
// each line unchanged): the target is the source reversed with each word respelled.
std::vector<std::pair<std::string, std::string>> synthetic_pairs(int count) {
  const char* words[] = {"the",   "cat",    "sat",  "on",    "a",      "mat",   "dog",    "runs",
                         "fast",  "slowly", "red",  "blue",  "green",  "house", "tree",   "river",
                         "walks", "sees",   "big",  "small", "child",  "plays", "ball",   "with",
                         "near",  "under",  "old",  "man",   "woman",  "reads", "book",   "street",
                         "car",   "stops",  "bird", "sings", "garden", "water", "drinks", "yellow"};
  std::mt19937 rng(11);
  std::vector<std::pair<std::string, std::string>> pairs;
  for (int i = 0; i < count; ++i) {
    const int n = 2 + static_cast<int>(rng() % 10);
    std::vector<std::string> picked;
    for (int j = 0; j < n; ++j) picked.push_back(words[rng() % std::size(words)]);
    std::string src, tgt;
    for (int j = 0; j < n; ++j) {
      // Appended piece by piece: `" " + std::string&&` trips GCC 12's false -Wrestrict.
      if (j > 0) {
        src += ' ';
        tgt += ' ';
      }
      src += picked[j];
      const std::string& w = picked[n - 1 - j];
      tgt.append(w.rbegin(), w.rend());
      tgt += "en";
    }
    pairs.emplace_back(src, tgt);
  }
  return pairs;
}

class PrepareTranslation : public Scratch {
 protected:
  void SetUp() override {
    Scratch::SetUp();
    pairs_ = synthetic_pairs(200);
    // Pairs with an empty or whitespace-only side are dropped.
    pairs_.insert(pairs_.begin() + 50, {"the cat", ""});
    pairs_.insert(pairs_.begin() + 120, {"   ", "tac eht"});
    write_corpus("corpus", false);
  }
  void write_corpus(const std::string& stem, bool gzip) {
    std::string src, tgt;
    for (const auto& [s, t] : pairs_) {
      src += s + "\n";
      tgt += t + "\n";
    }
    const std::string ext = gzip ? ".gz" : "";
    write_bytes(path(stem + ".en" + ext), src, gzip);
    write_bytes(path(stem + ".de" + ext), tgt, gzip);
  }
  PrepareTranslationOptions options(const std::string& stem, const std::string& out) {
    PrepareTranslationOptions o;
    o.src = path(stem + ".en");
    o.tgt = path(stem + ".de");
    o.out = path(out);
    o.vocab_size = 100;
    o.chunk_tokens = 64;  // several chunks and a partial one
    o.chunk_offsets = 16;
    return o;
  }
  // The pairs a dataset keeps: neither side empty.
  std::vector<std::pair<std::string, std::string>> kept() const {
    std::vector<std::pair<std::string, std::string>> result;
    for (const auto& p : pairs_)
      if (p.first.find_first_not_of(' ') != std::string::npos && !p.second.empty())
        result.push_back(p);
    return result;
  }

  std::vector<std::pair<std::string, std::string>> pairs_;
};

struct Side {
  std::vector<std::int32_t> tokens;
  std::vector<std::int64_t> offsets;
};

Side read_side(const h5::File& file, const std::string& group) {
  EXPECT_EQ(file.stored_type(group + "/tokens").dtype, DType::i32);
  EXPECT_EQ(file.stored_type(group + "/offsets").dtype, DType::i64);
  return {file.read<std::int32_t>(group + "/tokens"), file.read<std::int64_t>(group + "/offsets")};
}

TEST_F(PrepareTranslation, WritesRecordsThatDecodeToTheInput) {
  std::vector<std::string> log;
  PrepareTranslationOptions o = options("corpus", "train.h5");
  o.log = [&](const std::string& line) { log.push_back(line); };
  const PreparedTranslation report = prepare_translation(o);
  const auto expected = kept();
  EXPECT_EQ(report.lines, 202);
  EXPECT_EQ(report.dropped_empty, 2);
  EXPECT_EQ(report.dropped_long, 0);
  EXPECT_EQ(report.records, static_cast<std::int64_t>(expected.size()));
  EXPECT_EQ(report.vocab_size, 100);
  EXPECT_TRUE(report.tokenizer_trained);
  EXPECT_EQ(report.src_unk + report.tgt_unk, 0);
  EXPECT_FALSE(log.empty());

  h5::File file = h5::File::open(o.out);
  EXPECT_EQ(file.read_attr_scalar<std::int64_t>("/", "vocab_size"), 100);
  EXPECT_EQ(file.read_attr_scalar<std::int32_t>("/", "pad_id"), 0);
  EXPECT_EQ(file.read_attr_scalar<std::int32_t>("/", "bos_id"), 1);
  EXPECT_EQ(file.read_attr_scalar<std::int32_t>("/", "eos_id"), 2);
  EXPECT_EQ(file.read_attr_scalar<std::int32_t>("/", "unk_id"), 3);
  EXPECT_EQ(file.stored_type("tokenizer").dtype, DType::u8);

  const Tokenizer tokenizer = Tokenizer::load(o.out);  // the dataset decodes itself
  EXPECT_EQ(tokenizer.vocab_size(), 100);
  EXPECT_EQ(tokenizer.pad_id(), 0);
  EXPECT_EQ(tokenizer.bos_id(), 1);
  EXPECT_EQ(tokenizer.eos_id(), 2);
  EXPECT_EQ(tokenizer.unk_id(), 3);
  for (const std::string group : {"src", "tgt"}) {
    SCOPED_TRACE(group);
    const Side side = read_side(file, group);
    ASSERT_EQ(side.offsets.size(), expected.size() + 1);
    EXPECT_EQ(side.offsets.front(), 0);
    EXPECT_EQ(side.offsets.back(), static_cast<std::int64_t>(side.tokens.size()));
    EXPECT_EQ(static_cast<std::int64_t>(side.tokens.size()),
              group == "src" ? report.src_tokens : report.tgt_tokens);
    for (std::size_t i = 0; i < expected.size(); ++i) {
      ASSERT_LT(side.offsets[i], side.offsets[i + 1]) << "record " << i << " is empty";
      const std::span<const std::int32_t> ids(side.tokens.data() + side.offsets[i],
                                              side.offsets[i + 1] - side.offsets[i]);
      for (std::int32_t id : ids) {
        EXPECT_GE(id, 4);  // no pad/bos/eos/unk inside a record
        EXPECT_LT(id, 100);
      }
      EXPECT_EQ(tokenizer.decode(ids), group == "src" ? expected[i].first : expected[i].second);
      EXPECT_EQ(tokenizer.encode(group == "src" ? expected[i].first : expected[i].second),
                std::vector<std::int32_t>(ids.begin(), ids.end()));
    }
  }
  for (const std::string& name : listing()) EXPECT_FALSE(contains(name, ".tmp")) << name;
}

TEST_F(PrepareTranslation, ReusedTokenizerGivesIdenticalIds) {
  const PrepareTranslationOptions first = options("corpus", "first.h5");
  prepare_translation(first);
  // Gzipped inputs and a reused tokenizer (from the dataset, then from a .model file) give
  // the same file contents.
  write_corpus("gz", true);
  PrepareTranslationOptions from_dataset = options("gz", "second.h5");
  from_dataset.src += ".gz";
  from_dataset.tgt += ".gz";
  from_dataset.tokenizer = first.out;
  const PreparedTranslation report = prepare_translation(from_dataset);
  EXPECT_FALSE(report.tokenizer_trained);

  const std::string model = path("joint.model");
  write_bytes(model, Tokenizer::load(first.out).bytes(), false);
  PrepareTranslationOptions from_model = options("corpus", "third.h5");
  from_model.tokenizer = model;
  from_model.vocab_size = 0;  // take the tokenizer's size
  prepare_translation(from_model);

  h5::File a = h5::File::open(first.out);
  for (const std::string& out : {from_dataset.out, from_model.out}) {
    SCOPED_TRACE(out);
    h5::File b = h5::File::open(out);
    for (const std::string dataset : {"src/tokens", "src/offsets", "tgt/tokens", "tgt/offsets"})
      EXPECT_EQ(a.read<std::int64_t>(dataset), b.read<std::int64_t>(dataset)) << dataset;
    EXPECT_EQ(a.read<std::uint8_t>("tokenizer"), b.read<std::uint8_t>("tokenizer"));
  }

  PrepareTranslationOptions conflicting = options("corpus", "fourth.h5");
  conflicting.tokenizer = model;
  conflicting.vocab_size = 200;
  const std::string message = user_error([&] { prepare_translation(conflicting); });
  EXPECT_TRUE(contains(message, model)) << message;
  EXPECT_TRUE(contains(message, "100 pieces")) << message;
  EXPECT_FALSE(fs::exists(conflicting.out));
}

TEST_F(PrepareTranslation, TrainingIsDeterministic) {
  TokenizerTrainOptions train;
  train.inputs = {path("corpus.en"), path("corpus.de")};
  train.vocab_size = 100;
  EXPECT_EQ(train_tokenizer(train), train_tokenizer(train));
  train.model_type = "bpe";
  const std::string bpe = train_tokenizer(train);
  EXPECT_EQ(bpe, train_tokenizer(train));
  EXPECT_EQ(Tokenizer::from_bytes(bpe).vocab_size(), 100);
  EXPECT_EQ(Tokenizer::from_bytes(bpe).decode(Tokenizer::from_bytes(bpe).encode("the cat sat")),
            "the cat sat");
}

TEST_F(PrepareTranslation, MaxLenDropsLongPairs) {
  PrepareTranslationOptions o = options("corpus", "short.h5");
  o.max_len = 12;
  const PreparedTranslation report = prepare_translation(o);
  EXPECT_GT(report.dropped_long, 0);
  EXPECT_GT(report.records, 0);
  EXPECT_EQ(report.records + report.dropped_long + report.dropped_empty, report.lines);
  EXPECT_LE(report.src_longest, 11);
  EXPECT_LE(report.tgt_longest, 11);
  h5::File file = h5::File::open(o.out);
  for (const std::string group : {"src", "tgt"}) {
    const Side side = read_side(file, group);
    ASSERT_EQ(static_cast<std::int64_t>(side.offsets.size()), report.records + 1);
    for (std::size_t i = 0; i + 1 < side.offsets.size(); ++i)
      EXPECT_LE(side.offsets[i + 1] - side.offsets[i], 11) << group << " record " << i;
  }
  o.max_len = 1;
  EXPECT_TRUE(contains(user_error([&] { prepare_translation(o); }), "at least 2"));
}

TEST_F(PrepareTranslation, MismatchedLineCountsNameBothFiles) {
  pairs_.pop_back();
  write_corpus("short", false);
  PrepareTranslationOptions o = options("corpus", "out.h5");
  o.tgt = path("short.de");
  const std::string message = user_error([&] { prepare_translation(o); });
  EXPECT_TRUE(contains(message, o.src + " has 202 lines")) << message;
  EXPECT_TRUE(contains(message, o.tgt + " has 201")) << message;
  EXPECT_FALSE(contains(message, "\n"));
  EXPECT_FALSE(fs::exists(o.out));
  for (const std::string& name : listing()) EXPECT_FALSE(contains(name, ".tmp")) << name;
}

TEST_F(PrepareTranslation, TokenizerErrorsAreOneLine) {
  PrepareTranslationOptions o = options("corpus", "out.h5");
  o.vocab_size = 100000;  // far more pieces than 200 lines hold
  const std::string message = user_error([&] { prepare_translation(o); });
  EXPECT_TRUE(contains(message, "Vocabulary size too high")) << message;
  EXPECT_TRUE(contains(message, o.src)) << message;
  EXPECT_FALSE(contains(message, "\n"));
  EXPECT_FALSE(fs::exists(o.out));

  o.vocab_size = 100;
  o.model_type = "word-salad";
  EXPECT_TRUE(contains(user_error([&] { prepare_translation(o); }), "expected unigram or bpe"));

  write_bytes(path("junk.model"), "this is not a model", false);
  const std::string junk = user_error([&] { Tokenizer::load(path("junk.model")); });
  EXPECT_TRUE(contains(junk, path("junk.model") + ": not a SentencePiece model")) << junk;
  EXPECT_TRUE(
      contains(user_error([&] { Tokenizer::load(path("nothing.model")); }), "no such file"));
  o.model_type = "unigram";
  o.src = path("missing.en");
  EXPECT_TRUE(contains(user_error([&] { prepare_translation(o); }), path("missing.en")));
}

}  // namespace
}  // namespace tr
