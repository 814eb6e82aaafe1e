#include "models/model.h"

#include "layers/device.h"
#include "models/encoder_decoder.h"
#include "models/init.h"
#include "models/vit.h"

namespace tr {

void Model::zero_grad() {
  for (Parameter* p : parameters_) p->grad.zero_();
}

void Model::to_device(Device device) {
  for (Parameter* p : parameters_) {
    p->value = tr::to_device(p->value, device);
    if (p->grad.defined()) p->grad = tr::to_device(p->grad, device);
  }
}

namespace {
void require(bool ok, const std::string& message) {
  if (!ok) throw UserError(message);
}
std::string positive(const char* key, std::int64_t value) {
  return std::string("model.") + key + ": expected a positive integer, got " +
         std::to_string(value);
}
}  // namespace

void validate_model_config(const ModelConfig& c) {
  require(c.type == "encoder_decoder" || c.type == "vit",
          "model.type: expected encoder_decoder or vit, got '" + c.type + "'");
  require(c.d_model > 0, positive("d_model", c.d_model));
  require(c.heads > 0, positive("heads", c.heads));
  require(c.d_ff > 0, positive("d_ff", c.d_ff));
  require(c.encoder_layers > 0, positive("layers", c.encoder_layers));
  require(c.d_model % c.heads == 0, "model.heads: " + std::to_string(c.heads) +
                                        " does not divide model.d_model " +
                                        std::to_string(c.d_model));
  require(c.dropout >= 0 && c.dropout < 1,
          "model.dropout: expected a value in [0, 1), got " + std::to_string(c.dropout));
  require(c.norm == "pre" || c.norm == "post",
          "model.norm: expected pre or post, got '" + c.norm + "'");
  require(c.activation == "relu" || c.activation == "gelu" || c.activation == "gelu_tanh",
          "model.activation: expected relu, gelu or gelu_tanh, got '" + c.activation + "'");
  if (c.type == "encoder_decoder") {
    require(c.decoder_layers > 0, positive("layers", c.decoder_layers));
    require(c.vocab_size > 0, positive("vocab_size", c.vocab_size));
    require(c.max_len > 1, "model.max_len: expected at least 2, got " + std::to_string(c.max_len));
    require(c.positional == "sinusoidal" || c.positional == "learned",
            "model.positional: expected sinusoidal or learned, got '" + c.positional + "'");
    for (auto [key, id] :
         {std::pair{"pad_id", c.pad_id}, {"bos_id", c.bos_id}, {"eos_id", c.eos_id}})
      require(id >= 0 && id < c.vocab_size, std::string("model.") + key + ": " +
                                                std::to_string(id) + " is outside the vocabulary");
  } else {
    require(c.image_size > 0, positive("image_size", c.image_size));
    require(c.patch_size > 0, positive("patch_size", c.patch_size));
    require(c.channels > 0, positive("channels", c.channels));
    require(c.num_classes > 1,
            "model.num_classes: expected at least 2, got " + std::to_string(c.num_classes));
    require(c.image_size % c.patch_size == 0, "model.image_size: " + std::to_string(c.image_size) +
                                                  " is not a multiple of model.patch_size " +
                                                  std::to_string(c.patch_size));
    require(c.norm == "pre", "model.norm: the ViT is pre-LN only, got '" + c.norm + "'");
  }
}

void validate_tensor_parallel(const ModelConfig& c, int tensor_parallel) {
  const std::string tp = std::to_string(tensor_parallel);
  require(c.heads % tensor_parallel == 0,
          "model.heads: " + std::to_string(c.heads) + " is not divisible by parallel.tensor " + tp);
  require(c.d_ff % tensor_parallel == 0,
          "model.d_ff: " + std::to_string(c.d_ff) + " is not divisible by parallel.tensor " + tp);
}

std::unique_ptr<Model> make_model(const ModelConfig& config, DType dtype, double label_smoothing,
                                  std::uint64_t seed, TensorParallel* tp) {
  validate_model_config(config);
  tp = active_tp(tp);
  if (tp) validate_tensor_parallel(config, tp->size());
  std::unique_ptr<Model> model;
  if (config.type == "vit")
    model = std::make_unique<ViT>(config, dtype, label_smoothing, tp);
  else
    model = std::make_unique<EncoderDecoder>(config, dtype, label_smoothing, tp);
  initialize_parameters(model->parameters(), seed);
  return model;
}

}  // namespace tr
