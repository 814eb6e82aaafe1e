// Optimizer state inside checkpoints, loadable under any TP x DP x ZeRO layout
// (docs/FORMATS.md). Two forms:
// - per parameter (parallel.zero 0): datasets "<param>/<state>" (exp_avg, exp_avg_sq,
//   momentum_buffer), one file per tensor-parallel rank, sharded like the parameters
//   (trainer/shard_io.h); replicated parameters only in TP rank 0's file.
// - ZeRO-1 (parallel.zero 1): one file per (TP rank, DP rank) with that rank's piece of its
//   TP rank's flat moment vector and an index (name, split axis, local size along it, offset,
//   extent of every parameter, in flat order) from which the whole tensors are rebuilt.
// A reader rebuilds each parameter's whole state tensor from whichever form was written and
// keeps the part its own layout needs.
#pragma once

#include <string>

#include "trainer/optimizer.h"
#include "trainer/sharded_adamw.h"

namespace tr {

// File name of one rank's optimizer state: optim_rank0000.h5 style under TP 1 (as before
// tensor parallelism), optim_tp01_rank0000.h5 otherwise.
std::string optimizer_file_name(int tp_rank, int tp_size, int dp_rank);

// Per-parameter form: this TP rank's state (dp rank 0 of each TP rank writes it).
void write_optimizer_file(const std::string& dir, int tp_rank, int tp_size,
                          const Optimizer& optimizer);
// ZeRO-1 form: this rank's shard.
void write_optimizer_shard(const std::string& dir, int tp_rank, int tp_size, int dp_rank,
                           const ShardedAdamW& optimizer);

// Loads the optimizer state of the checkpoint in `dir` (written in either form, under any
// layout). UserError when it is missing, of another optimizer type or of another model.
void load_optimizer_state(const std::string& dir, Optimizer& optimizer);
void load_optimizer_shard(const std::string& dir, ShardedAdamW& optimizer);

}  // namespace tr
