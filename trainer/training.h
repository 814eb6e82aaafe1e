// `trainer train`: the training loop of one rank (DESIGN section 6).
//
// Everything the user gave is checked before anything is written (config, data, model.init,
// the checkpoint to resume). Then: resolved config to RUN_DIR/config.yaml, model and
// optimizer, streaming loader, and per step: micro-batches with gradient accumulation, the
// loss normalised by the global batch's target count, clipping on the global norm,
// non-finite steps skipped, the scheduled update; logging, evaluation and checkpoints every N
// steps; a graceful stop (checkpoint, exit 0) on SIGTERM/SIGUSR1/SIGINT.
#pragma once

#include <string>
#include <vector>

namespace tr {

struct TrainArgs {
  std::string config_path;
  std::vector<std::string> overrides;  // --set key.path=value
  std::string resume;                  // --resume auto|never|DIR; "" = checkpoint.resume
  bool overwrite = false;  // --overwrite: `never` may replace the run already in run.dir
};

class ParallelRuntime;

// Runs this rank's part of the training; every rank of the job calls it. Returns the process
// exit code (0 also after a requested stop).
int run_training(const TrainArgs& args, ParallelRuntime& runtime);

}  // namespace tr
