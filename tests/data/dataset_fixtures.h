// Small dataset files written by the tests themselves (no Python at test time), and the
// helpers the data tests share.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "data/h5.h"
#include "layers/error.h"
#include "models/model.h"

namespace tr::testing_data {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "_" + info->name();
    for (char& c : name)
      if (c == '/') c = '_';
    path_ = fs::path(::testing::TempDir()) / ("tr_data_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// Runs `action`, expects a UserError and returns its message; fails the test if anything
// (HDF5's error stack in particular) was printed to stderr meanwhile.
inline std::string user_error_of(const std::function<void()>& action) {
  std::string message;
  ::testing::internal::CaptureStderr();
  try {
    action();
    ADD_FAILURE() << "expected a UserError";
  } catch (const UserError& e) {
    message = e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected a UserError, got: " << e.what();
  }
  const std::string printed = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(printed, "") << "stderr must stay empty";
  EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
  return message;
}

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "in: " << (text)

// ---- image datasets --------------------------------------------------------------------------

struct ImageSpec {
  std::int64_t N = 10, H = 3, W = 2, C = 2, classes = 4;
  std::vector<float> mean = {0.25f, 0.5f};
  std::vector<float> std = {0.5f, 2.0f};
  std::int64_t chunk_rows = 4;
  std::set<std::string> omit;  // "images", "labels", "num_classes", "mean", "std"
  std::vector<std::string> class_names;
};

// Pixel (h, w, c) of record i: distinct across records, so a batch tells which records it holds.
inline std::uint8_t pixel(std::int64_t i, std::int64_t h, std::int64_t w, std::int64_t c) {
  return static_cast<std::uint8_t>((i * 37 + h * 11 + w * 5 + c * 3) % 256);
}
inline std::int64_t label_of(std::int64_t i, std::int64_t classes) {
  return (i * 3) % classes;
}

// Writes the dataset of `spec`; `extra` then adds or replaces what a test needs.
inline void write_images(const std::string& path, const ImageSpec& s,
                         const std::function<void(h5::File&)>& extra = nullptr) {
  h5::File f = h5::File::create(path);
  if (!s.omit.count("images")) {
    std::vector<std::uint8_t> pixels;
    for (std::int64_t i = 0; i < s.N; ++i)
      for (std::int64_t h = 0; h < s.H; ++h)
        for (std::int64_t w = 0; w < s.W; ++w)
          for (std::int64_t c = 0; c < s.C; ++c) pixels.push_back(pixel(i, h, w, c));
    f.write<std::uint8_t>("images", {s.N, s.H, s.W, s.C}, pixels, {s.chunk_rows});
  }
  if (!s.omit.count("labels")) {
    std::vector<std::int64_t> labels;
    for (std::int64_t i = 0; i < s.N; ++i) labels.push_back(label_of(i, s.classes));
    f.write<std::int64_t>("labels", {s.N}, labels);
  }
  if (!s.omit.count("num_classes"))
    f.write_attr_scalar<std::int64_t>("/", "num_classes", s.classes);
  if (!s.omit.count("mean")) f.write_attr<float>("/", "mean", s.mean);
  if (!s.omit.count("std")) f.write_attr<float>("/", "std", s.std);
  if (!s.class_names.empty()) f.write_attr("/", "class_names", s.class_names);
  if (extra) extra(f);
  f.close();
}

// The record whose pixels image b of `batch` holds (mean 0, std 1 datasets only: the
// normalised value is then x / 255).
inline std::int64_t image_record(const Batch& batch, std::int64_t b, std::int64_t N) {
  const std::int64_t per = batch.images.numel() / batch.images.dim(0);
  const float* x = batch.images.data<float>() + b * per;
  for (std::int64_t i = 0; i < N; ++i) {
    if (static_cast<int>(x[0] * 255.0f + 0.5f) == pixel(i, 0, 0, 0)) return i;
  }
  return -1;
}

// ---- translation datasets ----------------------------------------------------------------------

struct Pair {
  std::vector<std::int32_t> src, tgt;
};

struct TranslationSpec {
  std::vector<Pair> records;
  std::int64_t vocab = 1000;
  std::int32_t pad = 0, bos = 1, eos = 2, unk = 3;
  std::set<std::string> omit;  // "src", "tgt", "vocab_size", "pad_id", ...
  bool tokenizer = false;
};

// Record i's first source token is kFirstId + i, so a batch row tells its record.
constexpr std::int32_t kFirstId = 4;

// `n` records; record i has (i * 7) % max_src + 1 source and (i * 5) % max_tgt target tokens.
inline std::vector<Pair> numbered_records(std::int64_t n, std::int64_t max_src = 9,
                                          std::int64_t max_tgt = 6) {
  std::vector<Pair> records;
  for (std::int64_t i = 0; i < n; ++i) {
    Pair p;
    p.src.push_back(kFirstId + static_cast<std::int32_t>(i));
    for (std::int64_t k = 1; k < (i * 7) % max_src + 1; ++k)
      p.src.push_back(static_cast<std::int32_t>(500 + (i + k) % 400));
    for (std::int64_t k = 0; k < (i * 5) % max_tgt; ++k)
      p.tgt.push_back(static_cast<std::int32_t>(600 + (i * 3 + k) % 300));
    records.push_back(std::move(p));
  }
  return records;
}

inline void write_side(h5::File& f, const std::string& side, const std::vector<Pair>& records,
                       bool source) {
  std::vector<std::int32_t> tokens;
  std::vector<std::int64_t> offsets{0};
  for (const Pair& p : records) {
    const std::vector<std::int32_t>& t = source ? p.src : p.tgt;
    tokens.insert(tokens.end(), t.begin(), t.end());
    offsets.push_back(static_cast<std::int64_t>(tokens.size()));
  }
  f.write<std::int32_t>(side + "/tokens", {static_cast<std::int64_t>(tokens.size())}, tokens, {64});
  f.write<std::int64_t>(side + "/offsets", {static_cast<std::int64_t>(offsets.size())}, offsets);
}

inline void write_translation(const std::string& path, const TranslationSpec& s,
                              const std::function<void(h5::File&)>& extra = nullptr) {
  h5::File f = h5::File::create(path);
  if (!s.omit.count("src")) write_side(f, "src", s.records, true);
  if (!s.omit.count("tgt")) write_side(f, "tgt", s.records, false);
  const std::pair<const char*, std::int64_t> attrs[] = {{"vocab_size", s.vocab},
                                                        {"pad_id", s.pad},
                                                        {"bos_id", s.bos},
                                                        {"eos_id", s.eos},
                                                        {"unk_id", s.unk}};
  for (const auto& [name, value] : attrs)
    if (!s.omit.count(name)) f.write_attr_scalar<std::int64_t>("/", name, value);
  if (s.tokenizer) f.write<std::uint8_t>("tokenizer", {3}, {7, 8, 9});
  if (extra) extra(f);
  f.close();
}

// The record that row b of a translation batch holds (numbered_records datasets).
inline std::int64_t token_record(const Batch& batch, std::int64_t b) {
  return batch.src.data<std::int32_t>()[b * batch.src.dim(1)] - kFirstId;
}

}  // namespace tr::testing_data
