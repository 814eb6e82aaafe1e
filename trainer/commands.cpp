#include "trainer/commands.h"

#include <charconv>
#include <filesystem>
#include <istream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <sstream>

#include "data/dataset_info.h"
#include "data/h5.h"
#include "data/loader.h"
#include "data/tokenizer.h"
#include "layers/ops.h"
#include "models/encoder_decoder.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/decoding.h"
#include "trainer/device_residency.h"
#include "trainer/evaluation.h"
#include "trainer/model_config_yaml.h"
#include "trainer/weights_file.h"

namespace tr {

namespace fs = std::filesystem;

namespace {

// A checkpoint directory as given, or the newest one of a run directory.
std::string resolve_checkpoint(const std::string& path) {
  if (fs::exists(fs::path(path) / "meta.yaml")) return path;
  if (fs::is_directory(path)) {
    const std::string latest = newest_intact_checkpoint_or_throw(path);
    if (!latest.empty()) return latest;
  }
  throw UserError(path + ": not a checkpoint (no meta.yaml) nor a run directory holding one");
}

struct LoadedModel {
  std::unique_ptr<Model> model;
  std::optional<Tokenizer> tokenizer;
  CheckpointMeta meta;
};

LoadedModel load_from_checkpoint(const std::string& path) {
  LoadedModel loaded;
  const std::string dir = resolve_checkpoint(path);
  loaded.meta = read_checkpoint_meta(dir);
  const ModelConfig config =
      model_config_from_yaml_text(loaded.meta.model_yaml, dir + "/meta.yaml: model");
  loaded.model = make_model(config, DType::f32, 0.0, 0);
  load_checkpoint(dir, loaded.model->parameters(), nullptr);
  const fs::path tokenizer = fs::path(dir) / kCheckpointTokenizerFile;
  if (fs::exists(tokenizer)) loaded.tokenizer = Tokenizer::load(tokenizer.string());
  return loaded;
}

}  // namespace

std::string run_eval_command(const EvalArgs& args) {
  if (args.checkpoint.empty() == args.weights.empty())
    throw UserError("eval: give exactly one of --checkpoint and --weights");
  RunConfig config = load_run_config(args.config_path, args.overrides);
  const std::string data = args.data.empty() ? config.data.valid : args.data;
  if (data.empty()) throw UserError("data.valid: empty, and no --data given: nothing to evaluate");
  const DatasetInfo info = read_dataset_info(data);
  check_config_against_data(config, info, nullptr);

  std::unique_ptr<Model> model;
  std::optional<Tokenizer> tokenizer;
  nlohmann::json out;
  if (!args.weights.empty()) {
    h5::File file = h5::File::open(args.weights);
    const std::string yaml = file.read_attr_string("/", "config");
    check_config_against_weights(config, yaml, args.weights);
    model = make_model(config.model, DType::f32, config.train.label_smoothing, 0);
    read_weights(args.weights, model->parameters());
  } else {
    const std::string dir = resolve_checkpoint(args.checkpoint);
    const CheckpointMeta meta = read_checkpoint_meta(dir);
    check_config_against_weights(config, meta.model_yaml, dir);
    model = make_model(config.model, DType::f32, config.train.label_smoothing, 0);
    load_checkpoint(dir, model->parameters(), nullptr);
    out["step"] = meta.step;
  }
  if (info.has_tokenizer) tokenizer = Tokenizer::load(data);
  model->to_device(inference_device(config.train.device, "train.device"));

  EvalOptions options;
  options.path = data;
  options.batch = std::max<std::int64_t>(1, micro_batch_size(config, 1));
  options.beam = args.beam > 0 ? args.beam : static_cast<int>(config.eval.beam);
  options.tokenizer = tokenizer ? &*tokenizer : nullptr;
  options.bleu = tokenizer.has_value();
  const EvalResult r = evaluate(*model, options);
  out["data"] = data;
  out["records"] = r.records;
  out["loss"] = r.loss;
  out["accuracy"] = r.accuracy;
  if (r.bleu >= 0) out["bleu"] = r.bleu;
  return out.dump();
}

void run_translate_command(const TranslateArgs& args, std::istream& in, std::ostream& out) {
  LoadedModel loaded = load_from_checkpoint(args.checkpoint);
  if (loaded.meta.model_type != "encoder_decoder")
    throw UserError(args.checkpoint + ": holds a " + loaded.meta.model_type +
                    " model; translate needs an encoder_decoder");
  if (!loaded.tokenizer && !args.ids)
    throw UserError(args.checkpoint + ": holds no tokenizer (" + kCheckpointTokenizerFile +
                    "; its data had none); translate token ids with --ids");
  if (args.batch <= 0) throw UserError("--batch: expected a positive integer");
  loaded.model->to_device(inference_device(args.device, "--device"));
  auto& model = static_cast<EncoderDecoder&>(*loaded.model);
  const ModelConfig& c = model.config();
  DecodeOptions decode;
  decode.beam = args.beam;
  decode.length_penalty = args.length_penalty;
  decode.bos_id = c.bos_id;
  decode.eos_id = c.eos_id;
  decode.pad_id = c.pad_id;
  validate_decode_options(decode);

  std::vector<std::string> lines;
  std::int64_t lines_read = 0;
  // "--ids" input: whitespace-separated ids, each in [0, vocab_size).
  auto parse_ids = [&](const std::string& line, std::int64_t line_number) {
    std::vector<std::int32_t> ids;
    std::istringstream words(line);
    for (std::string word; words >> word;) {
      std::int64_t id = -1;
      const auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), id);
      if (ec != std::errc() || end != word.data() + word.size() || id < 0 || id >= c.vocab_size)
        throw UserError("stdin line " + std::to_string(line_number) + ": '" + word +
                        "' is not a token id in [0, " + std::to_string(c.vocab_size) + ")");
      ids.push_back(static_cast<std::int32_t>(id));
    }
    return ids;
  };
  auto flush = [&] {
    if (lines.empty()) return;
    std::vector<std::vector<std::int32_t>> ids;
    std::int64_t longest = 1;
    std::int64_t line_number = lines_read - static_cast<std::int64_t>(lines.size());
    for (const auto& line : lines) {
      ++line_number;
      ids.push_back(args.ids ? parse_ids(line, line_number) : loaded.tokenizer->encode(line));
      // The source must fit the model's positions with its eos: longer input is cut.
      if (static_cast<std::int64_t>(ids.back().size()) > c.max_len - 1)
        ids.back().resize(c.max_len - 1);
      ids.back().push_back(c.eos_id);
      longest = std::max<std::int64_t>(longest, static_cast<std::int64_t>(ids.back().size()));
    }
    const auto B = static_cast<std::int64_t>(lines.size());
    Batch batch;
    batch.src = Tensor::empty({B, longest}, DType::i32);
    batch.src_len = Tensor::empty({B}, DType::i32);
    for (std::int64_t b = 0; b < B; ++b) {
      std::int32_t* row = batch.src.data<std::int32_t>() + b * longest;
      std::fill(row, row + longest, c.pad_id);
      std::copy(ids[b].begin(), ids[b].end(), row);
      batch.src_len.data<std::int32_t>()[b] = static_cast<std::int32_t>(ids[b].size());
    }
    for (const auto& hypothesis : translate_batch(model, batch, decode)) {
      if (args.ids) {
        for (std::size_t i = 0; i < hypothesis.size(); ++i) out << (i ? " " : "") << hypothesis[i];
        out << "\n";
      } else {
        out << loaded.tokenizer->decode(hypothesis) << "\n";
      }
    }
    out.flush();
    lines.clear();
  };
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
    ++lines_read;
    if (static_cast<std::int64_t>(lines.size()) == args.batch) flush();
  }
  flush();
}

