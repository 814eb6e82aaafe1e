// `trainer train` with train.device cuda, end to end on the executable: the losses follow a CPU
// run of the same config, a checkpoint written on CUDA resumes on the CPU (and one written on
// the CPU resumes on CUDA) and continues the CPU run's losses, and evaluation and checkpoints
// in the middle of a CUDA run (evaluation on the device, checkpoints from the host copy) leave
// training on the device as it was.
//
// Bound: every step's loss within 1e-4 relative of the CPU-only run (fp32; the devices differ
// by rounding only, over 8 steps of a small model).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "data/dataset_fixtures.h"
#include "e2e/cli_runner.h"
#include "e2e/resume_helpers.h"
#include "gpu/cuda_test.h"

namespace tr {
namespace {

namespace fs = std::filesystem;
using testing::run_trainer;
using testing::scratch_dir;
using testing::step_losses;

class GpuTraining : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) return;
    setenv("NVIDIA_TF32_OVERRIDE", "0", 1);
    dir_ = scratch_dir("gpu_training");
    tokens_ = (dir_ / "tokens.h5").string();
    testing_data::TranslationSpec spec;
    spec.vocab = 20;
    for (int i = 0; i < 32; ++i) {  // reverse task over tokens 4..19
      testing_data::Pair p;
      for (int k = 0; k < 2 + i % 5; ++k) p.src.push_back(4 + (i * 3 + k * 5) % 16);
      p.tgt.assign(p.src.rbegin(), p.src.rend());
      spec.records.push_back(p);
    }
    testing_data::write_translation(tokens_, spec);
    config_ = (dir_ / "seq.yaml").string();
    std::ofstream(config_) << "run:\n  name: gpu\n  seed: 3\n"
                              "train:\n  steps: 8\n  global_batch: 8\n  micro_batch: 4\n"
                              "  optimizer:\n    type: adamw\n    lr: 0.002\n"
                              "  schedule:\n    type: constant\n  grad_clip: 1.0\n"
                              "  label_smoothing: 0.1\n"
                              "checkpoint:\n  every_steps: 2\n  keep: 10\n"
                              "eval:\n  every_steps: 3\n"
                              "log:\n  every_steps: 1\n  progress: false\n"
                              "model:\n  type: encoder_decoder\n  d_model: 32\n  heads: 4\n"
                              "  d_ff: 64\n  layers: 2\n  dropout: 0.1\n  max_len: 16\n"
                              "  vocab_size: 0\n"
                              "data:\n  train: "
                           << tokens_ << "\n  valid: " << tokens_ << "\n  shuffle: true\n";
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // Trains `run` to `steps` on `device` (resuming what is there).
  void train(const fs::path& run, int steps, const std::string& device,
             const std::string& precision = "fp32") {
    const auto r = run_trainer("train --config " + config_ + " --set run.dir=" + run.string() +
                               " --set train.steps=" + std::to_string(steps) +
                               " --set train.device=" + device +
                               " --set train.precision=" + precision + " --resume auto");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  static void expect_close(const std::map<std::int64_t, double>& got,
                           const std::map<std::int64_t, double>& reference, std::int64_t first,
                           std::int64_t last, double tolerance = 1e-4) {
    for (std::int64_t s = first; s <= last; ++s) {
      ASSERT_TRUE(got.count(s) && reference.count(s)) << "step " << s;
      EXPECT_LE(std::abs(got.at(s) - reference.at(s)), tolerance * reference.at(s))
          << "step " << s << ": " << got.at(s) << " vs cpu " << reference.at(s);
    }
  }

  fs::path dir_;
  std::string tokens_, config_;
};

TEST_F(GpuTraining, CudaRunFollowsCpuAndCheckpointsMoveBetweenDevices) {
  TR_REQUIRE_CUDA();
  train(dir_ / "cpu", 8, "cpu");
  const auto reference = step_losses(dir_ / "cpu");

  train(dir_ / "cuda", 8, "cuda");  // checkpoints at 2, 4, 6, 8 and evaluation at 3, 6
  expect_close(step_losses(dir_ / "cuda"), reference, 1, 8);

  train(dir_ / "cuda_then_cpu", 4, "cuda");
  train(dir_ / "cuda_then_cpu", 8, "cpu");
  expect_close(step_losses(dir_ / "cuda_then_cpu"), reference, 1, 8);

  train(dir_ / "cpu_then_cuda", 4, "cpu");
  train(dir_ / "cpu_then_cuda", 8, "cuda");
  expect_close(step_losses(dir_ / "cpu_then_cuda"), reference, 1, 8);
}

// train.precision: bf16 (bf16 operands of every matrix product): the loss curve stays within
// 2e-2 of the fp32 CPU run's, resumed from its own checkpoint half way.
TEST_F(GpuTraining, Bf16RunFollowsCpu) {
  TR_REQUIRE_CUDA();
  train(dir_ / "cpu", 8, "cpu");
  const auto reference = step_losses(dir_ / "cpu");
  train(dir_ / "bf16", 4, "cuda", "bf16");
  train(dir_ / "bf16", 8, "cuda", "bf16");
  expect_close(step_losses(dir_ / "bf16"), reference, 1, 8, 2e-2);
}

// A CUDA checkpoint is an ordinary one: the host commands read it.
TEST_F(GpuTraining, CudaCheckpointExportsAndEvaluates) {
  TR_REQUIRE_CUDA();
  train(dir_ / "run", 2, "cuda");
  auto r = run_trainer("export --checkpoint " + (dir_ / "run").string() +
                       "/checkpoints/step_00000002 --out " + (dir_ / "w.h5").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_trainer("eval --config " + config_ + " --set run.dir=" + (dir_ / "run").string() +
                  " --weights " + (dir_ / "w.h5").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("loss"), std::string::npos) << r.output;
}

// trainer info lists the GPU and says this build trains on it (the gpu runs use Hopper or
// Ampere GPUs: both precisions).
TEST_F(GpuTraining, InfoListsTheGpu) {
  TR_REQUIRE_CUDA();
  const auto r = run_trainer("info");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("GPU 0: " + cuda_device_info(0).name), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("trains in fp32 and bf16"), std::string::npos) << r.output;
  // The widest heads the dispatch sends to the flash kernels (128 on an A100, H100 or H200).
  const std::string flash =
      "flash attention for heads up to " + std::to_string(widest_flash_attention_head(false));
  EXPECT_NE(r.output.find(flash), std::string::npos) << r.output;
}

// trainer smoke on the GPU learns as on the CPU (fp32: the same trajectory up to rounding, so
// the held-out accuracy within 5 points), and the weights it saves from the device load on the
// host.
TEST_F(GpuTraining, SmokeOnCudaLearnsAsOnTheCpu) {
  TR_REQUIRE_CUDA();
  const auto accuracy = [](const std::string& output) {
    const std::size_t at = output.find("held-out accuracy: ");
    return at == std::string::npos ? -1.0 : std::stod(output.substr(at + 19)) / 100;
  };
  const std::string smoke = "smoke --model encoder_decoder --steps 150 --batch 32 --log-every 50";
  const auto on_cpu = run_trainer(smoke + " --device cpu");
  const std::string weights = (dir_ / "smoke.h5").string();
  const auto on_cuda = run_trainer(smoke + " --device cuda --save " + weights);
  ASSERT_EQ(on_cpu.exit_code, 0) << on_cpu.output;
  ASSERT_EQ(on_cuda.exit_code, 0) << on_cuda.output;
  EXPECT_NE(on_cuda.output.find("on NVIDIA"), std::string::npos) << on_cuda.output;
  EXPECT_NEAR(accuracy(on_cuda.output), accuracy(on_cpu.output), 0.05) << on_cuda.output;
  EXPECT_GT(accuracy(on_cuda.output), 0.3) << on_cuda.output;  // the CPU: 47%, chance 4%
  const auto reloaded = run_trainer(
      "smoke --model encoder_decoder --steps 1 --batch 32 --device "
      "cpu --init " +
      weights);
  EXPECT_EQ(reloaded.exit_code, 0) << reloaded.output;
}

// The inference commands on the GPU give the CPU's results: eval (train.device) and translate
// (--device), greedy and beam search.
TEST_F(GpuTraining, InferenceCommandsOnCudaEqualTheCpu) {
  TR_REQUIRE_CUDA();
  train(dir_ / "run", 8, "cuda");
  const std::string eval = "eval --config " + config_ +
                           " --set run.dir=" + (dir_ / "run").string() + " --checkpoint " +
                           (dir_ / "run").string() + " --set train.device=";
  const auto on_cpu = run_trainer(eval + "cpu"), on_cuda = run_trainer(eval + "cuda");
  ASSERT_EQ(on_cpu.exit_code, 0) << on_cpu.output;
  ASSERT_EQ(on_cuda.exit_code, 0) << on_cuda.output;
  const auto figures = [](const std::string& output) {
    return nlohmann::json::parse(output.substr(output.find('{')));
  };
  const nlohmann::json a = figures(on_cpu.output), b = figures(on_cuda.output);
  EXPECT_NEAR(b["loss"].get<double>(), a["loss"].get<double>(), 1e-5 * a["loss"].get<double>());
  EXPECT_EQ(b["accuracy"], a["accuracy"]);

  const fs::path in = dir_ / "in.txt";
  std::ofstream(in) << "4 9 14\n5 10 15 19\n6 11\n";
  for (const char* beam : {"1", "3"}) {
    const std::string translate = "translate --checkpoint " + (dir_ / "run").string() +
                                  " --ids --beam " + beam + " < " + in.string() + " --device ";
    const auto t_cpu = run_trainer(translate + "cpu"), t_cuda = run_trainer(translate + "cuda");
    ASSERT_EQ(t_cpu.exit_code, 0) << t_cpu.output;
    ASSERT_EQ(t_cuda.exit_code, 0) << t_cuda.output;
    EXPECT_EQ(t_cuda.output, t_cpu.output) << "beam " << beam;
  }
}

}  // namespace
}  // namespace tr
