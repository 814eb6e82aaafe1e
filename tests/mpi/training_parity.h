// Helpers of the MPI tests that compare `trainer train` runs under a parallel layout with the
// single-process run: golden configs, metrics, and the parameters of a run's final checkpoint
// assembled whole whatever layout wrote it.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/model.h"
#include "mpi/mpi_main.h"
#include "trainer/checkpoint.h"
#include "trainer/model_config_yaml.h"
#include "trainer/training.h"

namespace tr::testing {

namespace fs = std::filesystem;

// One column of metrics.jsonl ("loss", "grad_norm"), rows that have it, in order.
inline std::vector<double> metric(const fs::path& run_dir, const std::string& key) {
  std::vector<double> out;
  std::ifstream in(run_dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto row = nlohmann::json::parse(line);
    if (row.contains(key)) out.push_back(row[key].get<double>());
  }
  return out;
}

// `trainer train` arguments for the golden config `model` (tests/golden/train), data and
// weights given absolutely, extra --set overrides after them.
inline TrainArgs golden_args(const std::string& model, const fs::path& run_dir,
                             const std::vector<std::string>& extra) {
  // TR_GOLDEN_DIR in the environment: the tests run from a bundle on another machine
  // (bench/gpu_check), where the source tree is elsewhere than where they were built.
  const char* moved = std::getenv("TR_GOLDEN_DIR");
  const fs::path golden = fs::path(moved ? moved : TR_GOLDEN_DIR) / "train";
  TrainArgs args;
  args.config_path = (golden / (model + ".yaml")).string();
  args.overrides = {"data.train=" + (golden / (model + "_data.h5")).string(),
                    "model.init=" + (golden / (model + "_weights.h5")).string(),
                    "run.dir=" + run_dir.string(), "log.progress=false", "data.prefetch=0"};
  args.overrides.insert(args.overrides.end(), extra.begin(), extra.end());
  args.resume = "never";
  return args;
}

// Runs the training; failures are recorded, never thrown, so that every rank still reaches
// the collectives that follow (a rank leaving early would leave the others waiting).
inline void train(const TrainArgs& args, ParallelRuntime& runtime) {
  try {
    EXPECT_EQ(run_training(args, runtime), 0);
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what();
  }
}

// A directory unique to this job (rank 0's pid, shared by broadcast): concurrent jobs and the
// np2 / np4 runs of one test must not meet.
inline fs::path job_dir(const std::string& label) {
  Communicator& world = g_runtime->world();
  std::int64_t job = world.rank() == 0 ? static_cast<std::int64_t>(getpid()) : 0;
  world.broadcast(&job, 1, DType::i64, 0);
  return fs::temp_directory_path() / ("tr_" + label + "_" + std::to_string(job));
}

// The parameters of the newest checkpoint of a run, whole, by canonical name.
inline std::map<std::string, std::vector<double>> final_parameters(const fs::path& run_dir) {
  std::map<std::string, std::vector<double>> out;
  const std::string dir = find_latest_checkpoint(run_dir.string());
  if (dir.empty()) {
    ADD_FAILURE() << run_dir << " has no checkpoint";
    return out;
  }
  const CheckpointMeta meta = read_checkpoint_meta(dir);
  auto model =
      make_model(model_config_from_yaml_text(meta.model_yaml, dir), DType::f64, 0.0, /*seed=*/0);
  load_checkpoint(dir, model->parameters(), nullptr);
  for (const Parameter* p : model->parameters())
    out[p->name].assign(p->value.data<double>(), p->value.data<double>() + p->value.numel());
  return out;
}

// Largest relative L2 distance over the tensors of two parameter sets (each tensor compared
// as a whole: summation orders differ between layouts, and AdamW divides by sqrt(v), so single
// elements with near-zero gradients move more than the rest). A key projection's bias is
// skipped: it shifts every score of a query equally, which softmax ignores, so its gradient is
// zero in exact arithmetic and AdamW turns the round-off left in its place into full steps.
inline double max_parameter_distance(const std::map<std::string, std::vector<double>>& a,
                                     const std::map<std::string, std::vector<double>>& b,
                                     const std::string& label, double tolerance = 1e-5) {
  EXPECT_EQ(a.size(), b.size()) << label;
  double worst = 0;
  for (const auto& [name, x] : a) {
    if (name.ends_with("k_proj.bias")) continue;
    const auto it = b.find(name);
    if (it == b.end()) {
      ADD_FAILURE() << label << ": " << name << " missing";
      continue;
    }
    const std::vector<double>& y = it->second;
    EXPECT_EQ(x.size(), y.size()) << label << " " << name;
    double diff = 0, norm = 0;
    for (std::size_t i = 0; i < x.size() && i < y.size(); ++i) {
      diff += (x[i] - y[i]) * (x[i] - y[i]);
      norm += x[i] * x[i];
    }
    const double d = std::sqrt(diff / std::max(norm, 1e-12));
    EXPECT_LE(d, tolerance) << label << " parameter " << name;
    worst = std::max(worst, d);
  }
  return worst;
}

// Largest relative difference of two metric columns, which must have `n` rows each.
inline double max_relative_difference(const std::vector<double>& a, const std::vector<double>& b,
                                      std::size_t n, const std::string& label,
                                      double tolerance = 1e-5) {
  EXPECT_EQ(a.size(), n) << label;
  EXPECT_EQ(b.size(), n) << label;
  double worst = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double d = std::abs(a[i] - b[i]) / std::abs(a[i]);
    EXPECT_LE(d, tolerance) << label << " step " << i + 1;
    worst = std::max(worst, d);
  }
  return worst;
}

// The largest differences between two runs' losses and gradient norms (8 steps each) and
// final parameters, each checked against `tolerance` (INFINITY: measured only).
struct Differences {
  double loss = 0, norm = 0, params = 0;
};

inline Differences differences(const fs::path& a, const fs::path& b, const std::string& label,
                               double tolerance) {
  Differences d;
  d.loss =
      max_relative_difference(metric(a, "loss"), metric(b, "loss"), 8, label + " loss", tolerance);
  d.norm = max_relative_difference(metric(a, "grad_norm"), metric(b, "grad_norm"), 8,
                                   label + " grad_norm", tolerance);
  d.params = max_parameter_distance(final_parameters(a), final_parameters(b), label, tolerance);
  return d;
}

}  // namespace tr::testing
