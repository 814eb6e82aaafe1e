// The smoke configs learn (issue 3, Acceptance): the encoder-decoder of
// configs/smoke_translation.yaml reaches >= 95% teacher-forced token accuracy on the synthetic
// reverse task, the ViT of configs/smoke_vit.yaml beats 70% on Fashion-MNIST's test images.
// Then eval, translate, predict, export, inspect and plot run on what the training left.
// Each suite prepares its data and trains once (SetUpTestSuite); the tests check the outputs.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "data/h5.h"
#include "e2e/cli_runner.h"
#include "layers/device.h"

namespace tr {
namespace {

namespace fs = std::filesystem;
using testing::CliResult;
using testing::count_lines;
using testing::run_trainer;
using testing::scratch_dir;

const std::string kConfigs = std::string(TR_SOURCE_DIR) + "/configs/";
const char* const kFashionMnist = "/usr/share/datasets/fashion-mnist";

std::vector<nlohmann::json> read_jsonl(const fs::path& path) {
  std::vector<nlohmann::json> rows;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

// The one JSON object among the output lines (stdout and stderr are merged).
nlohmann::json json_line(const std::string& output) {
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);)
    if (!line.empty() && line[0] == '{') return nlohmann::json::parse(line);
  ADD_FAILURE() << "no JSON object in: " << output;
  return {};
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string file_bytes(const fs::path& path, std::size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes(n, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(n));
  bytes.resize(static_cast<std::size_t>(in.gcount()));
  return bytes;
}

// Runs the trainer, logs the wall time (the suite must stay fast on 2 cores).
CliResult timed(const std::string& what, const std::string& args) {
  const auto start = std::chrono::steady_clock::now();
  CliResult r = run_trainer(args);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ timing   ] %s: %.1f s (exit %d)\n", what.c_str(), s, r.exit_code);
  return r;
}

// The training rows and the evaluation rows of a run's metrics.jsonl, checked for the fields
// the issue names.
struct Metrics {
  std::vector<nlohmann::json> train, eval;
};

Metrics check_metrics(const fs::path& run_dir, bool translation) {
  Metrics m;
  for (const nlohmann::json& row : read_jsonl(run_dir / "metrics.jsonl")) {
    EXPECT_TRUE(row.contains("step")) << row;
    if (row.contains("eval_loss")) {
      EXPECT_TRUE(row.contains("accuracy")) << row;
      m.eval.push_back(row);
      continue;
    }
    for (const char* key : {"loss", "lr", "grad_norm", "samples_per_s", "elapsed_s"})
      EXPECT_TRUE(row.contains(key) && row[key].is_number()) << key << " in " << row;
    // At least the parameters, their gradients and AdamW's two moments (4 copies of a model
    // of more than 1,000 parameters), and not absurdly more for these tiny models.
    EXPECT_TRUE(row.contains("tflops") && row["tflops"].is_number() &&
                row["tflops"].get<double>() > 0)
        << row;
    EXPECT_FALSE(row.contains("mfu")) << "no peak known for a CPU: " << row;
    const bool has_peak = row.contains("peak_memory_mb") && row["peak_memory_mb"].is_number();
    EXPECT_TRUE(has_peak) << row;
    if (has_peak) {
      EXPECT_GT(row["peak_memory_mb"].get<double>(), 4 * 1000 * 4 / 1048576.0) << row;
      EXPECT_LT(row["peak_memory_mb"].get<double>(), 4096) << row;
    }
    EXPECT_EQ(row.contains("tokens_per_s"), translation) << row;
    EXPECT_TRUE(std::isfinite(row["loss"].get<double>())) << row;
    m.train.push_back(row);
  }
  return m;
}

// ---- encoder-decoder on the synthetic reverse task ----------------------------------------

// The trainers started here run on one OpenMP thread: these models are so small that
// OpenMP's fork/join per kernel dominates, and on a shared 2-core machine spinning threads stall
// each other (the translation run took 7 s on one thread and 20-100 s on two, under load).
// Speed is measured by bench/, never by tests; the threaded kernels have their own unit tests.
void use_one_thread() {
  setenv("OMP_NUM_THREADS", "1", 1);
}

class SmokeTranslation : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    use_one_thread();
    dir_ = scratch_dir("smoke_translation");
    train_data_ = (dir_ / "reverse_train.h5").string();
    valid_data_ = (dir_ / "reverse_valid.h5").string();
    run_dir_ = dir_ / "run";
    const std::string prepare =
        "prepare synthetic --task reverse --vocab 20 --min-len 4 --max-len 12 ";
    prepare_train_ = timed("prepare synthetic (train)",
                           prepare + "--records 4000 --seed 1 --out " + train_data_);
    prepare_valid_ =
        timed("prepare synthetic (valid)", prepare + "--records 256 --seed 2 --out " + valid_data_);
    train_ = timed("train smoke_translation", "train --config " + config() + " " + data_sets() +
                                                  " --set run.dir=" + run_dir_.string());
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  void SetUp() override {
    ASSERT_EQ(prepare_train_.exit_code, 0) << prepare_train_.output;
    ASSERT_EQ(prepare_valid_.exit_code, 0) << prepare_valid_.output;
    ASSERT_EQ(train_.exit_code, 0) << train_.output;
  }

