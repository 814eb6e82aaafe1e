// Shared by the checkpoint and resume tests (issue 5): tiny training runs of the golden models
// (tests/golden/train) with shuffling and dropout on, their per-step losses from
// metrics.jsonl, and bitwise comparison of two runs.
#pragma once

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "e2e/cli_runner.h"

namespace tr::testing {

// A training setup: the golden config of `model` (vit, encdec_pre, encdec_post) made to
// exercise everything a resume must restore: shuffled epochs (64 records, 8 steps each, so
// runs cross epochs), dropout, two accumulated micro-batches, a prefetching loader, AdamW.
// The schedule is warmup then constant, so the learning rate does not depend on
// train.steps (a run stopped by train.steps=k then continued to N trains as one of N steps).
struct RunSetup {
  std::string model = "vit";
  std::vector<std::string> sets;  // extra key=value overrides
  bool golden_weights = true;     // start from the golden weights file, else the seeded init

  std::vector<std::string> args(const std::filesystem::path& run_dir, std::int64_t steps) const {
    const std::string golden = std::string(TR_GOLDEN_DIR) + "/train/";
    std::vector<std::string> all = {"train",
                                    "--config",
                                    golden + model + ".yaml",
                                    "--set",
                                    "data.train=" + golden + model + "_data.h5",
                                    "--set",
                                    "run.dir=" + run_dir.string(),
                                    "--set",
                                    "train.steps=" + std::to_string(steps),
                                    "--set",
                                    "data.shuffle=true",
                                    "--set",
                                    "model.dropout=0.1",
                                    "--set",
                                    "train.schedule.warmup_steps=3",
                                    "--set",
                                    "train.optimizer.lr=0.003",
                                    "--set",
                                    "log.every_steps=1",
                                    "--set",
                                    "log.progress=false",
                                    "--set",
                                    "checkpoint.keep=0"};
    all.push_back("--set");  // "" (YAML for an empty string): the seeded initialisation
    all.push_back("model.init=" + (golden_weights ? golden + model + "_weights.h5" : "\"\""));
    for (const std::string& s : sets) {
      all.push_back("--set");
      all.push_back(s);
    }
    return all;
  }
  // The same as one shell argument string (for run_trainer).
  std::string command(const std::filesystem::path& run_dir, std::int64_t steps,
                      const std::string& extra = "") const {
    std::string s;
    for (const std::string& a : args(run_dir, steps)) s += a + " ";
    return s + extra;
  }
};

// Per-step training losses of a run: the last row logged for each step (a run killed between
// a checkpoint and its next one logs some steps twice: before the kill and after the resume).
inline std::map<std::int64_t, double> step_losses(const std::filesystem::path& run_dir) {
  std::map<std::int64_t, double> losses;
  std::ifstream in(run_dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const auto row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (row.is_discarded()) {
      ADD_FAILURE() << run_dir << "/metrics.jsonl: unparsable line: " << line;
      continue;
    }
    if (row.contains("loss")) losses[row["step"].get<std::int64_t>()] = row["loss"].get<double>();
  }
  return losses;
}

// Steps logged more than once in a run's metrics.jsonl. A resumed run drops the rows that
// the run it continues logged after its checkpoint, so there should be none.
inline std::vector<std::int64_t> repeated_steps(const std::filesystem::path& run_dir) {
  std::map<std::int64_t, int> seen;
  std::ifstream in(run_dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const auto row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (row.is_object() && row.contains("loss")) ++seen[row["step"].get<std::int64_t>()];
  }
  std::vector<std::int64_t> repeated;
  for (const auto& [step, n] : seen)
    if (n > 1) repeated.push_back(step);
  return repeated;
}

inline std::string hex_bits(double x) {
  char text[64];
  std::snprintf(text, sizeof text, "%.17g (0x%016llx)", x,
                static_cast<unsigned long long>(std::bit_cast<std::uint64_t>(x)));
  return text;
}

// Every step of `reference` from `from_step` on is in `got` with the same bits (metrics.jsonl
// prints doubles with 17 significant digits, which round-trips exactly). Returns how many
// steps were compared.
inline int expect_bitwise_equal(const std::map<std::int64_t, double>& reference,
                                const std::map<std::int64_t, double>& got,
                                std::int64_t from_step = 1) {
  int compared = 0;
  for (const auto& [step, loss] : reference) {
    if (step < from_step) continue;
    const auto it = got.find(step);
    if (it == got.end()) {
      ADD_FAILURE() << "step " << step << " missing from the resumed run";
      continue;
    }
    EXPECT_EQ(std::bit_cast<std::uint64_t>(it->second), std::bit_cast<std::uint64_t>(loss))
        << "step " << step << ": resumed " << hex_bits(it->second) << ", uninterrupted "
        << hex_bits(loss);
    ++compared;
  }
  EXPECT_EQ(got.size(), reference.size()) << "the runs logged different step counts";
  return compared;
}

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// OpenMP's fork/join dominates for these tiny models, and ctest runs tests side by side.
inline void use_one_thread() {
  setenv("OMP_NUM_THREADS", "1", 1);
}

}  // namespace tr::testing
