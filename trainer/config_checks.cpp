// The checks of a RunConfig that involve more than one key, the data, the weights of
// model.init or the world size. Per-key ranges come from the option table.
#include <algorithm>
#include <charconv>
#include <functional>
#include <limits>
#include <string>
#include <tuple>
#include <utility>

#include "layers/error.h"
#include "models/model.h"
#include "trainer/config.h"
#include "trainer/config_schema.h"
#include "trainer/model_config_yaml.h"

namespace tr {

namespace {

using Origin = std::function<std::string(const std::string&)>;

std::string str(std::int64_t v) {
  return std::to_string(v);
}
std::string num(double v) {
  char buf[64];
  return std::string(buf, std::to_chars(buf, buf + sizeof(buf), v).ptr);
}

// Throws `message`, which starts with the key it is about, prefixed by where that key's value
// came from.
[[noreturn]] void fail(const Origin& origin, const std::string& message) {
  throw UserError(origin(message.substr(0, message.find(':'))) + message);
}

void check_model(const RunConfig& c, const Origin& origin) {
  ModelConfig model = c.model;
  // The vocabulary usually comes from the data (check_config_against_data); check the rest now.
  if (model.vocab_size == 0) model.vocab_size = std::numeric_limits<std::int32_t>::max();
  try {
    validate_model_config(model);
  } catch (const UserError& e) {
    fail(origin, e.what());
  }
  // A ViT's activation defaults to gelu (config_schema.cpp); given, it must be a GELU.
  if (model.type == "vit" && model.activation == "relu")
    fail(origin, "model.activation: the ViT's MLP is a GELU (gelu or gelu_tanh), got 'relu'");
  // Tensor parallelism splits heads and FFN units evenly (the vocabulary is padded instead).
  try {
    validate_tensor_parallel(model, static_cast<int>(c.parallel.tensor));
  } catch (const UserError& e) {
    fail(origin, e.what());
  }
}

void check_train(const RunConfig& c, const Origin& origin) {
  const TrainSection& t = c.train;
  if (t.steps == 0 && t.epochs == 0)
    fail(origin, "train.steps: expected train.steps or train.epochs > 0, got neither");
  if (t.steps > 0 && t.epochs > 0)
    fail(origin, "train.epochs: give train.steps or train.epochs, not both (got steps " +
                     str(t.steps) + ", epochs " + str(t.epochs) + ")");
  const ScheduleConfig& s = t.schedule;
  if (s.type == ScheduleType::cosine) {
    if (s.min_lr > s.lr)
      fail(origin, "train.schedule.min_lr: expected at most train.optimizer.lr " + num(s.lr) +
                       ", got " + num(s.min_lr));
    if (t.steps > 0 && s.warmup_steps > t.steps)
      fail(origin, "train.schedule.warmup_steps: " + str(s.warmup_steps) + " exceeds train.steps " +
                       str(t.steps) + " (cosine decays after warmup)");
  }
  // The backstops of the modules that read these; the checks above give the better messages.
  try {
    validate_adamw_config(t.optimizer.adamw());
    validate_sgd_config(t.optimizer.sgd());
    if (s.type != ScheduleType::cosine || s.total_steps > 0) validate_schedule(s);
  } catch (const UserError& e) {
    fail(origin, e.what());
  }
  // With a fixed DP size the batch split is known now; with `auto` at launch.
  if (c.parallel.data > 0) {
    try {
      accumulation_steps(c, static_cast<int>(c.parallel.data));
    } catch (const UserError& e) {
      fail(origin, e.what());
    }
  }
}

void check_data(const RunConfig& c, const Origin& origin) {
  if (c.data.batching == "tokens") {
    if (c.model.type != "encoder_decoder")
      fail(origin,
           "data.batching: tokens applies to translation (model.type encoder_decoder), "
           "not " +
               c.model.type);
    if (c.data.max_tokens < c.model.max_len)
      fail(origin, "data.max_tokens: " + str(c.data.max_tokens) + " is below model.max_len " +
                       str(c.model.max_len) + ", so a longest sequence would fit no batch");
  }
  if (c.eval.every_steps > 0 && c.data.valid.empty())
    fail(origin, "eval.every_steps: " + str(c.eval.every_steps) +
                     " needs data.valid; give one or set eval.every_steps: 0");
}

std::string dataset_name(const char* key, const DatasetInfo& d) {
  return std::string(key) + " " + d.path;
}

void check_images(const RunConfig& c, const char* key, const DatasetInfo& d) {
  const ModelConfig& m = c.model;
  if (d.height != d.width)
    throw UserError(dataset_name(key, d) + ": " + str(d.height) + "x" + str(d.width) +
                    " images; the ViT needs square images");
  if (d.height != m.image_size)
    throw UserError("model.image_size: " + str(m.image_size) + " does not match " +
                    dataset_name(key, d) + " (" + str(d.height) + "x" + str(d.width) + " images)");
  if (d.channels != m.channels)
    throw UserError("model.channels: " + str(m.channels) + " does not match " +
                    dataset_name(key, d) + " (" + str(d.channels) + " channels)");
  if (d.num_classes != m.num_classes)
    throw UserError("model.num_classes: " + str(m.num_classes) + " does not match " +
                    dataset_name(key, d) + " (" + str(d.num_classes) + " classes)");
}

}  // namespace

namespace config_schema {

void validate(const RunConfig& config, const Origin& origin) {
  check_ranges(config, "", origin);
  check_model(config, origin);
  check_train(config, origin);
  check_data(config, origin);
}

}  // namespace config_schema

void check_config_against_data(RunConfig& config, const DatasetInfo& train,
                               const DatasetInfo* valid) {
  ModelSection& m = config.model;
  const std::string need = m.type == "vit" ? "images" : "translation";
  for (auto [key, d] : {std::pair{"data.train", &train}, {"data.valid", valid}}) {
    if (d && d->kind != need)
      throw UserError(dataset_name(key, *d) + ": holds " + d->kind + " data, but model.type " +
                      m.type + " needs " + need);
  }
  if (m.type == "vit") {
    check_images(config, "data.train", train);
    if (valid) check_images(config, "data.valid", *valid);
    if (config.data.augment_shift >= std::min(train.height, train.width))
      throw UserError("data.augment_shift: " + str(config.data.augment_shift) +
                      " moves every pixel out of " + dataset_name("data.train", train) + "'s " +
                      str(train.height) + "x" + str(train.width) +
                      " images; expected less than their side");
  } else {
    if (config.data.augment_flip || config.data.augment_shift > 0)
      throw UserError(std::string("data.") +
                      (config.data.augment_flip ? "augment_flip" : "augment_shift") +
                      ": augmentation applies to images, but model.type is " + m.type);
    if (m.vocab_size == 0) m.vocab_size = train.vocab_size;
    if (m.vocab_size != train.vocab_size)
      throw UserError("model.vocab_size: " + str(m.vocab_size) + " does not match " +
                      dataset_name("data.train", train) + " (vocab_size " + str(train.vocab_size) +
                      ")");
    // The ids belong to the tokenizer that made the data, so the data decides them.
    m.pad_id = train.pad_id;
    m.bos_id = train.bos_id;
    m.eos_id = train.eos_id;
    if (valid) {
      for (auto [name, mine, theirs] :
           {std::tuple{"vocab_size", train.vocab_size, valid->vocab_size},
            {"pad_id", std::int64_t{train.pad_id}, std::int64_t{valid->pad_id}},
            {"bos_id", std::int64_t{train.bos_id}, std::int64_t{valid->bos_id}},
            {"eos_id", std::int64_t{train.eos_id}, std::int64_t{valid->eos_id}}}) {
        if (mine != theirs)
          throw UserError(dataset_name("data.valid", *valid) + ": " + name + " " + str(theirs) +
                          " differs from data.train's " + str(mine) +
                          " (the two sets need one tokenizer)");
      }
    }
  }
  if (config.train.epochs > 0)
    config.train.schedule.total_steps = total_steps(config, train.records);
  validate_model_config(m);
  if (config.train.schedule.type == ScheduleType::cosine &&
      config.train.schedule.warmup_steps > config.train.schedule.total_steps)
    throw UserError("train.schedule.warmup_steps: " + str(config.train.schedule.warmup_steps) +
                    " exceeds the " + str(config.train.schedule.total_steps) +
                    " steps of train.epochs " + str(config.train.epochs) +
                    " (cosine decays after warmup)");
  validate_schedule(config.train.schedule);
}

void check_config_against_weights(const RunConfig& config,
                                  const std::string& model_yaml_from_weights,
                                  const std::string& weights_path) {
  const ModelConfig stored =
      model_config_from_yaml_text(model_yaml_from_weights, weights_path + ": config");
  if (stored.type != config.model.type)
    throw UserError("model.init: " + weights_path + " holds a " + stored.type +
                    " model, but model.type is " + config.model.type);
  RunConfig theirs = config;
  static_cast<ModelConfig&>(theirs.model) = stored;
  for (const config_schema::Option& o : config_schema::options()) {
    if (!o.architecture || !config_schema::applies(o, config)) continue;
    if (o.key == "model.vocab_size" && config.model.vocab_size == 0) continue;
    // Learned positions are a [max_len, d] parameter; sinusoidal ones have no weights.
    if (o.key == "model.max_len" && config.model.positional != "learned") continue;
    const std::string mine = config_schema::describe(o.write(config));
    const std::string stored_value = config_schema::describe(o.write(theirs));
    if (mine != stored_value)
      throw UserError("model.init: " + weights_path + " has " + o.key + " " + stored_value +
                      ", but the config has " + mine);
  }
}

int data_parallel_size(const RunConfig& config, int world_size) {
  TR_CHECK(world_size >= 1, "data_parallel_size: world size " + std::to_string(world_size));
  const std::int64_t tp = config.parallel.tensor;
  if (world_size % tp != 0)
    throw UserError("parallel.tensor: " + str(tp) + " does not divide the " + str(world_size) +
                    " processes");
  const std::int64_t dp = world_size / tp;
  if (config.parallel.data != 0 && config.parallel.data != dp)
    throw UserError("parallel.data: " + str(config.parallel.data) + " x parallel.tensor " +
                    str(tp) + " = " + str(config.parallel.data * tp) + " processes, but " +
                    str(world_size) + " were started");
  return static_cast<int>(dp);
}

std::int64_t micro_batch_size(const RunConfig& config, int dp_size) {
  TR_CHECK(dp_size >= 1, "micro_batch_size: dp size " + std::to_string(dp_size));
  if (config.train.micro_batch > 0) return config.train.micro_batch;
  const std::int64_t global = config.train.global_batch;
  if (global % dp_size != 0)
    throw UserError("train.global_batch: " + str(global) + " is not divisible by parallel.data " +
                    str(dp_size) + " (train.micro_batch 0 means global_batch / parallel.data)");
  return global / dp_size;
}

std::int64_t accumulation_steps(const RunConfig& config, int dp_size) {
  const std::int64_t global = config.train.global_batch;
  const std::int64_t micro = micro_batch_size(config, dp_size);
  // micro > global / dp means micro x dp > global: no whole number of micro-batches, and the
  // product is only formed where it cannot overflow.
  if (micro > global / dp_size || global % (micro * dp_size) != 0)
    throw UserError("train.global_batch: " + str(global) +
                    " is not divisible by train.micro_batch " + str(micro) + " x parallel.data " +
                    str(dp_size) +
                    (micro <= global / dp_size ? " = " + str(micro * dp_size)
                                               : std::string(" (more than the global batch)")));
  return global / (micro * dp_size);
}

std::int64_t total_steps(const RunConfig& config, std::int64_t records_per_epoch) {
  if (config.train.steps > 0) return config.train.steps;
  if (records_per_epoch <= 0)
    throw UserError("train.epochs: data.train has no records to count epochs in");
  const std::int64_t global = config.train.global_batch;
  const std::int64_t per_epoch = records_per_epoch / global + (records_per_epoch % global != 0);
  if (config.train.epochs > std::numeric_limits<std::int64_t>::max() / per_epoch)
    throw UserError("train.epochs: " + str(config.train.epochs) + " epochs of " + str(per_epoch) +
                    " steps are too many");
  return config.train.epochs * per_epoch;
}

}  // namespace tr
