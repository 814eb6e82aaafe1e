// Checkpoints (DESIGN section 5): RUN_DIR/checkpoints/step_00001000/ holding
//   model_tp00.h5 ...   the model, one file per tensor-parallel rank of the writing run, its
//                       shards recording global shape, split axis and offset (shard_io.h);
//                       under TP 1 model_tp00.h5 is a weights file
//   optim_*.h5          optimizer state, per TP rank or per ZeRO-1 rank
//                       (optimizer_checkpoint.h)
//   meta.yaml           step, data cursor, optimizer step count, layout, resolved config,
//                       checksums of every file
// written into "step_00001000.tmp" and renamed into place once complete and synced;
// RUN_DIR/checkpoints/latest (replaced atomically) names the newest complete checkpoint.
// Any checkpoint loads under any TP x DP x ZeRO layout.
//
// Writing from several ranks: rank 0 prepare_checkpoint_dir, barrier; every TP rank of DP
// rank 0 write_model_shard, and the optimizer writers theirs (optimizer_checkpoint.h); barrier;
// rank 0 finish_checkpoint.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "data/loader.h"
#include "layers/parameter.h"
#include "trainer/optimizer.h"
#include "trainer/optimizer_checkpoint.h"

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

// Writes a complete checkpoint of a single process for `step` under run_dir/checkpoints, then
// prunes to `keep` newest (keep <= 0: keep all). `extra_files` (name -> bytes) are written
// inside it too and covered by the checksums. Returns the checkpoint directory.
std::string save_checkpoint(const std::string& run_dir, const CheckpointMeta& meta,
                            const ParameterList& params, const Optimizer* optimizer, int keep,
                            const std::map<std::string, std::string>& extra_files = {});
// Creates the (empty) temporary directory of the checkpoint for `step`, and returns it.
std::string prepare_checkpoint_dir(const std::string& run_dir, std::int64_t step);
std::string checkpoint_tmp_dir(const std::string& run_dir, std::int64_t step);
// model_tp<tp_rank>.h5 in `dir`: this TP rank's parameters (sharded ones as their slices,
// replicated ones only on TP rank 0), root attributes model_type and config (meta's), and
// tp_rank / tp_size when tp_size > 1.
void write_model_shard(const std::string& dir, const CheckpointMeta& meta,
                       const ParameterList& params, int tp_rank, int tp_size);
// Completes the checkpoint whose files the ranks wrote into checkpoint_tmp_dir: extra files,
// checksums of everything, meta.yaml, rename into place, `latest`, pruning to `keep`.
// Returns the checkpoint directory; on failure removes the temporary directory.
std::string finish_checkpoint(const std::string& run_dir, const CheckpointMeta& meta, int keep,
                              const std::map<std::string, std::string>& extra_files = {});

// The newest complete, intact checkpoint of a run directory ("" when there is none). A newest
// checkpoint whose files do not match their checksums is reported through `warning` and the
// one before it is tried.
std::string find_latest_checkpoint(const std::string& run_dir, std::string* warning = nullptr);
// The checkpoint to read of a run directory for eval, translate, export and inspect: the newest
// intact one, after a warning line on stderr for each newer one passed over; "" when the
// directory holds no checkpoint. One that holds checkpoints but none intact is a UserError
// naming it and why its newest checkpoint is unusable.
std::string newest_intact_checkpoint_or_throw(const std::string& run_dir);

// Reads meta.yaml and verifies every file's checksum; UserError naming the file otherwise.
CheckpointMeta read_checkpoint_meta(const std::string& checkpoint_dir);
// Loads model parameters (and optimizer state when `optimizer` is given), each parameter (or
// tensor-parallel shard of one) from the checkpoint's model files, whatever layout wrote them.
void load_checkpoint(const std::string& checkpoint_dir, const ParameterList& params,
                     Optimizer* optimizer);
// Path of the model file of TP rank 0 inside a checkpoint (a weights file when TP = 1).
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
