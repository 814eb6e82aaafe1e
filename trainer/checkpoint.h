// Checkpoints (DESIGN section 5): RUN_DIR/checkpoints/step_00001000/ holding
//   model_tp00.h5       the model (per tensor-parallel rank; a weights file when TP = 1)
//   optim_rank0000.h5   optimizer state: datasets "<param>/<state>" (exp_avg, exp_avg_sq, ...)
//   meta.yaml           step, data cursor, optimizer step count, layout, resolved config,
//                       checksums of every file
// written into "step_00001000.tmp" and renamed into place once complete and synced;
// RUN_DIR/checkpoints/latest (replaced atomically) names the newest complete checkpoint.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "data/loader.h"
#include "layers/parameter.h"
#include "trainer/optimizer.h"
#include "trainer/sharded_adamw.h"

namespace tr {

struct CheckpointMeta {
  std::int64_t step = 0;              // optimizer steps completed
  std::int64_t samples = 0;           // samples consumed
  LoaderState loader;                 // data cursor
  std::uint64_t seed = 0;             // run.seed: dropout masks are keyed by (seed, step, ...)
  std::string optimizer_type;         // adamw | sgd
  std::int64_t optimizer_steps = 0;   // bias-correction step count
  std::int64_t bad_steps_in_row = 0;  // non-finite steps skipped in a row
  std::int64_t skipped_steps = 0;     // non-finite steps skipped in all (metrics' skipped_steps)
  int tensor_parallel = 1, data_parallel = 1, zero = 0;
  std::string model_type;
  std::string model_yaml;                        // the model section (also the weights' `config`)
  std::string config_yaml;                       // the whole resolved run config
  std::map<std::string, std::string> checksums;  // file name -> FNV-1a 64 hex
};

// Name of the tokenizer a translation checkpoint carries (SentencePiece model bytes).
inline constexpr const char* kCheckpointTokenizerFile = "tokenizer.model";

// Writes a complete checkpoint for `step` under run_dir/checkpoints, then prunes to `keep`
// newest (keep <= 0: keep all). `extra_files` (name -> bytes) are written inside it too and
// covered by the checksums. Returns the checkpoint directory.
// With sharded optimizer state (ZeRO-1) every rank first writes its shard into the temporary
// directory (prepare_checkpoint_dir on rank 0, then write_optimizer_shard everywhere); this call
// (rank 0, optimizer null, `keep_prepared` true) then adds the rest and checksums everything.
std::string save_checkpoint(const std::string& run_dir, const CheckpointMeta& meta,
                            const ParameterList& params, const Optimizer* optimizer, int keep,
                            const std::map<std::string, std::string>& extra_files = {},
                            bool keep_prepared = false);
// Creates the (empty) temporary directory of the checkpoint for `step`, and returns it.
std::string prepare_checkpoint_dir(const std::string& run_dir, std::int64_t step);
std::string checkpoint_tmp_dir(const std::string& run_dir, std::int64_t step);
// This DP rank's ZeRO-1 shard: optim_rank<dp rank>.h5 with flat exp_avg / exp_avg_sq and the
// shard's place in the flat parameter vector, so any layout can reassemble it.
void write_optimizer_shard(const std::string& dir, int dp_rank, ShardedAdamW& optimizer);
// Loads the optimizer state of a checkpoint written under any layout (sharded or not) into a
// sharded optimizer.
void load_optimizer_shard(const std::string& checkpoint_dir, ShardedAdamW& optimizer);

// The newest complete, intact checkpoint of a run directory ("" when there is none). A newest
// checkpoint whose files do not match their checksums is reported through `warning` and the
// one before it is tried.
std::string find_latest_checkpoint(const std::string& run_dir, std::string* warning = nullptr);

// Reads meta.yaml and verifies every file's checksum; UserError naming the file otherwise.
CheckpointMeta read_checkpoint_meta(const std::string& checkpoint_dir);
// Loads model parameters (and optimizer state when `optimizer` is given).
void load_checkpoint(const std::string& checkpoint_dir, const ParameterList& params,
                     Optimizer* optimizer);
// Path of the model file inside a checkpoint (a weights file when TP = 1).
std::string checkpoint_model_file(const std::string& checkpoint_dir);

// Readies run_dir/checkpoints for a run continuing from a checkpoint of `resume_step` (0: a
// fresh start): removes the directories of saves and prunings that a kill interrupted
// ("*.tmp", "*.pruned"), and renames every complete checkpoint of a later step to
// "<name>.discarded". Those hold a future the resumed run trains again (or were corrupt, which
// is why resume passed them over); left in place they would outlive the new checkpoints when
// pruning keeps the highest steps, or be picked up by a later resume. Returns the names set
// aside.
std::vector<std::string> tidy_checkpoints(const std::string& run_dir, std::int64_t resume_step);

std::string file_checksum(const std::string& path);  // FNV-1a 64 of the bytes, hex

}  // namespace tr
