// Bad inputs to `trainer train` (issue 3, Acceptance): each ends with exit code 2 and at most a
// few lines naming the key, file or record, with no HDF5 error stack and nothing written (the
// run directory is not created and no other file appears). Every bad file is built here with
// data/h5.h; the good base configs train (the control tests), so each failure is the one
// provoked.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "data/dataset_fixtures.h"
#include "data/h5.h"
#include "e2e/cli_runner.h"
#include "layers/device.h"
#include "models/model.h"
#include "trainer/config.h"
#include "trainer/model_config_yaml.h"
#include "trainer/weights_file.h"

namespace tr {
namespace {

namespace fs = std::filesystem;
using testing::count_lines;
using testing::run_trainer;
using testing::scratch_dir;

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// Every file under `dir`, with its size: what a failed run must leave unchanged.
std::set<std::string> listing(const fs::path& dir) {
  std::set<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    files.insert(fs::relative(e.path(), dir).string() + " " +
                 (e.is_regular_file() ? std::to_string(e.file_size()) : "dir"));
  return files;
}

class BadInputs : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_dir(std::string("bad_") +
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    run_dir_ = dir_ / "run";
    images_ = (dir_ / "images.h5").string();
    tokens_ = (dir_ / "tokens.h5").string();
    testing_data::ImageSpec spec;
    spec.N = 16;
    spec.H = spec.W = 8;
    spec.C = 1;
    spec.classes = 3;
    spec.mean = {0.5f};
    spec.std = {0.25f};
    testing_data::write_images(images_, spec);
    write_tokens(tokens_, -1);
    vit_config_ = (dir_ / "vit.yaml").string();
    write_text(vit_config_, vit_yaml());
    seq_config_ = (dir_ / "seq.yaml").string();
    write_text(seq_config_, seq_yaml());
  }
  void TearDown() override { fs::remove_all(dir_); }

  // 16 pairs over a vocabulary of 20 (tokens 4..19), target = reversed source; with
  // `bad_record` >= 0 that record's second source token is 25.
  static void write_tokens(const std::string& path, int bad_record) {
    testing_data::TranslationSpec spec;
    spec.vocab = 20;
    for (int i = 0; i < 16; ++i) {
      testing_data::Pair p;
      for (int k = 0; k < 2 + i % 4; ++k) p.src.push_back(4 + (i * 3 + k * 5) % 16);
      p.tgt.assign(p.src.rbegin(), p.src.rend());
      if (i == bad_record) p.src[1] = 25;
      spec.records.push_back(p);
    }
    testing_data::write_translation(path, spec);
  }

  std::string common_yaml() const {
    return "run:\n  name: bad\n  dir: " + run_dir_.string() +
           "\n  seed: 1\n"
           "train:\n  steps: 2\n  global_batch: 8\n  micro_batch: 4\n  device: cpu\n"
           "  optimizer:\n    type: adamw\n    lr: 0.001\n"
           "  schedule:\n    type: constant\n"
           "checkpoint:\n  every_steps: 0\n  keep: 1\n"
           "eval:\n  every_steps: 0\n"
           "log:\n  every_steps: 1\n  progress: false\n";
  }
  std::string vit_yaml() const {
    return common_yaml() +
           "model:\n  type: vit\n  d_model: 16\n  heads: 2\n  d_ff: 32\n  layers: 1\n"
           "  dropout: 0.0\n  image_size: 8\n  patch_size: 4\n  channels: 1\n  num_classes: 3\n"
           "data:\n  train: " +
           images_ + "\n  valid: " + images_ + "\n  shuffle: false\n  prefetch: 1\n";
  }
  std::string seq_yaml() const {
    return common_yaml() +
           "model:\n  type: encoder_decoder\n  d_model: 16\n  heads: 2\n  d_ff: 32\n"
           "  layers: 1\n  dropout: 0.0\n  max_len: 16\n  vocab_size: 0\n"
           "data:\n  train: " +
           tokens_ + "\n  valid: " + tokens_ + "\n  shuffle: false\n  prefetch: 1\n";
  }