  static std::string config() { return kConfigs + "smoke_translation.yaml"; }
  static std::string data_sets() {
    return "--set data.train=" + train_data_ + " --set data.valid=" + valid_data_;
  }
  // The source records [first, first + n) of the validation set, as "--ids" lines, and their
  // reversals.
  static void valid_pairs(int n, std::string& input, std::vector<std::string>& expected) {
    h5::File f = h5::File::open(valid_data_);
    const auto tokens = f.read<std::int32_t>("src/tokens");
    const auto offsets = f.read<std::int64_t>("src/offsets");
    for (int i = 0; i < n; ++i) {
      std::ostringstream line, reversed;
      for (std::int64_t k = offsets[i]; k < offsets[i + 1]; ++k) {
        const char* space = k > offsets[i] ? " " : "";
        line << space << tokens[k];
        reversed << space << tokens[offsets[i + 1] - 1 - (k - offsets[i])];
      }
      input += line.str() + "\n";
      expected.push_back(reversed.str());
    }
  }

  static inline fs::path dir_, run_dir_;
  static inline std::string train_data_, valid_data_;
  static inline CliResult prepare_train_, prepare_valid_, train_;
};

TEST_F(SmokeTranslation, ReachesTokenAccuracy) {
  const Metrics m = check_metrics(run_dir_, true);
  ASSERT_FALSE(m.train.empty());
  ASSERT_FALSE(m.eval.empty());
  EXPECT_EQ(m.train.front()["step"], 10);
  EXPECT_LT(m.train.back()["loss"].get<double>(), 0.5 * m.train.front()["loss"].get<double>());
  const nlohmann::json& last = m.eval.back();
  EXPECT_EQ(last["step"], m.train.back()["step"]);
  EXPECT_GE(last["accuracy"].get<double>(), 0.95) << last;
  EXPECT_FALSE(last.contains("bleu")) << "no tokenizer, so no BLEU: " << last;
  EXPECT_TRUE(fs::exists(run_dir_ / "config.yaml"));
  EXPECT_TRUE(fs::exists(run_dir_ / "checkpoints" / "latest"));
}

