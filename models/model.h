// The interface the trainer sees: a model that takes a micro-batch, returns its summed loss,
// and accumulates gradients for a given loss scale.
#pragma once

#include <functional>
#include <memory>
#include <unordered_set>

#include "layers/dropout.h"
#include "layers/parameter.h"
#include "layers/tensor_parallel.h"
#include "models/model_config.h"

namespace tr {

// One micro-batch. Translation: token ids right-padded with pad_id (DESIGN section 4);
// images: normalised pixels. Unused fields stay undefined.
struct Batch {
  Tensor src;      // i32 [B, S]  record + [eos]
  Tensor src_len;  // i32 [B]     valid source positions, eos included
  Tensor tgt_in;   // i32 [B, T]  [bos] + record
  Tensor tgt_out;  // i32 [B, T]  record + [eos]; pad where ignored
  Tensor tgt_len;  // i32 [B]
  Tensor images;   // f32|f64 [B, C, H, W]
  Tensor labels;   // i32 [B]
  // Host copies of tgt_out and labels when the batch lives on a device (upload_batch sets them):
  // the forward counts and selects its targets there instead of reading them back.
  Tensor tgt_out_host, labels_host;
  std::int64_t size() const { return images.defined() ? images.dim(0) : src.dim(0); }
};

class Model {
 public:
  virtual ~Model() = default;
  const ModelConfig& config() const { return config_; }
  // Canonical order (DESIGN section 4 names); the order of checkpoints and optimizer state.
  const ParameterList& parameters() const { return parameters_; }

  // Returns the loss summed over the micro-batch's counted targets (non-pad tokens or images).
  virtual double forward(const Batch& batch, const ForwardContext& ctx) = 0;
  // Accumulates d(scale * summed loss)/d params. scale = 1 / (targets counted in the step).
  virtual void backward(double scale) = 0;
  // Targets counted by the last forward.
  virtual std::int64_t counted_targets() const = 0;
  // FLOPs of one training forward + backward on `batch` (whole model, all tensor-parallel ranks
  // together), called after its forward: 3 x the matrix-multiply FLOPs this implementation
  // executes (2 per multiply-add; every Linear, attention scores and weighted sums over the
  // padded shapes, the output projection over the counted target rows; the ViT's last layer
  // on the CLS row) as bench/flops.py counts them. The metrics' tflops and mfu.
  virtual double train_flops(const Batch& batch) const = 0;
  // Logits of the last forward: [B, T, V] (translation) or [B, classes] (images). After a
  // training forward, translation models keep only the counted (non-pad) target rows, [n, V],
  // and under tensor parallelism only this rank's vocabulary columns (padding included).
  // Translation models compute the logits' gradient in their place: after backward this
  // holds the gradient.
  virtual Tensor logits() const = 0;

  void zero_grad();

  // Moves the parameters, their gradients and every other tensor the model keeps between steps
  // to `device` (a copy; nothing when already there). Activations follow the inputs: a batch
  // on CUDA runs on CUDA. Optimizers must be given the moved parameters' new tensors, so move
  // the model before building its optimizer, or move the optimizer's state with it.
  virtual void to_device(Device device);
  Device device() const {
    return parameters_.empty() ? Device::cpu : parameters_.front()->value.device();
  }

  // Called during backward with each parameter as soon as its gradient is final, layer by layer
  // from the output side, so that data-parallel reduction of those gradients starts while the
  // rest of backward runs (parallel/gradient_reducer.h). With a hook set, every parameter is
  // reported exactly once per backward; an empty hook turns reporting off (gradient
  // accumulation sets it for the last micro-batch only).
  void set_gradient_ready_hook(std::function<void(Parameter*)> hook) {
    ready_hook_ = std::move(hook);
  }

 protected:
  Model(const ModelConfig& config) : config_(config) {}
  // For backward implementations: the parameters of `part` (anything with
  // collect_parameters) are final; report_remaining_ready() reports the rest at the end.
  template <typename Part>
  void report_ready(Part& part) {
    if (!ready_hook_) return;
    ready_scratch_.clear();
    part.collect_parameters(ready_scratch_);
    for (Parameter* p : ready_scratch_) report_ready(p);
  }
  void report_ready(Parameter* p) {
    if (ready_hook_ && reported_.insert(p).second) ready_hook_(p);
  }
  void report_remaining_ready() {
    if (!ready_hook_) return;
    for (Parameter* p : parameters_) report_ready(p);
    reported_.clear();
  }

  ModelConfig config_;
  ParameterList parameters_;

 private:
  std::function<void(Parameter*)> ready_hook_;
  std::unordered_set<const Parameter*> reported_;
  ParameterList ready_scratch_;
};

// Builds the model named by config.type with parameters in `dtype`, then initialises them
// (models/init.h) from `seed`. Label smoothing applies to the training loss. With a
// tensor-parallel group of more than one rank, this rank's shard of the model (Megatron-LM:
// attention heads, FFN units and the vocabulary split over the group; ViT patch embedding and
// head, norms and positions replicated); parameters keep their canonical names and record
// their place in the full tensors (Parameter::shard).
std::unique_ptr<Model> make_model(const ModelConfig& config, DType dtype, double label_smoothing,
                                  std::uint64_t seed, TensorParallel* tp = nullptr);

// UserError "model.heads: 6 is not divisible by parallel.tensor 4" (likewise model.d_ff) when
// the group cannot split the model evenly. Vocabularies need not divide: they are padded.
void validate_tensor_parallel(const ModelConfig& config, int tensor_parallel);

// Checks the config's values (positive sizes, heads dividing d_model, ...); throws UserError
// naming the key, e.g. "model.heads: 5 does not divide model.d_model 256".
void validate_model_config(const ModelConfig& config);

}  // namespace tr
