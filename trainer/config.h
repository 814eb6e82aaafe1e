// The run configuration (DESIGN section 6): a YAML file of sections `run`, `model`, `data`,
// `train`, `parallel`, `checkpoint`, `eval`, `log`, plus `--set key.path=value` overrides.
//
// Every option is declared once, in the table of trainer/config_schema.cpp (dotted key, field,
// range or choices, help); parsing, `--set`, type and range checks, nearest-key suggestions,
// the resolved YAML and `trainer train --help-config` all derive from that table. Defaults are
// the member initialisers below (and those of ModelConfig, AdamWConfig, ScheduleConfig).
//
//   RunConfig config = load_run_config("configs/vit_fashion_mnist.yaml", {"train.steps=100"});
//   check_config_against_data(config, read_dataset_info(config.data.train), &valid_info);
//   const std::int64_t accumulation = accumulation_steps(config, dp_size);
//   write_resolved_config(config, config.run.dir + "/config.yaml");
//
// Every problem is a one-line UserError naming the file or `--set`, the key, what was
// expected and what was given.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset_info.h"
#include "models/model_config.h"
#include "trainer/lr_schedule.h"
#include "trainer/optimizer.h"

namespace tr {

struct RunSection {
  std::string name = "run";
  std::string dir;         // "" = runs/<name> (resolved at load, so config.yaml names it)
  std::uint64_t seed = 0;  // initialisation, dropout and shuffling
};

// The model's YAML section is ModelConfig plus where its initial weights come from; a
// ModelSection passes wherever a ModelConfig is expected.
struct ModelSection : ModelConfig {
  std::string init;  // weights file to start from; "" = the seeded initialisation
};

struct DataSection {
  std::string train;
  std::string valid;  // "" = no evaluation set
  bool shuffle = true;
  std::string batching = "sentences";  // sentences | tokens (translation only)
  std::int64_t max_tokens = 4096;      // padded tokens per micro-batch (token batching)
  std::int64_t prefetch = 2;           // steps read ahead; 0 = read on demand
  bool augment_flip = false;           // images: random horizontal flips in training
  std::int64_t augment_shift = 0;      // images: random shifts up to this many pixels
};

// The peak learning rate (`train.optimizer.lr` in YAML) lives in TrainSection::schedule.lr,
// since the schedule is the one thing that reads it.
struct OptimizerSection {
  std::string type = "adamw";  // adamw | sgd
  double beta1 = 0.9;          // `betas: [beta1, beta2]`
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;  // both optimizers; torch.optim.AdamW's default
  double momentum = 0.9;       // sgd only