TEST_F(SmokeTranslation, EvalPrintsJson) {
  const CliResult r = timed("eval", "eval --config " + config() + " " + data_sets() +
                                        " --checkpoint " + run_dir_.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = json_line(r.output);
  EXPECT_EQ(j["records"], 256) << j;
  EXPECT_EQ(j["data"], valid_data_) << j;
  EXPECT_TRUE(j["step"].is_number_integer()) << j;
  EXPECT_GT(j["loss"].get<double>(), 0.0) << j;
  EXPECT_LT(j["loss"].get<double>(), 0.5) << j;
  EXPECT_GE(j["accuracy"].get<double>(), 0.95) << j;
  EXPECT_FALSE(j.contains("bleu")) << j;
}

TEST_F(SmokeTranslation, TranslateIdsReversesTheInput) {
  std::string input;
  std::vector<std::string> expected;
  valid_pairs(8, input, expected);
  const fs::path in = dir_ / "translate_in.txt";
  std::ofstream(in) << input;
  for (const char* beam : {"1", "3"}) {
    const CliResult r = timed(std::string("translate --ids --beam ") + beam,
                              "translate --checkpoint " + run_dir_.string() + " --ids --beam " +
                                  beam + " < " + in.string());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::vector<std::string> lines = split_lines(r.output);
    ASSERT_EQ(lines.size(), expected.size()) << r.output;
    int exact = 0;
    for (std::size_t i = 0; i < lines.size(); ++i) exact += lines[i] == expected[i];
    EXPECT_GE(exact, 6) << "beam " << beam << ":\n" << r.output;
  }
}

// eval runs on train.device: cuda without a GPU ends with exit 2 and one line; with one it
// gives the CPU's figures.
TEST_F(SmokeTranslation, EvalOnTheConfiguredDevice) {
  const std::string command =
      "eval --config " + config() + " " + data_sets() + " --checkpoint " + run_dir_.string();
  const CliResult cpu = run_trainer(command + " --set train.device=cpu");
  ASSERT_EQ(cpu.exit_code, 0) << cpu.output;
  const CliResult cuda = run_trainer(command + " --set train.device=cuda");
  if (cuda_device_count() == 0) {
    EXPECT_EQ(cuda.exit_code, 2) << cuda.output;
    EXPECT_EQ(count_lines(cuda.output), 1) << cuda.output;
    EXPECT_NE(cuda.output.find("train.device: cuda requested"), std::string::npos) << cuda.output;
    return;
  }
  ASSERT_EQ(cuda.exit_code, 0) << cuda.output;
  const nlohmann::json a = json_line(cpu.output), b = json_line(cuda.output);
  EXPECT_NEAR(b["loss"].get<double>(), a["loss"].get<double>(), 1e-5 * a["loss"].get<double>());
  EXPECT_EQ(b["accuracy"], a["accuracy"]);
}

// --device: cpu gives the default's lines where no GPU is present; cuda ends with exit 2 and
// one line where none is (and translates the same where one is); anything else is exit 2.
TEST_F(SmokeTranslation, TranslateDeviceChoice) {
  std::string input;
  std::vector<std::string> expected;
  valid_pairs(4, input, expected);
  const fs::path in = dir_ / "device_in.txt";
  std::ofstream(in) << input;
  const std::string command =
      "translate --checkpoint " + run_dir_.string() + " --ids --beam 2 < " + in.string();
  const CliResult cpu = run_trainer(command + " --device cpu");
  ASSERT_EQ(cpu.exit_code, 0) << cpu.output;
  const CliResult cuda = run_trainer(command + " --device cuda");
  if (cuda_device_count() == 0) {
    EXPECT_EQ(cuda.exit_code, 2) << cuda.output;
    EXPECT_EQ(count_lines(cuda.output), 1) << cuda.output;
    EXPECT_NE(cuda.output.find("--device: cuda requested"), std::string::npos) << cuda.output;
    EXPECT_EQ(run_trainer(command).output, cpu.output);  // auto: the CPU here
  } else {
    EXPECT_EQ(cuda.exit_code, 0) << cuda.output;
    EXPECT_EQ(cuda.output, cpu.output);
  }
  const CliResult bad = run_trainer(command + " --device gpu");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_EQ(count_lines(bad.output), 1) << bad.output;
  EXPECT_NE(bad.output.find("--device: expected cpu, cuda or auto, got 'gpu'"), std::string::npos)
      << bad.output;
}

TEST_F(SmokeTranslation, TranslateWithoutTokenizerAsksForIds) {
  const fs::path in = dir_ / "text_in.txt";
  std::ofstream(in) << "hello world\n";
  CliResult r = run_trainer("translate --checkpoint " + run_dir_.string() + " < " + in.string());
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(count_lines(r.output), 1) << r.output;
  EXPECT_NE(r.output.find("--ids"), std::string::npos) << r.output;

  std::ofstream(in) << "5 6 7\n5 99 7\n";
  r = run_trainer("translate --ids --checkpoint " + run_dir_.string() + " < " + in.string());
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("line 2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("'99'"), std::string::npos) << r.output;
}

TEST_F(SmokeTranslation, ExportedWeightsInitializeARunAndInspect) {
  const fs::path weights = dir_ / "weights.h5";
  CliResult r =
      timed("export", "export --checkpoint " + run_dir_.string() + " --out " + weights.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(fs::exists(weights));

  r = run_trainer("inspect " + weights.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("model_type: encoder_decoder"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("embed.weight [20, "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("decoder.layers.0.cross_attn.q_proj.weight"), std::string::npos)
      << r.output;

  // The exported weights are the trained ones: as model.init, the first evaluation is as good.
  const fs::path init_run = dir_ / "init_run";
  r = timed("train from model.init",
            "train --config " + config() + " " + data_sets() +
                " --set run.dir=" + init_run.string() + " --set model.init=" + weights.string() +
                " --set train.steps=2 --set eval.every_steps=2 --set log.every_steps=1"
                " --set train.schedule.type=constant --set train.optimizer.lr=1.0e-6");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Metrics m = check_metrics(init_run, true);
  ASSERT_EQ(m.train.size(), 2u);
  ASSERT_EQ(m.eval.size(), 1u);
  EXPECT_GE(m.eval[0]["accuracy"].get<double>(), 0.95) << m.eval[0];

  // ... and `eval --weights` reads them too.
  r = run_trainer("eval --config " + config() + " " + data_sets() + " --weights " +
                  weights.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_GE(json_line(r.output)["accuracy"].get<double>(), 0.95) << r.output;
}

TEST_F(SmokeTranslation, InspectDatasetAndCheckpoint) {
  CliResult r = run_trainer("inspect " + train_data_);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("translation dataset"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("records: 4000"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("vocab_size: 20 (pad 0, bos 1, eos 2, unk 3)"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("tokenizer: none"), std::string::npos) << r.output;

  r = run_trainer("inspect " + run_dir_.string());  // a run directory: its newest checkpoint
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("checkpoint"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("checksums verified"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("optimizer: adamw"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("model_type: encoder_decoder"), std::string::npos) << r.output;
}

TEST_F(SmokeTranslation, PlotWritesPng) {
  const fs::path png = dir_ / "curves.png";
  const CliResult r = timed("plot", "plot " + run_dir_.string() + " --out " + png.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(fs::exists(png));
  EXPECT_GT(fs::file_size(png), 1000u);
  EXPECT_EQ(file_bytes(png, 8), std::string("\x89PNG\r\n\x1a\n", 8));
}

// ---- ViT on Fashion-MNIST -----------------------------------------------------------------

class SmokeVit : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    use_one_thread();
    if (!fs::is_directory(kFashionMnist)) return;
    available_ = true;
    dir_ = scratch_dir("smoke_vit");
    train_data_ = (dir_ / "train.h5").string();
    test_data_ = (dir_ / "test.h5").string();
    run_dir_ = dir_ / "run";
    const std::string src = std::string(kFashionMnist) + "/";
    prepare_train_ = timed("prepare images (train)",
                           "prepare images --images " + src + "train-images-idx3-ubyte.gz" +
                               " --labels " + src + "train-labels-idx1-ubyte.gz" +
                               " --class-names fashion-mnist --out " + train_data_);
    if (prepare_train_.exit_code != 0) return;
    prepare_test_ = timed("prepare images (test)",
                          "prepare images --images " + src + "t10k-images-idx3-ubyte.gz" +
                              " --labels " + src + "t10k-labels-idx1-ubyte.gz" + " --stats-from " +
                              train_data_ + " --out " + test_data_);
    if (prepare_test_.exit_code != 0) return;
    train_ = timed("train smoke_vit", "train --config " + config() + " " + data_sets() +
                                          " --set run.dir=" + run_dir_.string());
  }
  static void TearDownTestSuite() {
    if (available_) fs::remove_all(dir_);
  }

  void SetUp() override {
    if (!available_)
      GTEST_SKIP() << kFashionMnist << " is missing (Debian package dataset-fashion-mnist)";
    ASSERT_EQ(prepare_train_.exit_code, 0) << prepare_train_.output;
    ASSERT_EQ(prepare_test_.exit_code, 0) << prepare_test_.output;
    ASSERT_EQ(train_.exit_code, 0) << train_.output;
  }

  static std::string config() { return kConfigs + "smoke_vit.yaml"; }
  static std::string data_sets() {
    return "--set data.train=" + train_data_ + " --set data.valid=" + test_data_;
  }

  static inline bool available_ = false;
  static inline fs::path dir_, run_dir_;
  static inline std::string train_data_, test_data_;
  static inline CliResult prepare_train_, prepare_test_, train_;
};

TEST_F(SmokeVit, BeatsSeventyPercent) {
  const Metrics m = check_metrics(run_dir_, false);
  ASSERT_FALSE(m.train.empty());
  ASSERT_FALSE(m.eval.empty());
  EXPECT_LT(m.train.back()["loss"].get<double>(), m.train.front()["loss"].get<double>());
  const nlohmann::json& last = m.eval.back();
  EXPECT_EQ(last["step"], m.train.back()["step"]);
  EXPECT_GT(last["accuracy"].get<double>(), 0.70) << last;
  EXPECT_TRUE(fs::exists(run_dir_ / "checkpoints" / "latest"));
}

TEST_F(SmokeVit, EvalOnTheWholeTestSet) {
  const CliResult r =
      timed("eval (10000 test images)",
            "eval --config " + config() + " " + data_sets() + " --checkpoint " + run_dir_.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = json_line(r.output);
  EXPECT_EQ(j["records"], 10000) << j;
  EXPECT_GT(j["loss"].get<double>(), 0.0) << j;
  EXPECT_GT(j["accuracy"].get<double>(), 0.70) << j;
  EXPECT_FALSE(j.contains("bleu")) << j;
}

TEST_F(SmokeVit, PredictPrintsOneClassPerImage) {
  const CliResult r = timed("predict (10000 images)",
                            "predict --checkpoint " + run_dir_.string() + " --data " + test_data_);
  ASSERT_EQ(r.exit_code, 0) << r.output.substr(0, 2000);
  std::vector<std::string> lines = split_lines(r.output);
  // 10000 "index<TAB>class<TAB>name" lines and one accuracy line on stderr.
  ASSERT_EQ(lines.size(), 10001u) << r.output.substr(0, 2000);
  int predictions = 0;
  double accuracy = -1;
  for (const std::string& line : lines) {
    if (line.rfind("accuracy against the file's labels: ", 0) == 0) {
      accuracy = std::stod(line.substr(line.find(": ") + 2)) / 100;
      continue;
    }
    const std::string expected_index = std::to_string(predictions) + "\t";
    ASSERT_EQ(line.rfind(expected_index, 0), 0u) << line;
    const std::string rest = line.substr(expected_index.size());
    const int cls = std::stoi(rest);
    ASSERT_GE(cls, 0);
    ASSERT_LT(cls, 10);
    EXPECT_NE(rest.find('\t'), std::string::npos) << "class name expected: " << line;
    ++predictions;
  }
  EXPECT_EQ(predictions, 10000);
  EXPECT_GT(accuracy, 0.70) << r.output.substr(r.output.size() - 200);
}

TEST_F(SmokeVit, ExportedWeightsInitializeARunAndInspect) {
  const fs::path weights = dir_ / "weights.h5";
  CliResult r =
      run_trainer("export --checkpoint " + run_dir_.string() + " --out " + weights.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_trainer("inspect " + weights.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("model_type: vit"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("head.weight [10, "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("cls_token [1, 1, "), std::string::npos) << r.output;

  const fs::path init_run = dir_ / "init_run";
  r = timed("train from model.init",
            "train --config " + config() + " " + data_sets() +
                " --set run.dir=" + init_run.string() + " --set model.init=" + weights.string() +
                " --set train.steps=2 --set eval.every_steps=2 --set log.every_steps=1"
                " --set train.schedule.type=constant --set train.optimizer.lr=1.0e-6");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Metrics m = check_metrics(init_run, false);
  ASSERT_EQ(m.eval.size(), 1u);
  EXPECT_GT(m.eval[0]["accuracy"].get<double>(), 0.70) << m.eval[0];
}

TEST_F(SmokeVit, InspectDatasetAndCheckpoint) {
  CliResult r = run_trainer("inspect " + test_data_);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("images dataset"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("records: 10000"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("image: 28x28x1, classes: 10"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("'Ankle boot'"), std::string::npos) << r.output;

  const fs::path latest = run_dir_ / "checkpoints" / "latest";
  ASSERT_TRUE(fs::exists(latest));
  std::ifstream latest_file(latest);
  std::string name;
  std::getline(latest_file, name);
  const fs::path checkpoint = fs::is_directory(latest) ? latest : run_dir_ / "checkpoints" / name;
  r = run_trainer("inspect " + checkpoint.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("checksums verified"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("model_type: vit"), std::string::npos) << r.output;
}

TEST_F(SmokeVit, PlotWritesPng) {
  const fs::path png = dir_ / "curves.png";
  const CliResult r = run_trainer("plot " + run_dir_.string() + " --out " + png.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(fs::exists(png));
  EXPECT_EQ(file_bytes(png, 8), std::string("\x89PNG\r\n\x1a\n", 8));
}

}  // namespace
}  // namespace tr