  // A weights file of the ViT config's model; `drop` is left out, `reshape` gets a wrong shape.
  std::string weights(const std::string& name, const std::string& drop,
                      const std::string& reshape) const {
    const RunConfig config = load_run_config(vit_config_, {});
    auto model = make_model(config.model, DType::f32, 0.0, 1);
    const std::string good = (dir_ / "good_weights.h5").string();
    write_weights(good, "vit", model_config_to_yaml_text(config.model), model->parameters());
    const std::string path = (dir_ / name).string();
    h5::File in = h5::File::open(good);
    h5::File out = h5::File::create(path);
    out.write_attr("/", "model_type", in.read_attr_string("/", "model_type"));
    out.write_attr("/", "config", in.read_attr_string("/", "config"));
    for (const std::string& dataset : in.datasets("/")) {
      if (dataset == drop) continue;
      Tensor t = in.read_tensor(dataset, DType::f32);
      if (dataset == reshape) t = Tensor::zeros({t.dim(0) + 1, t.numel() / t.dim(0)}, DType::f32);
      out.write(dataset, t);
    }
    out.close();
    fs::remove(good);
    return path;
  }

  // Runs `trainer train` and checks the contract of a bad input; every `named` string must
  // appear in the output.
  void expect_refused(const std::string& args, const std::vector<std::string>& named) {
    const std::set<std::string> before = listing(dir_);
    const testing::CliResult r = run_trainer("train " + args);
    std::printf("[ output   ] %s", r.output.c_str());  // the message, for the test log
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_GE(count_lines(r.output), 1) << r.output;
    EXPECT_LE(count_lines(r.output), 3) << r.output;
    for (const std::string& n : named) EXPECT_NE(r.output.find(n), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("HDF5-DIAG"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("internal error"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(run_dir_)) << "the run directory was created: " << r.output;
    EXPECT_EQ(listing(dir_), before) << "files were written: " << r.output;
  }
  void expect_refused_vit(const std::string& sets, const std::vector<std::string>& named) {
    expect_refused("--config " + vit_config_ + " " + sets, named);
  }
  void expect_refused_seq(const std::string& sets, const std::vector<std::string>& named) {
    expect_refused("--config " + seq_config_ + " " + sets, named);
  }

  fs::path dir_, run_dir_;
  std::string images_, tokens_, vit_config_, seq_config_;
};

// ---- controls: the base configs are good ---------------------------------------------------

TEST_F(BadInputs, ControlViTConfigTrains) {
  const auto r = run_trainer("train --config " + vit_config_);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(run_dir_ / "metrics.jsonl"));
  EXPECT_TRUE(fs::exists(run_dir_ / "config.yaml"));
}

TEST_F(BadInputs, ControlTranslationConfigTrains) {
  const auto r = run_trainer("train --config " + seq_config_);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(run_dir_ / "metrics.jsonl"));
}

TEST_F(BadInputs, ControlWeightsFileIsAccepted) {
  const std::string w = weights("init.h5", "", "");
  const auto r = run_trainer("train --config " + vit_config_ + " --set model.init=" + w);
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

// ---- the config file ---------------------------------------------------------------------

TEST_F(BadInputs, YamlSyntaxError) {
  const fs::path config = dir_ / "syntax.yaml";
  write_text(config, "run:\n  name: x\nmodel: [d_model: 16\ntrain:\n  steps: 2\n");
  expect_refused("--config " + config.string(), {"syntax.yaml", "YAML"});
}

TEST_F(BadInputs, EmptyConfigFile) {
  const fs::path config = dir_ / "empty.yaml";
  write_text(config, "");
  expect_refused("--config " + config.string(), {"empty.yaml", "empty"});
}

TEST_F(BadInputs, MissingConfigFile) {
  expect_refused("--config " + (dir_ / "nowhere.yaml").string(), {"nowhere.yaml"});
}

TEST_F(BadInputs, UnknownKeyNamesTheNearestValidKey) {
  const fs::path config = dir_ / "unknown.yaml";
  std::string text = vit_yaml();
  text.replace(text.find("  d_ff: 32"), 10, "  d_fff: 32");
  write_text(config, text);
  expect_refused("--config " + config.string(), {"model.d_fff", "model.d_ff?"});
}

TEST_F(BadInputs, UnknownKeyInSetNamesTheNearestValidKey) {
  expect_refused_vit("--set train.globl_batch=8", {"train.globl_batch", "train.global_batch"});
}

TEST_F(BadInputs, WrongType) {
  const fs::path config = dir_ / "type.yaml";
  std::string text = vit_yaml();
  text.replace(text.find("  steps: 2"), 10, "  steps: two");
  write_text(config, text);
  expect_refused("--config " + config.string(), {"type.yaml", "train.steps", "two"});
}

TEST_F(BadInputs, OutOfRangeValue) {
  expect_refused_vit("--set model.dropout=1.5", {"model.dropout", "1.5"});
}

TEST_F(BadInputs, UnknownChoice) {
  expect_refused_vit("--set train.recompute=partial", {"train.recompute", "partial", "selective"});
}

// ---- data files --------------------------------------------------------------------------

TEST_F(BadInputs, MissingDataFile) {
  const std::string missing = (dir_ / "absent.h5").string();
  expect_refused_vit("--set data.train=" + missing, {"absent.h5"});
}

TEST_F(BadInputs, GarbageDataFile) {
  const fs::path garbage = dir_ / "garbage.h5";
  write_text(garbage, "this is not an HDF5 file, only some text\n");
  expect_refused_vit("--set data.train=" + garbage.string(), {"garbage.h5"});
}

TEST_F(BadInputs, WrongSchemaHdf5File) {
  const std::string path = (dir_ / "schema.h5").string();
  {
    h5::File f = h5::File::create(path);
    f.write<float>("weights", {2, 2}, {1, 2, 3, 4});
    f.close();
  }
  expect_refused_vit("--set data.train=" + path, {"schema.h5"});
}

TEST_F(BadInputs, WrongElementTypeInImageDataset) {
  const std::string path = (dir_ / "float_images.h5").string();
  testing_data::ImageSpec spec;
  spec.N = 16;
  spec.H = spec.W = 8;
  spec.C = 1;
  spec.classes = 3;
  spec.mean = {0.5f};
  spec.std = {0.25f};
  spec.omit = {"images"};
  testing_data::write_images(path, spec, [](h5::File& f) {
    f.write<float>("images", {16, 8, 8, 1}, std::vector<float>(16 * 64, 0.5f));
  });
  expect_refused_vit("--set data.train=" + path, {"float_images.h5", "images", "uint8"});
}

TEST_F(BadInputs, TokenIdOutsideTheVocabulary) {
  const std::string path = (dir_ / "bad_token.h5").string();
  write_tokens(path, 5);  // in the first step (records 0-7, shuffle off)
  expect_refused_seq("--set data.train=" + path, {"bad_token.h5", "record 5", "25"});
}

// Records are validated as they are read (a full scan up front would read the whole dataset):
// a bad record after the first step still ends the run with exit 2 naming the file and record,
// but only once the steps before it have run, so the run directory exists by then.
TEST_F(BadInputs, TokenIdOutsideTheVocabularyInALaterStep) {
  const std::string path = (dir_ / "late_bad_token.h5").string();
  write_tokens(path, 12);  // in the second step (records 8-15)
  const testing::CliResult r =
      run_trainer("train --config " + seq_config_ + " --set data.train=" + path);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_LE(count_lines(r.output), 3) << r.output;
  EXPECT_NE(r.output.find("late_bad_token.h5: record 12"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("HDF5-DIAG"), std::string::npos) << r.output;
  // The checkpoint directory is made (and checked writable) before the first step; empty.
  EXPECT_TRUE(!fs::exists(run_dir_ / "checkpoints") || fs::is_empty(run_dir_ / "checkpoints"))
      << "no checkpoint of a failed run";
}

// ---- model against data ------------------------------------------------------------------

TEST_F(BadInputs, VocabularyDisagreesWithData) {
  expect_refused_seq("--set model.vocab_size=50", {"model.vocab_size", "tokens.h5", "20"});
}

TEST_F(BadInputs, ImageSizeDisagreesWithData) {
  expect_refused_vit("--set model.image_size=12", {"model.image_size", "images.h5"});
}

TEST_F(BadInputs, ChannelsDisagreeWithData) {
  expect_refused_vit("--set model.channels=3", {"model.channels", "images.h5"});
}

TEST_F(BadInputs, ImageAugmentationOnTranslationData) {
  expect_refused_seq("--set data.augment_flip=true", {"data.augment_flip", "encoder_decoder"});
}

TEST_F(BadInputs, ShiftLargerThanTheImages) {
  expect_refused_vit("--set data.augment_shift=40", {"data.augment_shift", "images.h5"});
}

TEST_F(BadInputs, ClassesDisagreeWithData) {
  expect_refused_vit("--set model.num_classes=10", {"model.num_classes", "images.h5"});
}

// ---- model.init ----------------------------------------------------------------------------

TEST_F(BadInputs, WeightsFileMissingATensor) {
  const std::string w = weights("missing.h5", "encoder.layers.0.ffn.fc2.weight", "");
  expect_refused_vit("--set model.init=" + w,
                     {"missing.h5", "encoder.layers.0.ffn.fc2.weight", "missing"});
}

TEST_F(BadInputs, WeightsFileWithAWronglyShapedTensor) {
  const std::string w = weights("shape.h5", "", "head.weight");
  expect_refused_vit("--set model.init=" + w, {"shape.h5", "head.weight", "shape"});
}

// ---- cross-key checks ----------------------------------------------------------------------

TEST_F(BadInputs, HeadsDoNotDivideDModel) {
  expect_refused_vit("--set model.heads=3", {"model.heads", "model.d_model"});
}

// Tensor parallelism splits heads and FFN units evenly (vocabularies are padded instead).
TEST_F(BadInputs, HeadsNotDivisibleByTensorParallel) {
  expect_refused_vit("--set parallel.tensor=4",
                     {"model.heads: 2 is not divisible by parallel.tensor 4"});
}

TEST_F(BadInputs, FfnNotDivisibleByTensorParallel) {
  expect_refused_seq("--set model.heads=4 --set model.d_ff=30 --set parallel.tensor=4",
                     {"model.d_ff: 30 is not divisible by parallel.tensor 4"});
}

TEST_F(BadInputs, BatchSizesDoNotDivide) {
  expect_refused_vit("--set train.global_batch=10", {"train.global_batch", "train.micro_batch"});
}

// ---- the device ----------------------------------------------------------------------------

// train.device: cuda never trains elsewhere: without a GPU (CI) it says none is usable, in one
// line with exit 2; with one it trains there.
TEST_F(BadInputs, CudaDeviceWithoutGpuIsRefusedWithOneLine) {
  if (cuda_device_count() > 0) {
    const auto r = run_trainer("train --config " + vit_config_ + " --set train.device=cuda");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    return;
  }
  expect_refused_vit("--set train.device=cuda", {"train.device: cuda", "no CUDA device is usable"});
  const testing::CliResult r =
      run_trainer("train --config " + vit_config_ + " --set train.device=cuda");
  EXPECT_EQ(count_lines(r.output), 1) << r.output;
}

// The one-process commands' --device (smoke here; translate and predict in test_smoke_runs):
// an unknown name, and cuda without a GPU, end with exit 2 and one line; cuda with a GPU runs.
TEST_F(BadInputs, SmokeDeviceChoice) {
  auto r = run_trainer("smoke --steps 1 --batch 4 --device tpu");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(count_lines(r.output), 1) << r.output;
  EXPECT_NE(r.output.find("--device: expected cpu, cuda or auto, got 'tpu'"), std::string::npos)
      << r.output;
  r = run_trainer("smoke --steps 1 --batch 4 --device cuda");
  if (cuda_device_count() > 0) {
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return;
  }
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(count_lines(r.output), 1) << r.output;
  EXPECT_NE(r.output.find("--device: cuda requested, but no CUDA device is usable"),
            std::string::npos)
      << r.output;
}

// auto trains: on the CPU without a GPU, on CUDA with one.
TEST_F(BadInputs, AutoDeviceTrains) {
  const auto r = run_trainer("train --config " + vit_config_ + " --set train.device=auto");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(run_dir_ / "metrics.jsonl"));
}

}  // namespace
}  // namespace tr
