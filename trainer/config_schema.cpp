#include "trainer/config_schema.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

#include "layers/error.h"
#include "trainer/lr_schedule.h"

namespace tr::config_schema {

namespace {

// The field an option reads and writes. A generic lambda, so that one accessor serves both a
// RunConfig (read) and a const RunConfig (check, write).
// clang-format off
#define TR_FIELD(path) [](auto& c) -> auto& { return c.path; }
// clang-format on

constexpr std::int64_t kNoLimit = std::numeric_limits<std::int64_t>::max();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Shortest text that reads back as the same double: fixed notation where people write it so
// (0.0007, not 7e-04), and always with a '.' so that YAML 1.1 readers (PyYAML, for plots)
// also take it as a number.
std::string number_text(double v) {
  char buf[64];
  const double a = std::fabs(v);
  const auto format =
      a == 0 || (a >= 1e-4 && a < 1e15) ? std::chars_format::fixed : std::chars_format::scientific;
  std::string s(buf, std::to_chars(buf, buf + sizeof(buf), v, format).ptr);
  if (!std::isfinite(v) || s.find('.') != std::string::npos) return s;
  const auto e = s.find('e');
  if (e == std::string::npos) return s + ".0";
  return s.substr(0, e) + ".0" + s.substr(e);
}

bool read_int(const YAML::Node& node, std::int64_t& value) {
  if (!node.IsScalar()) return false;
  try {
    value = node.as<std::int64_t>();
    return true;
  } catch (const YAML::Exception&) {
    return false;
  }
}

bool read_number(const YAML::Node& node, double& value) {
  if (!node.IsScalar()) return false;
  try {
    value = node.as<double>();
    return true;
  } catch (const YAML::Exception&) {
    return false;
  }
}

std::string integer_expected(std::int64_t lo, std::int64_t hi) {
  if (hi == kNoLimit) return "an integer >= " + std::to_string(lo);
  return "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
}

template <typename F>
Option integer(std::string key, F field, std::int64_t lo, std::int64_t hi, std::string help) {
  using T = std::remove_cvref_t<decltype(field(std::declval<RunConfig&>()))>;
  // What the field can hold: larger values are refused when read, before they could wrap.
  constexpr std::int64_t kHeldMax = sizeof(T) < sizeof(std::int64_t)
                                        ? static_cast<std::int64_t>(std::numeric_limits<T>::max())
                                        : kNoLimit;
  constexpr std::int64_t kHeldMin =
      std::is_signed_v<T> ? static_cast<std::int64_t>(std::numeric_limits<T>::min()) : 0;
  hi = std::min(hi, kHeldMax);
  Option o;
  o.key = std::move(key);
  o.help = std::move(help);
  o.expected = integer_expected(lo, hi);
  o.read = [field](RunConfig& c, const YAML::Node& n) {
    std::int64_t v = 0;
    if (!read_int(n, v) || v < kHeldMin || v > kHeldMax) return false;
    field(c) = static_cast<T>(v);
    return true;
  };
  o.valid = [field, lo, hi](const RunConfig& c) {
    const auto v = static_cast<std::int64_t>(field(c));
    return v >= lo && v <= hi;
  };
  o.write = [field](const RunConfig& c) { return YAML::Node(static_cast<std::int64_t>(field(c))); };
  return o;
}

struct Bounds {
  double lo;
  bool lo_open;
  double hi;
  bool hi_open;
};
constexpr Bounds kNonNegative{0, false, kInf, true};
constexpr Bounds kPositive{0, true, kInf, true};
constexpr Bounds kUnitInterval{0, false, 1, true};  // [0, 1)

// Written so that NaN fails every comparison and is refused.
bool within(double v, const Bounds& b) {
  if (!std::isfinite(v)) return false;
  if (!(b.lo_open ? v > b.lo : v >= b.lo)) return false;
  return b.hi == kInf || (b.hi_open ? v < b.hi : v <= b.hi);
}

std::string bound_text(double v) {
  char buf[64];
  return std::string(buf, std::to_chars(buf, buf + sizeof(buf), v).ptr);
}

std::string bounds_text(const Bounds& b) {
  if (b.hi == kInf) return std::string(b.lo_open ? "> " : ">= ") + bound_text(b.lo);
  return std::string("in ") + (b.lo_open ? "(" : "[") + bound_text(b.lo) + ", " + bound_text(b.hi) +
         (b.hi_open ? ")" : "]");
}

template <typename F>
Option number(std::string key, F field, Bounds bounds, std::string help) {
  Option o;
  o.key = std::move(key);
  o.help = std::move(help);
  o.expected = "a number " + bounds_text(bounds);
  o.read = [field](RunConfig& c, const YAML::Node& n) { return read_number(n, field(c)); };
  o.valid = [field, bounds](const RunConfig& c) { return within(field(c), bounds); };
  o.write = [field](const RunConfig& c) { return YAML::Node(number_text(field(c))); };
  return o;
}

template <typename F>
Option boolean(std::string key, F field, std::string help) {
  Option o;
  o.key = std::move(key);
  o.help = std::move(help);
  o.expected = "true or false";
  o.read = [field](RunConfig& c, const YAML::Node& n) {
    if (!n.IsScalar()) return false;
    try {
      field(c) = n.as<bool>();
      return true;
    } catch (const YAML::Exception&) {
      return false;
    }
  };
  o.valid = [](const RunConfig&) { return true; };
  o.write = [field](const RunConfig& c) { return YAML::Node(static_cast<bool>(field(c))); };
  return o;
}

// A string; `~` or nothing reads as "". `required` refuses the empty string.
template <typename F>
Option text(std::string key, F field, bool required, std::string help) {
  Option o;
  o.key = std::move(key);
  o.help = std::move(help);
  o.expected = required ? "a non-empty string" : "a string";
  o.quote = true;
  o.read = [field](RunConfig& c, const YAML::Node& n) {
    if (n.IsNull()) {
      field(c).clear();
      return true;
    }
    if (!n.IsScalar()) return false;
    field(c) = n.Scalar();
    return true;
  };
  o.valid = [field, required](const RunConfig& c) { return !required || !field(c).empty(); };
  o.write = [field](const RunConfig& c) { return YAML::Node(field(c)); };
  return o;
}

template <typename F>
Option choice(std::string key, F field, std::vector<std::string> choices, std::string help) {
  Option o;
  o.key = std::move(key);
  o.help = std::move(help);
  o.expected = "one of ";
  for (std::size_t i = 0; i < choices.size(); ++i) o.expected += (i ? ", " : "") + choices[i];
  o.quote = true;
  o.read = [field](RunConfig& c, const YAML::Node& n) {
    if (!n.IsScalar()) return false;
    field(c) = n.Scalar();
    return true;
  };
  o.valid = [field, choices](const RunConfig& c) {
    return std::find(choices.begin(), choices.end(), field(c)) != choices.end();
  };
  o.write = [field](const RunConfig& c) { return YAML::Node(field(c)); };
  return o;
}

// An integer >= 1, or `auto` (stored as 0).
template <typename F>
Option integer_or_auto(std::string key, F field, std::string help) {
  Option o = integer(std::move(key), field, 0, kNoLimit, std::move(help));
  o.expected = "an integer >= 1 or auto";
  o.read = [field](RunConfig& c, const YAML::Node& n) {
    if (n.IsScalar() && n.Scalar() == "auto") {
      field(c) = 0;
      return true;
    }
    std::int64_t v = 0;
    if (!read_int(n, v) || v < 1) return false;
    field(c) = v;
    return true;
  };
  o.write = [field](const RunConfig& c) {
    return field(c) == 0 ? YAML::Node("auto") : YAML::Node(static_cast<std::int64_t>(field(c)));
  };
  return o;
}

// A list of exactly two numbers, e.g. AdamW's betas.
template <typename F, typename G>
Option number_pair(std::string key, F first, G second, Bounds bounds, std::string help) {
  Option o;
  o.key = std::move(key);
  o.help = std::move(help);
  o.expected = "a list of two numbers " + bounds_text(bounds);
  o.read = [first, second](RunConfig& c, const YAML::Node& n) {
    if (!n.IsSequence() || n.size() != 2) return false;
    double a = 0, b = 0;
    if (!read_number(n[0], a) || !read_number(n[1], b)) return false;
    first(c) = a;
    second(c) = b;
    return true;
  };
  o.valid = [first, second, bounds](const RunConfig& c) {
    return within(first(c), bounds) && within(second(c), bounds);
  };
  o.write = [first, second](const RunConfig& c) {
    YAML::Node list(YAML::NodeType::Sequence);
    list.push_back(number_text(first(c)));
    list.push_back(number_text(second(c)));
    list.SetStyle(YAML::EmitterStyle::Flow);
    return list;
  };
  return o;
}

Option schedule_type(std::string key, std::string help) {
  Option o;
  o.key = std::move(key);
  o.help = std::move(help);
  o.expected = "one of constant, inverse_sqrt, cosine";
  o.quote = true;
  o.read = [](RunConfig& c, const YAML::Node& n) {
    if (!n.IsScalar()) return false;
    for (ScheduleType t :
         {ScheduleType::constant, ScheduleType::inverse_sqrt, ScheduleType::cosine}) {
      if (n.Scalar() == schedule_type_name(t)) {
        c.train.schedule.type = t;
        return true;
      }
    }
    return false;
  };
  o.valid = [](const RunConfig&) { return true; };
  o.write = [](const RunConfig& c) {
    return YAML::Node(schedule_type_name(c.train.schedule.type));
  };
  return o;
}

// `layers: N` sets encoder and decoder layers; the resolved config lists those two instead.
Option layers_alias(std::string key, std::string help) {
  Option o;
  o.key = std::move(key);
  o.help = std::move(help);
  o.expected = "an integer >= 1";
  o.emitted = false;
  o.replaces = {"model.encoder_layers", "model.decoder_layers"};
  o.read = [](RunConfig& c, const YAML::Node& n) {
    std::int64_t v = 0;
    if (!read_int(n, v) || v < 1) return false;
    c.model.encoder_layers = c.model.decoder_layers = v;
    return true;
  };
  return o;
}

std::vector<Option> make_options() {
  const std::string ed = "encoder_decoder";
  const std::string vit = "vit";
  return {
      // ---- run ----
      text("run.name", TR_FIELD(run.name), true,
           "Name of the run; the default run directory is runs/<name>."),
      text("run.dir", TR_FIELD(run.dir), false,
           "Run directory (checkpoints, metrics.jsonl, config.yaml); empty = runs/<name>."),
      integer("run.seed", TR_FIELD(run.seed), 0, kNoLimit,
              "Seed of the initialisation, dropout masks and data shuffling."),

      // ---- model ---- (type first: other model defaults depend on it)
      choice("model.type", TR_FIELD(model.type), {"encoder_decoder", "vit"},
             "encoder_decoder (translation) or vit (image classification).")
          .shapes(),
      integer("model.d_model", TR_FIELD(model.d_model), 1, kNoLimit,
              "Width of the residual stream.")
          .shapes(),
      integer("model.heads", TR_FIELD(model.heads), 1, kNoLimit,
              "Attention heads; divide d_model and are divisible by parallel.tensor.")
          .shapes(),
      integer("model.d_ff", TR_FIELD(model.d_ff), 1, kNoLimit,
              "Hidden width of the feed-forward blocks.")
          .shapes(),
      layers_alias("model.layers",
                   "Sets encoder_layers and decoder_layers (the resolved config lists both)."),
      integer("model.encoder_layers", TR_FIELD(model.encoder_layers), 1, kNoLimit,
              "Encoder layers (the ViT's transformer layers).")
          .shapes(),
      integer("model.decoder_layers", TR_FIELD(model.decoder_layers), 1, kNoLimit,
              "Decoder layers.")
          .only_for(ed)
          .shapes(),
      number("model.dropout", TR_FIELD(model.dropout), kUnitInterval,
             "Dropout rate of attention probabilities, residual branches and embeddings."),
      choice("model.norm", TR_FIELD(model.norm), {"pre", "post"},
             "pre-LN, or post-LN (the original Add & Norm; encoder_decoder only).")
          .shapes(),
      choice("model.activation", TR_FIELD(model.activation), {"relu", "gelu", "gelu_tanh"},
             "Feed-forward activation; default relu for encoder_decoder, gelu for vit (a GELU "
             "only). gelu is the exact erf form; gelu_tanh its tanh approximation (PyTorch's "
             "approximate='tanh', GPT-2's), which CUDA fuses into the GEMMs under "
             "train.precision: bf16 (cuBLASLt's GELU epilogues)."),
      boolean("model.share_embeddings", TR_FIELD(model.share_embeddings),
              "One embedding for source, target and output projection (joint vocabulary).")
          .only_for(ed)
          .shapes(),
      choice("model.positional", TR_FIELD(model.positional), {"sinusoidal", "learned"},
             "Position encoding.")
          .only_for(ed)
          .shapes(),
      integer("model.max_len", TR_FIELD(model.max_len), 2, kNoLimit,
              "Longest sequence in tokens, BOS/EOS included.")
          .only_for(ed)
          .shapes(),
      integer("model.vocab_size", TR_FIELD(model.vocab_size), 0, kNoLimit,
              "Vocabulary size; 0 = the data's (when given, it must equal the data's).")
          .only_for(ed)
          .shapes(),
      integer("model.pad_id", TR_FIELD(model.pad_id), 0, kNoLimit,
              "Padding token id; set from the data (recorded for the checkpoint).")
          .only_for(ed),
      integer("model.bos_id", TR_FIELD(model.bos_id), 0, kNoLimit,
              "Begin-of-sentence token id; set from the data.")
          .only_for(ed),
      integer("model.eos_id", TR_FIELD(model.eos_id), 0, kNoLimit,
              "End-of-sentence token id; set from the data.")
          .only_for(ed),
      integer("model.image_size", TR_FIELD(model.image_size), 1, kNoLimit,
              "Image height and width in pixels; a multiple of patch_size, equal to the data's.")
          .only_for(vit)
          .shapes(),
      integer("model.patch_size", TR_FIELD(model.patch_size), 1, kNoLimit,
              "Patch height and width in pixels.")
          .only_for(vit)
          .shapes(),
      integer("model.channels", TR_FIELD(model.channels), 1, kNoLimit,
              "Image channels; equal to the data's.")
          .only_for(vit)
          .shapes(),
      integer("model.num_classes", TR_FIELD(model.num_classes), 2, kNoLimit,
              "Classes; equal to the data's.")
          .only_for(vit)
          .shapes(),
      text("model.init", TR_FIELD(model.init), false,
           "Weights file (trainer export) to start from; its config must agree on every shape; "
           "empty = seeded initialisation."),

      // ---- data ----
      text("data.train", TR_FIELD(data.train), true, "Training dataset (HDF5, trainer prepare)."),
      text("data.valid", TR_FIELD(data.valid), false,
           "Validation dataset; empty = none (then eval.every_steps must be 0)."),
      boolean("data.shuffle", TR_FIELD(data.shuffle),
              "Seeded shuffle of every epoch; false = file order."),
      choice("data.batching", TR_FIELD(data.batching), {"sentences", "tokens"},
             "sentences: global_batch records per step; tokens: micro-batches packed up to "
             "max_tokens (translation only)."),
      integer("data.max_tokens", TR_FIELD(data.max_tokens), 1, kNoLimit,
              "Padded tokens per micro-batch under token batching; at least model.max_len."),
      integer("data.prefetch", TR_FIELD(data.prefetch), 0, 1024,
              "Steps the loader thread reads ahead; 0 = read on demand."),
      boolean("data.augment_flip", TR_FIELD(data.augment_flip),
              "Images: mirror each training image left-right with probability 1/2."),
      integer("data.augment_shift", TR_FIELD(data.augment_shift), 0, 64,
              "Images: shift each training image by up to this many pixels in x and y "
              "(zero padding); 0 = none."),

      // ---- train ----
      integer("train.steps", TR_FIELD(train.steps), 0, kNoLimit,
              "Optimizer steps; give steps or epochs.")
          .clears({"train.epochs"}),
      integer("train.epochs", TR_FIELD(train.epochs), 0, kNoLimit,
              "Passes over data.train, converted to steps; give steps or epochs.")
          .clears({"train.steps"}),
      integer("train.global_batch", TR_FIELD(train.global_batch), 1, kNoLimit,
              "Records per optimizer step over all data-parallel ranks."),
      integer("train.micro_batch", TR_FIELD(train.micro_batch), 0, kNoLimit,
              "Records per forward/backward on one rank; accumulation = global_batch / "
              "(micro_batch x parallel.data); 0 = global_batch / parallel.data."),
      choice("train.device", TR_FIELD(train.device), {"cpu", "cuda", "auto"},
             "Where to train; auto = cuda when a GPU is present."),
      choice("train.precision", TR_FIELD(train.precision), {"fp32", "bf16"},
             "bf16: matrix products of bf16 operands (fp32 accumulation), fp32 master weights "
             "and optimizer state; on the CPU also bf16 block activations (the GPU's numerics, "
             "half the activation memory, slower than fp32 there)."),
      choice("train.recompute", TR_FIELD(train.recompute), {"none", "selective", "full"},
             "Activation recomputation: selective = attention probabilities, full = every "
             "transformer layer from its input; same gradients, less memory, more compute."),
      choice("train.attention_dropout", TR_FIELD(train.attention_dropout), {"exact", "fused"},
             "Masks of attention-probability dropout: exact = the keyed masks, the CPU's on "
             "every device and layout; fused = on CUDA in bf16, drawn inside cuDNN's fused "
             "attention (faster, never stored; then not the CPU's, and they change with the "
             "layout); elsewhere as exact."),
      number("train.label_smoothing", TR_FIELD(train.label_smoothing), kUnitInterval,
             "Label smoothing of the cross entropy."),
      number("train.grad_clip", TR_FIELD(train.grad_clip), kNonNegative,
             "Clip the global gradient norm to this; 0 = off."),
      integer("train.max_bad_steps", TR_FIELD(train.max_bad_steps), 0, kNoLimit,
              "Consecutive steps with a non-finite loss or gradient skipped before the run "
              "stops; 0 = stop at the first."),
      choice("train.optimizer.type", TR_FIELD(train.optimizer.type), {"adamw", "sgd"},
             "AdamW or SGD with momentum (as torch.optim)."),
      number("train.optimizer.lr", TR_FIELD(train.schedule.lr), kPositive,
             "Peak learning rate, reached at the end of warmup."),
      number_pair("train.optimizer.betas", TR_FIELD(train.optimizer.beta1),
                  TR_FIELD(train.optimizer.beta2), kUnitInterval, "AdamW [beta1, beta2]."),
      number("train.optimizer.eps", TR_FIELD(train.optimizer.eps), kNonNegative, "AdamW epsilon."),
      number("train.optimizer.weight_decay", TR_FIELD(train.optimizer.weight_decay), kNonNegative,
             "Weight decay of Linear and embedding weights (not biases, norms)."),
      number("train.optimizer.momentum", TR_FIELD(train.optimizer.momentum), kUnitInterval,
             "SGD momentum."),
      schedule_type("train.schedule.type",
                    "constant, inverse_sqrt (Vaswani) or cosine (to min_lr at the last step), "
                    "each after a linear warmup."),
      integer("train.schedule.warmup_steps", TR_FIELD(train.schedule.warmup_steps), 0, kNoLimit,
              "Steps of linear warmup from 0 to train.optimizer.lr."),
      number("train.schedule.min_lr", TR_FIELD(train.schedule.min_lr), kNonNegative,
             "Final learning rate of cosine; at most train.optimizer.lr."),

      // ---- parallel ----
      integer("parallel.tensor", TR_FIELD(parallel.tensor), 1, kNoLimit,
              "Tensor-parallel ranks per model replica; divides model.heads and model.d_ff."),
      integer_or_auto("parallel.data", TR_FIELD(parallel.data),
                      "Data-parallel replicas; auto = processes / parallel.tensor."),
      integer("parallel.zero", TR_FIELD(parallel.zero), 0, 1,
              "1 = shard the optimizer state over data-parallel ranks (ZeRO-1)."),
      number("parallel.bucket_mb", TR_FIELD(parallel.bucket_mb), kPositive,
             "Size of a gradient all-reduce bucket in MiB."),
      boolean("parallel.overlap", TR_FIELD(parallel.overlap),
              "All-reduce gradient buckets during backward."),
      choice("parallel.gpu_comm", TR_FIELD(parallel.gpu_comm), {"auto", "nccl", "mpi"},
             "How GPU ranks exchange tensors: nccl (a GPU per rank), mpi (copied through host "
             "memory: slow, but ranks may share a GPU, for a layout's smoke test on one GPU); "
             "auto = nccl where this trainer has it, else mpi."),

      // ---- checkpoint ----
      integer("checkpoint.every_steps", TR_FIELD(checkpoint.every_steps), 0, kNoLimit,
              "Steps between checkpoints; 0 = only at the end."),
      integer("checkpoint.keep", TR_FIELD(checkpoint.keep), 0, kNoLimit,
              "Newest checkpoints kept; 0 = all."),
      text("checkpoint.resume", TR_FIELD(checkpoint.resume), true,
           "auto (the newest checkpoint of run.dir, if any), never, or a checkpoint directory."),

      // ---- eval ----
      integer("eval.every_steps", TR_FIELD(eval.every_steps), 0, kNoLimit,
              "Steps between evaluations on data.valid; 0 = never."),
      integer("eval.beam", TR_FIELD(eval.beam), 1, 64,
              "Beam width of translation decoding (BLEU); 1 = greedy."),
      integer("eval.max_batches", TR_FIELD(eval.max_batches), 0, kNoLimit,
              "Batches per evaluation; 0 = the whole validation set."),

      // ---- log ----
      integer("log.every_steps", TR_FIELD(log.every_steps), 1, kNoLimit,
              "Steps between log lines and metrics.jsonl records."),
      boolean("log.progress", TR_FIELD(log.progress),
              "Progress bar on a terminal (plain lines otherwise)."),
  };
}

#undef TR_FIELD

bool starts_with_section(std::string_view key, std::string_view prefix) {
  return prefix.empty() ||
         (key.size() > prefix.size() && key.starts_with(prefix) && key[prefix.size()] == '.');
}

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

bool is_section(std::string_view path) {
  for (const Option& o : options())
    if (starts_with_section(o.key, path)) return true;
  return false;
}

// Full paths of the keys and sections directly under `prefix`, in table order.
std::vector<std::string> children(const std::string& prefix) {
  std::vector<std::string> out;
  for (const Option& o : options()) {
    if (!starts_with_section(o.key, prefix)) continue;
    const std::size_t begin = prefix.empty() ? 0 : prefix.size() + 1;
    const std::string child = o.key.substr(0, o.key.find('.', begin));
    if (std::find(out.begin(), out.end(), child) == out.end()) out.push_back(child);
  }
  return out;
}

// Every key and every section path: the candidates for a misspelt `--set`.
std::vector<std::string> all_paths() {
  std::vector<std::string> out;
  for (const Option& o : options()) {
    for (std::size_t dot = o.key.find('.'); dot != std::string::npos;
         dot = o.key.find('.', dot + 1)) {
      const std::string section = o.key.substr(0, dot);
      if (std::find(out.begin(), out.end(), section) == out.end()) out.push_back(section);
    }
    out.push_back(o.key);
  }
  return out;
}

std::string shown(const YAML::Node& node, bool quote) {
  if (node.IsScalar() && quote) return "'" + node.Scalar() + "'";
  return describe(node);
}

std::string unknown_key(const std::string& origin, const std::string& key,
                        const std::vector<std::string>& candidates) {
  return origin + key + ": unknown key; did you mean " + nearest(key, candidates) + "?";
}

}  // namespace

const std::vector<Option>& options() {
  static const std::vector<Option> table = make_options();
  return table;
}

const Option* find_option(std::string_view key) {
  for (const Option& o : options())
    if (o.key == key) return &o;
  return nullptr;
}

bool applies(const Option& option, const RunConfig& config) {
  return option.model_type.empty() || option.model_type == config.model.type;
}

void flatten(const YAML::Node& node, const std::string& prefix, const std::string& origin,
             GivenMap& out) {
  if (!node.IsMap()) {
    if (prefix.empty())
      throw UserError(origin + "expected a mapping of sections (run, model, data, ...), got " +
                      shown(node, true));
    throw UserError(origin + prefix + ": expected a mapping of its keys, got " + shown(node, true));
  }
  std::vector<std::string> seen;  // yaml-cpp keeps repeated keys; the user meant one of them
  for (const auto& entry : node) {
    if (!entry.first.IsScalar())
      throw UserError(origin + (prefix.empty() ? "" : prefix + ": ") +
                      "expected keys to be names, got " + describe(entry.first));
    const std::string key = join(prefix, entry.first.Scalar());
    if (std::find(seen.begin(), seen.end(), key) != seen.end())
      throw UserError(origin + key + ": given twice");
    seen.push_back(key);
    if (find_option(key)) {
      out[key] = Given{entry.second, origin};
    } else if (is_section(key)) {
      if (entry.second.IsNull()) continue;  // `eval:` with nothing under it
      flatten(entry.second, key, origin, out);
    } else {
      throw UserError(unknown_key(origin, key, children(prefix)));
    }
  }
}

void merge_override(const std::string& assignment, GivenMap& given) {
  const std::string origin = "--set ";
  const std::size_t eq = assignment.find('=');
  std::string key = assignment.substr(0, eq == std::string::npos ? 0 : eq);
  key.erase(0, key.find_first_not_of(" \t"));
  key.erase(key.find_last_not_of(" \t") + 1);
  if (key.empty())
    throw UserError(origin + assignment + ": expected key.path=value, e.g. train.steps=100");
  const std::string text = assignment.substr(eq + 1);
  YAML::Node value;
  try {
    value = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw UserError(origin + key + ": '" + text + "' is not a YAML value (" + e.msg + ")");
  }
  GivenMap part;
  if (find_option(key)) {
    part[key] = Given{value, origin};
  } else if (is_section(key)) {
    // A whole section, e.g. --set 'train.schedule={type: cosine, warmup_steps: 100}'.
    flatten(value, key, origin, part);
  } else {
    throw UserError(unknown_key(origin, key, all_paths()));
  }
  for (auto& [k, g] : part) {
    for (const std::string& r : find_option(k)->replaces) given.erase(r);
    given[k] = std::move(g);
  }
}

void apply_given(const GivenMap& given, RunConfig& config) {
  for (const Option& o : options()) {
    auto it = given.find(o.key);
    if (it == given.end()) continue;
    if (!o.read(config, it->second.value))
      throw UserError(it->second.origin + o.key + ": expected " + o.expected + ", got " +
                      shown(it->second.value, true));
  }
  // Defaults that depend on other keys.
  if (config.model.type == "vit" && !given.count("model.activation"))
    config.model.activation = "gelu";
  if (config.run.dir.empty()) config.run.dir = "runs/" + config.run.name;
  if (config.train.steps > 0) config.train.schedule.total_steps = config.train.steps;
}

void check_ranges(const RunConfig& config, std::string_view prefix,
                  const std::function<std::string(const std::string&)>& origin) {
  for (const Option& o : options()) {
    if (!o.valid || !applies(o, config) || !starts_with_section(o.key, prefix)) continue;
    if (o.valid(config)) continue;
    throw UserError(origin(o.key) + o.key + ": expected " + o.expected + ", got " +
                    shown(o.write(config), o.quote));
  }
}

YAML::Node to_yaml(const RunConfig& config, std::string_view prefix) {
  YAML::Node root(YAML::NodeType::Map);
  for (const Option& o : options()) {
    if (!o.emitted || !applies(o, config) || !starts_with_section(o.key, prefix)) continue;
    // Walk down the sections, creating each mapping on first use (insertion order is kept).
    YAML::Node node = root;
    std::size_t begin = 0;
    for (std::size_t dot = o.key.find('.'); dot != std::string::npos;
         dot = o.key.find('.', begin)) {
      const std::string section = o.key.substr(begin, dot - begin);
      if (!node[section]) node[section] = YAML::Node(YAML::NodeType::Map);
      node.reset(node[section]);
      begin = dot + 1;
    }
    node[o.key.substr(begin)] = o.write(config);
  }
  return root;
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined: return "nothing";
    case YAML::NodeType::Scalar: return node.Scalar();
    case YAML::NodeType::Sequence: {
      std::string s = "[";
      for (std::size_t i = 0; i < node.size(); ++i) s += (i ? ", " : "") + describe(node[i]);
      return s + "]";
    }
    case YAML::NodeType::Map: return "a mapping";
  }
  return "?";
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string nearest(std::string_view word, const std::vector<std::string>& candidates) {
  // A key typed short (log.every, warmup) is as far from its full name as from an unrelated
  // short key, so a candidate that the word begins wins first: the shortest such.
  std::string best;
  for (const std::string& c : candidates) {
    if (c.size() > word.size() && std::string_view(c).starts_with(word) &&
        (best.empty() || c.size() < best.size()))
      best = c;
  }
  if (!best.empty()) return best;
  std::size_t best_distance = std::numeric_limits<std::size_t>::max();
  for (const std::string& c : candidates) {
    const std::size_t d = edit_distance(word, c);
    if (d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  return best;
}

}  // namespace tr::config_schema