double run_predict_command(const PredictArgs& args, std::ostream& out) {
  LoadedModel loaded = load_from_checkpoint(args.checkpoint);
  if (loaded.meta.model_type != "vit")
    throw UserError(args.checkpoint + ": holds a " + loaded.meta.model_type +
                    " model; predict needs a vit");
  if (args.batch <= 0) throw UserError("--batch: expected a positive integer");
  const ModelConfig& c = loaded.model->config();
  const DatasetInfo info = read_dataset_info(args.data);
  if (info.kind != "images")
    throw UserError(args.data + ": a " + info.kind + " dataset; predict needs images");
  if (info.height != c.image_size || info.width != c.image_size || info.channels != c.channels)
    throw UserError(args.data + ": images are " + std::to_string(info.height) + "x" +
                    std::to_string(info.width) + "x" + std::to_string(info.channels) +
                    ", the model expects " + std::to_string(c.image_size) + "x" +
                    std::to_string(c.image_size) + "x" + std::to_string(c.channels));
  const Device device = inference_device(args.device, "--device");
  loaded.model->to_device(device);
  LoaderOptions lo;
  lo.path = args.data;
  lo.shuffle = false;
  lo.global_batch = lo.micro_batch = args.batch;
  lo.prefetch = 1;
  lo.drop_last = false;
  Loader loader(lo);
  StepBatches step;
  Batch on_device;
  Tensor best_rows;
  std::int64_t index = 0, correct = 0;
  while (loader.next(step)) {
    for (const Batch& batch : step.micro_batches) {
      if (device != Device::cpu) upload_batch(on_device, batch, device);
      loaded.model->forward(device == Device::cpu ? batch : on_device, ForwardContext{});
      ops::argmax_rows(best_rows, loaded.model->logits());  // the first of equal maxima
      const Tensor best_host = to_device(best_rows, Device::cpu);
      for (std::int64_t b = 0; b < batch.size(); ++b, ++index) {
        const std::int64_t best = best_host.data<std::int32_t>()[b];
        correct += best == batch.labels.data<std::int32_t>()[b];
        out << index << "\t" << best;
        if (best < static_cast<std::int64_t>(info.class_names.size()))
          out << "\t" << info.class_names[best];
        out << "\n";
      }
    }
  }
  return index > 0 ? static_cast<double>(correct) / static_cast<double>(index) : 0.0;
}

void run_export_command(const std::string& checkpoint, const std::string& out) {
  LoadedModel loaded = load_from_checkpoint(checkpoint);
  write_weights(out, loaded.meta.model_type, loaded.meta.model_yaml, loaded.model->parameters());
}

}  // namespace tr
