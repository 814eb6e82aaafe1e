// Where the trainer keeps the model on a CUDA run, and the moves between devices it makes.
//
// On CUDA the parameters, gradients, optimizer state (AdamW/SGD, or the ZeRO-1 shards) and
// activations live on the GPU; each micro-batch is uploaded before its forward (evaluation's
// too). Checkpoints are written and read from host copies (HostResidency): the file formats
// stay exactly the CPU's, so a CUDA checkpoint resumes on the CPU and the other way round.
#pragma once

#include "layers/device.h"
#include "models/model.h"
#include "trainer/optimizer.h"
#include "trainer/sharded_adamw.h"

namespace tr {

struct RunConfig;

// train.device resolved: cpu; cuda (UserError, one line, when no GPU is usable); auto: cuda
// when a GPU is usable, else cpu. It sets train.precision for that device
// (set_training_precision: bf16 products, and bf16 activations on the CPU).
Device resolve_training_device(const RunConfig& config);

// The device of a one-process command (eval, translate, predict, smoke; fp32): `choice` is
// cpu, cuda or auto, as given by `key` (named in the errors). cuda without a usable GPU, or
// with one this build cannot run, is a UserError (exit 2); auto takes the GPU where it can,
// else the CPU (saying why on stderr when a GPU is present but unusable).
Device inference_device(const std::string& choice, const std::string& key);

// After the rank's GPU is selected: UserError (one line: the GPU, why, what to do) when this
// build cannot train on it at train.precision (no kernel image for its architecture; bf16
// below compute capability 8.0).
void require_usable_cuda_device(const RunConfig& config);

// Copies the defined tensors of `host` into `device_batch` on `device`, reusing its buffers;
// off the CPU also keeps a host copy of the targets (Batch::tgt_out_host). Returns without
// waiting for the device (staged copies).
void upload_batch(Batch& device_batch, const Batch& host, Device device);

// The model and its optimizer state, moved together.
struct TrainingState {
  Model* model = nullptr;
  Optimizer* optimizer = nullptr;   // either this
  ShardedAdamW* sharded = nullptr;  // or this (ZeRO-1)
  void to_device(Device device) const;
};

// Moves the training state to the host for its lifetime (checkpoint writing, evaluation) and
// back to `device` after; nothing when `device` is the CPU.
class HostResidency {
 public:
  HostResidency(const TrainingState& state, Device device);
  ~HostResidency() noexcept(false);  // moving back may fail (device memory)
  HostResidency(const HostResidency&) = delete;
  HostResidency& operator=(const HostResidency&) = delete;

 private:
  const TrainingState& state_;
  Device device_;
};

}  // namespace tr
