#include "trainer/inspect.h"

#include <filesystem>
#include <sstream>

#include "data/dataset_info.h"
#include "data/h5.h"
#include "layers/error.h"
#include "trainer/checkpoint.h"

namespace tr {

namespace fs = std::filesystem;

namespace {

std::string human_count(std::int64_t n) {
  std::ostringstream out;
  if (n >= 1000000)
    out << static_cast<double>(n) / 1e6 << "M";
  else if (n >= 10000)
    out << static_cast<double>(n) / 1e3 << "k";
  else
    out << n;
  return out.str();
}

std::string describe_weights(const h5::File& file) {
  std::ostringstream out;
  std::int64_t total = 0;
  const auto names = file.datasets("/");
  for (const auto& name : names) total += shape_numel(file.shape(name));
  // A checkpoint's model file of one tensor-parallel rank holds slices of the sharded tensors
  // (trainer/shard_io.h) and the replicated ones on rank 0 only.
  if (file.has_attr("/", "tp_rank"))
    out << "model file of tensor-parallel rank "
        << file.read_attr_scalar<std::int64_t>("/", "tp_rank") << " of "
        << file.read_attr_scalar<std::int64_t>("/", "tp_size") << " " << file.path() << "\n";
  else
    out << "weights file " << file.path() << "\n";
  out << "  model_type: " << file.read_attr_string("/", "model_type") << "\n"
      << "  tensors: " << names.size() << ", parameters: " << total << " (" << human_count(total)
      << ")\n";
  for (const auto& name : names) {
    out << "    " << name << " " << shape_string(file.shape(name));
    if (file.has_attr(name, "global_shape")) {
      const auto global = file.read_attr<std::int64_t>(name, "global_shape");
      out << " of " << shape_string(Shape(global.begin(), global.end())) << " (axis "
          << file.read_attr_scalar<std::int64_t>(name, "split_axis") << ", offset "
          << file.read_attr_scalar<std::int64_t>(name, "offset") << ")";
    }
    out << "\n";
  }
  if (file.has_attr("/", "config")) {
    out << "  config:\n";
    std::istringstream config(file.read_attr_string("/", "config"));
    for (std::string line; std::getline(config, line);) out << "    " << line << "\n";
  }
  return out.str();
}

std::string describe_dataset(const DatasetInfo& info) {
  std::ostringstream out;
  out << info.kind << " dataset " << info.path << "\n  records: " << info.records << "\n";
  if (info.kind == "images") {
    out << "  image: " << info.height << "x" << info.width << "x" << info.channels
        << ", classes: " << info.num_classes << "\n  mean:";
    for (float m : info.mean) out << " " << m;
    out << "\n  std:";
    for (float s : info.std) out << " " << s;
    out << "\n";
    if (!info.class_names.empty()) {
      out << "  class names:";
      for (const auto& n : info.class_names) out << " '" << n << "'";
      out << "\n";
    }
  } else {
    out << "  vocab_size: " << info.vocab_size << " (pad " << info.pad_id << ", bos " << info.bos_id
        << ", eos " << info.eos_id << ", unk " << info.unk_id << ")\n"
        << "  tokenizer: " << (info.has_tokenizer ? "stored in the file" : "none") << "\n";
  }
  return out.str();
}

std::string describe_checkpoint(const std::string& dir) {
  const CheckpointMeta meta = read_checkpoint_meta(dir);
  std::ostringstream out;
  out << "checkpoint " << dir << " (checksums verified)\n"
      << "  step: " << meta.step << ", samples: " << meta.samples << ", epoch " << meta.loader.epoch
      << " (step " << meta.loader.step_in_epoch << " of it)\n"
      << "  layout: tensor " << meta.tensor_parallel << " x data " << meta.data_parallel
      << ", zero " << meta.zero << "\n"
      << "  optimizer: " << meta.optimizer_type << " after " << meta.optimizer_steps
      << " steps\n  files:";
  for (const auto& [file, sum] : meta.checksums) out << " " << file;
  out << "\n";
  h5::File model = h5::File::open(checkpoint_model_file(dir));
  out << describe_weights(model);
  return out.str();
}

}  // namespace

std::string inspect_path(const std::string& path) {
  if (fs::is_directory(path)) {
    if (fs::exists(fs::path(path) / "meta.yaml")) return describe_checkpoint(path);
    const std::string latest = newest_intact_checkpoint_or_throw(path);
    if (!latest.empty()) return describe_checkpoint(latest);
    throw UserError(path + ": a directory, but not a checkpoint or a run directory with one");
  }
  h5::File file = h5::File::open(path);
  if (file.has_attr("/", "model_type")) return describe_weights(file);
  if (file.exists("/images") || file.exists("/src"))
    return describe_dataset(read_dataset_info(path));
  throw UserError(path +
                  ": not a dataset, weights file or checkpoint (no /images, /src or "
                  "model_type attribute)");
}

}  // namespace tr