  AdamWConfig adamw() const { return {beta1, beta2, eps, weight_decay}; }
  SGDConfig sgd() const { return {momentum, weight_decay}; }
};

struct TrainSection {
  std::int64_t steps = 0;          // optimizer steps; exactly one of steps and epochs is given
  std::int64_t epochs = 0;         // converted to steps by total_steps()
  std::int64_t global_batch = 32;  // records per optimizer step over all DP ranks
  std::int64_t micro_batch = 0;    // records per micro-batch and rank; 0 = global / DP
  std::string device = "auto";     // cpu | cuda | auto
  std::string precision = "fp32";  // fp32 | bf16
  std::string recompute = "none";  // none | selective | full (layers/dropout.h: Recompute)
  std::string attention_dropout = "exact";  // exact | fused (ops::fused_attention_dropout)
  double label_smoothing = 0.0;
  double grad_clip = 1.0;          // max global gradient norm; 0 = off
  std::int64_t max_bad_steps = 5;  // consecutive non-finite steps skipped before stopping
  OptimizerSection optimizer;
  // type, lr (= train.optimizer.lr), warmup_steps, min_lr from YAML; total_steps is filled
  // from train.steps at load, or from the data's size by check_config_against_data.
  ScheduleConfig schedule;
};

struct ParallelSection {
  std::int64_t tensor = 1;        // tensor-parallel ranks per model replica
  std::int64_t data = 0;          // data-parallel replicas; 0 = `auto` (world / tensor)
  std::int64_t zero = 0;          // 1 = shard optimizer state over DP ranks (ZeRO-1)
  double bucket_mb = 25.0;        // gradient all-reduce bucket size
  bool overlap = true;            // reduce buckets during backward
  std::string gpu_comm = "auto";  // auto | nccl | mpi: how device buffers travel on CUDA
};

struct CheckpointSection {
  std::int64_t every_steps = 1000;  // 0 = never (a final checkpoint is still written)
  std::int64_t keep = 3;            // newest checkpoints kept; 0 = all
  std::string resume = "auto";      // auto | never | a checkpoint directory
};

struct EvalSection {
  std::int64_t every_steps = 1000;  // 0 = never
  std::int64_t beam = 1;            // translation: 1 = greedy decoding
  std::int64_t max_batches = 0;     // 0 = the whole validation set
};

struct LogSection {
  std::int64_t every_steps = 10;
  bool progress = true;  // progress bar when stdout is a terminal
};

struct RunConfig {
  RunSection run;
  ModelSection model;
  DataSection data;
  TrainSection train;
  ParallelSection parallel;
  CheckpointSection checkpoint;
  EvalSection eval;
  LogSection log;
};

// Reads `path`, applies `overrides` ("key.path=value", value parsed as YAML: a scalar, a flow
// list like [0.9,0.98] or a flow mapping for a whole section) in order, fills defaults and
// validates (validate_run_config). Relative paths inside stay as written.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides);
// The same from YAML text; `source` names it in messages (a file name, "meta.yaml", ...).
RunConfig run_config_from_yaml_text(const std::string& text, const std::string& source,
                                    const std::vector<std::string>& overrides = {});

// Applies one "key.path=value" to a loaded config and validates the result. Setting
// train.steps clears train.epochs (and the other way round); model.layers sets
// encoder_layers and decoder_layers.
void apply_override(RunConfig& config, const std::string& assignment);

// Every per-key range and every cross-key check that needs neither data nor world size:
// heads divide d_model, image_size a multiple of patch_size, steps xor epochs, tensor
// dividing heads and d_ff, global_batch against micro_batch x parallel.data when data is
// fixed, ... load_run_config and apply_override call it.
void validate_run_config(const RunConfig& config);

// The resolved config as YAML: every key that applies to the model type, defaults filled.
// run_config_from_yaml_text of it gives the same config back.
std::string run_config_to_yaml(const RunConfig& config);
// Writes run_config_to_yaml to `path` (creating its directory) via path.tmp and a rename, so
// a crash never leaves a truncated config.yaml.
void write_resolved_config(const RunConfig& config, const std::string& path);

// Checks the model against the datasets and fills what the data decides: model.vocab_size,
// pad/bos/eos ids (translation) and train.schedule.total_steps when training by epochs.
// `valid` may be null. Mismatches name the model key and the dataset file.
void check_config_against_data(RunConfig& config, const DatasetInfo& train,
                               const DatasetInfo* valid);

// Checks the model section against the `config` attribute of the weights file model.init
// (`weights_path`): type and every shape-relevant key must agree; the message names the first
// that differs. Call after check_config_against_data (vocab_size 0 is not compared).
void check_config_against_weights(const RunConfig& config,
                                  const std::string& model_yaml_from_weights,
                                  const std::string& weights_path);

// Data-parallel replicas for a world of `world_size` processes: parallel.data, or
// world / parallel.tensor for `auto`. UserError when the grid does not fill the world.
int data_parallel_size(const RunConfig& config, int world_size);
// Micro-batches per step and DP rank: global_batch / (micro_batch x dp_size). UserError
// naming train.global_batch, train.micro_batch and parallel.data when it does not divide.
std::int64_t micro_batch_size(const RunConfig& config, int dp_size);
std::int64_t accumulation_steps(const RunConfig& config, int dp_size);
// train.steps, or train.epochs x ceil(records_per_epoch / global_batch): every record is
// seen at least once per epoch.
std::int64_t total_steps(const RunConfig& config, std::int64_t records_per_epoch);

// Every key with its type or choices, default and help, by section
// (`trainer train --help-config`).
std::string config_help();

}  // namespace tr
