// End-to-end parity with PyTorch: `trainer train` from a weights file on a dataset file
// (shuffle off, dropout 0, constant learning rate, AdamW, gradient accumulation over two
// micro-batches, gradient clipping) logs the same 8 step losses as a float64 PyTorch run,
// within 1e-4 relative. Golden files: tests/golden/train/, written by
// tests/golden/make_train_golden.py (see docs/FORMATS.md); the test needs no Python.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "e2e/cli_runner.h"

namespace tr {
namespace {

namespace fs = std::filesystem;
using testing::run_trainer;
using testing::scratch_dir;

constexpr double kTolerance = 1e-4;  // relative, the acceptance bound

const fs::path kGolden = fs::path(TR_GOLDEN_DIR) / "train";

nlohmann::json read_json_file(const fs::path& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  return nlohmann::json::parse(in);
}

// The training rows of metrics.jsonl (those with "step" and "loss"), in file order.
std::vector<nlohmann::json> training_rows(const fs::path& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::vector<nlohmann::json> rows;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    nlohmann::json row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    EXPECT_TRUE(row.is_object()) << path << " line " << number << " is not a JSON object: " << line;
    if (row.is_object() && row.contains("step") && row.contains("loss")) rows.push_back(row);
  }
  return rows;
}

double relative(double actual, double expected) {
  return std::abs(actual - expected) / std::abs(expected);
}

std::string quoted(const fs::path& p) {
  std::string out;  // appended, not "'" + ...: GCC 12 warns falsely (-Wrestrict) on that
  out.reserve(p.string().size() + 2);
  out.append(1, '\'').append(p.string()).append(1, '\'');
  return out;
}

class TrainParity : public ::testing::TestWithParam<const char*> {
 protected:
  void TearDown() override {
    if (!dir_.empty() && !HasFailure()) fs::remove_all(dir_);  // kept for a look on failure
  }
  fs::path dir_;
};

TEST_P(TrainParity, EightAdamWStepsMatchPyTorch) {
  // "model" or "model+recompute": the golden run again under train.recompute (the same
  // gradients, so the same tolerance).
  const std::string param = GetParam();
  const std::string name = param.substr(0, param.find('+'));
  const std::string recompute =
      param.find('+') == std::string::npos ? "none" : param.substr(param.find('+') + 1);
  const nlohmann::json all = read_json_file(kGolden / "expected.json");
  ASSERT_TRUE(all.contains(name)) << "expected.json has no entry " << name;
  const nlohmann::json& expected = all[name];
  const auto losses = expected["losses"].get<std::vector<double>>();
  const auto norms = expected["grad_norms"].get<std::vector<double>>();
  const double lr = expected["lr"].get<double>();
  ASSERT_EQ(losses.size(), 8u);
  ASSERT_EQ(norms.size(), losses.size());

  dir_ = scratch_dir("train_parity_" + name + "_" + recompute);
  const fs::path run_dir = dir_ / "run";
  const auto r =
      run_trainer("train --config " + quoted(kGolden / (name + ".yaml")) +
                  " --set data.train=" + quoted(kGolden / (name + "_data.h5")) +
                  " --set model.init=" + quoted(kGolden / (name + "_weights.h5")) +
                  " --set run.dir=" + quoted(run_dir) + " --set train.recompute=" + recompute);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const std::vector<nlohmann::json> rows = training_rows(run_dir / "metrics.jsonl");
  ASSERT_EQ(rows.size(), losses.size()) << "training rows in " << run_dir / "metrics.jsonl";

  double worst_loss = 0, worst_norm = 0;
  std::ostringstream table;
  table << name << ": step, trainer loss, PyTorch loss, relative error\n";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const nlohmann::json& row = rows[i];
    ASSERT_EQ(row["step"].get<std::int64_t>(), static_cast<std::int64_t>(i + 1))
        << "rows out of order: " << row.dump();
    // A loss of null would be a non-finite value.
    ASSERT_TRUE(row["loss"].is_number()) << row.dump();
    ASSERT_TRUE(row.contains("grad_norm") && row["grad_norm"].is_number()) << row.dump();
    ASSERT_TRUE(row.contains("lr") && row["lr"].is_number()) << row.dump();
    const double loss = row["loss"].get<double>();
    const double norm = row["grad_norm"].get<double>();
    const double loss_err = relative(loss, losses[i]);
    const double norm_err = relative(norm, norms[i]);
    worst_loss = std::max(worst_loss, loss_err);
    worst_norm = std::max(worst_norm, norm_err);
    EXPECT_LE(loss_err, kTolerance)
        << name << " step " << i + 1 << ": loss " << loss << ", PyTorch " << losses[i];
    // The norm before clipping: a second, independent view of the same gradients.
    EXPECT_LE(norm_err, kTolerance)
        << name << " step " << i + 1 << ": grad_norm " << norm << ", PyTorch " << norms[i];
    EXPECT_NEAR(row["lr"].get<double>(), lr, 1e-12 * lr) << "constant schedule, step " << i + 1;
    char line[160];
    std::snprintf(line, sizeof line, "  %zu  %.10f  %.10f  %.2e\n", i + 1, loss, losses[i],
                  loss_err);
    table << line;
  }
  table << "  max relative error: loss " << worst_loss << ", grad_norm " << worst_norm << "\n";
  std::fputs(table.str().c_str(), stdout);
  RecordProperty("max_relative_loss_error", std::to_string(worst_loss));
  RecordProperty("max_relative_grad_norm_error", std::to_string(worst_norm));
}

INSTANTIATE_TEST_SUITE_P(PyTorch, TrainParity,
                         ::testing::Values("vit", "encdec_pre", "encdec_post", "vit+full",
                                           "encdec_pre+selective", "encdec_post+full"),
                         [](const auto& info) {
                           std::string test_name = info.param;
                           std::replace(test_name.begin(), test_name.end(), '+', '_');
                           return test_name;
                         });

// train.attention_dropout: fused draws its masks inside cuDNN; on the CPU there is none, so a
// run with dropout logs exactly the exact run's losses and norms (the setting reaches the
// layers, and is cleared again, through `trainer train`).
TEST(AttentionDropoutModes, FusedTrainsAsExactOnTheCpu) {
  const fs::path dir = scratch_dir("attention_dropout_modes");
  std::vector<std::vector<nlohmann::json>> runs;
  for (const char* mode : {"exact", "fused"}) {
    const fs::path run_dir = dir / mode;
    const auto r = run_trainer(
        "train --config " + quoted(kGolden / "encdec_pre.yaml") +
        " --set data.train=" + quoted(kGolden / "encdec_pre_data.h5") + " --set model.init=" +
        quoted(kGolden / "encdec_pre_weights.h5") + " --set run.dir=" + quoted(run_dir) +
        " --set train.device=cpu --set model.dropout=0.2 --set train.attention_dropout=" + mode);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    runs.push_back(training_rows(run_dir / "metrics.jsonl"));
  }
  ASSERT_EQ(runs[0].size(), 8u);
  ASSERT_EQ(runs[1].size(), runs[0].size());
  for (std::size_t i = 0; i < runs[0].size(); ++i) {
    EXPECT_EQ(runs[1][i]["loss"], runs[0][i]["loss"]) << "step " << i + 1;
    EXPECT_EQ(runs[1][i]["grad_norm"], runs[0][i]["grad_norm"]) << "step " << i + 1;
  }
  if (!::testing::Test::HasFailure()) fs::remove_all(dir);
}

}  // namespace
}  // namespace tr
