#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "data/h5.h"
#include "layers/error.h"
#include "trainer/weights_file.h"

namespace tr {

namespace fs = std::filesystem;

namespace {

constexpr const char* kModelFile = "model_tp00.h5";
constexpr const char* kOptimizerFile = "optim_rank0000.h5";
constexpr const char* kMetaFile = "meta.yaml";

std::string step_name(std::int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step_%08lld", static_cast<long long>(step));
  return name;
}

void fsync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

void write_text_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) throw UserError(path.string() + ": write failed (disk full or not writable?)");
  fsync_path(path);
}

void write_optimizer_state(const std::string& path, const Optimizer& optimizer) {
  h5::File file = h5::File::create(path);
  file.write_attr("/", "type", optimizer.type());
  file.write_attr_scalar<std::int64_t>("/", "steps", optimizer.step_count());
  const ParameterList& params = optimizer.parameters();
  for (std::size_t i = 0; i < params.size(); ++i)
    for (const std::string& name : optimizer.state_names())
      file.write(params[i]->name + "/" + name, optimizer.state(i, name), DType::f32);
  file.close();
}

// The AdamW moments of every parameter as one flat vector in canonical order, from the files
// of a checkpoint written with ZeRO-1 (shard files) or without (one per-parameter file).
struct FlatState {
  std::string type;
  std::int64_t steps = 0;
  std::vector<float> exp_avg, exp_avg_sq;
};

bool is_shard_file(const h5::File& file) {
  return file.has_attr("/", "shard_offset");
}

FlatState read_flat_state(const std::string& dir, const ParameterList& params) {
  std::int64_t total = 0;
  for (const Parameter* p : params) total += p->value.numel();
  FlatState state;
  state.exp_avg.assign(static_cast<std::size_t>(total), 0.0f);
  state.exp_avg_sq.assign(static_cast<std::size_t>(total), 0.0f);
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().filename().string().rfind("optim_rank", 0) == 0) files.push_back(entry.path());
  if (files.empty()) throw UserError(dir + ": optimizer state missing from the checkpoint");
  std::sort(files.begin(), files.end());
  std::int64_t covered = 0;
  for (const fs::path& path : files) {
    h5::File file = h5::File::open(path.string());
    state.type = file.read_attr_string("/", "type");
    state.steps = file.read_attr_scalar<std::int64_t>("/", "steps");
    if (is_shard_file(file)) {
      if (file.read_attr_scalar<std::int64_t>("/", "total") != total)
        throw UserError(path.string() + ": optimizer shard of another model size");
      const auto offset = file.read_attr_scalar<std::int64_t>("/", "shard_offset");
      const auto m = file.read<float>("exp_avg"), v = file.read<float>("exp_avg_sq");
      const std::int64_t n =
          std::min<std::int64_t>(static_cast<std::int64_t>(m.size()), total - offset);
      for (std::int64_t i = 0; i < n; ++i) {
        state.exp_avg[offset + i] = m[i];
        state.exp_avg_sq[offset + i] = v[i];
      }
      covered += std::max<std::int64_t>(n, 0);
    } else {
      if (state.type != "adamw")
        throw UserError(path.string() + ": holds " + state.type + " state; ZeRO-1 needs adamw");
      std::int64_t offset = 0;
      for (const Parameter* p : params) {
        const auto m = file.read<float>(p->name + "/exp_avg");
        const auto v = file.read<float>(p->name + "/exp_avg_sq");
        std::copy(m.begin(), m.end(), state.exp_avg.begin() + offset);
        std::copy(v.begin(), v.end(), state.exp_avg_sq.begin() + offset);
        offset += p->value.numel();
      }
      covered = total;
    }
  }
  if (covered != total)
    throw UserError(dir + ": optimizer shards cover " + std::to_string(covered) + " of " +
                    std::to_string(total) + " elements (a shard file is missing)");
  return state;
}

void read_optimizer_state(const std::string& dir, Optimizer& optimizer) {
  const fs::path single = fs::path(dir) / kOptimizerFile;
  if (fs::exists(single) && is_shard_file(h5::File::open(single.string()))) {
    // Written with ZeRO-1: reassemble the flat moments, then hand each parameter its part.
    if (std::string(optimizer.type()) != "adamw")
      throw UserError(dir + ": holds adamw state, but train.optimizer.type is " + optimizer.type());
    const FlatState state = read_flat_state(dir, optimizer.parameters());
    std::int64_t offset = 0;
    for (std::size_t i = 0; i < optimizer.parameters().size(); ++i) {
      const std::int64_t n = optimizer.parameters()[i]->value.numel();
      std::copy_n(state.exp_avg.begin() + offset, n, optimizer.state(i, "exp_avg").data<float>());
      std::copy_n(state.exp_avg_sq.begin() + offset, n,
                  optimizer.state(i, "exp_avg_sq").data<float>());
      offset += n;
    }
    optimizer.set_step_count(state.steps);
    return;
  }
  const std::string path = single.string();
  if (!fs::exists(path)) throw UserError(path + ": optimizer state missing from the checkpoint");
  h5::File file = h5::File::open(path);
  const std::string type = file.read_attr_string("/", "type");
  if (type != optimizer.type())
    throw UserError(path + ": holds " + type + " state, but train.optimizer.type is " +
                    optimizer.type());
  const ParameterList& params = optimizer.parameters();
  for (std::size_t i = 0; i < params.size(); ++i)
    for (const std::string& name : optimizer.state_names())
      file.read_into(params[i]->name + "/" + name, optimizer.state(i, name));
  optimizer.set_step_count(file.read_attr_scalar<std::int64_t>("/", "steps"));
}

std::string meta_to_yaml(const CheckpointMeta& m) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "step" << YAML::Value << m.step;
  out << YAML::Key << "samples" << YAML::Value << m.samples;
  out << YAML::Key << "data_cursor" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "epoch" << YAML::Value << m.loader.epoch;
  out << YAML::Key << "step_in_epoch" << YAML::Value << m.loader.step_in_epoch;
  out << YAML::EndMap;
  out << YAML::Key << "seed" << YAML::Value << m.seed;
  out << YAML::Key << "optimizer" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "type" << YAML::Value << m.optimizer_type;
  out << YAML::Key << "steps" << YAML::Value << m.optimizer_steps;
  out << YAML::EndMap;
  out << YAML::Key << "bad_steps_in_row" << YAML::Value << m.bad_steps_in_row;
  out << YAML::Key << "skipped_steps" << YAML::Value << m.skipped_steps;
  out << YAML::Key << "layout" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "tensor" << YAML::Value << m.tensor_parallel;
  out << YAML::Key << "data" << YAML::Value << m.data_parallel;
  out << YAML::Key << "zero" << YAML::Value << m.zero;
  out << YAML::EndMap;
  out << YAML::Key << "model_type" << YAML::Value << m.model_type;
  out << YAML::Key << "model" << YAML::Value << YAML::Literal << m.model_yaml;
  out << YAML::Key << "config" << YAML::Value << YAML::Literal << m.config_yaml;
  out << YAML::Key << "checksums" << YAML::Value << YAML::BeginMap;
  for (const auto& [file, sum] : m.checksums) out << YAML::Key << file << YAML::Value << sum;
  out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

template <typename T>
T meta_get(const YAML::Node& node, const std::string& key, const std::string& file) {
  try {
    if (!node) throw YAML::Exception(YAML::Mark::null_mark(), "missing");
    return node.as<T>();
  } catch (const YAML::Exception&) {
    throw UserError(file + ": key '" + key + "' is missing or malformed");
  }
}

std::vector<fs::path> complete_checkpoints(const fs::path& dir) {
  std::vector<fs::path> found;
  if (!fs::is_directory(dir)) return found;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && name.rfind("step_", 0) == 0 && name.find('.') == std::string::npos)
      found.push_back(entry.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

}  // namespace

std::string file_checksum(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(path + ": cannot be read");
  std::uint64_t h = 14695981039346656037ull;
  char buffer[1 << 16];
  while (in) {
    in.read(buffer, sizeof buffer);
    for (std::streamsize i = 0; i < in.gcount(); ++i) {
      h ^= static_cast<unsigned char>(buffer[i]);
      h *= 1099511628211ull;
    }
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

std::string checkpoint_model_file(const std::string& checkpoint_dir) {
  return (fs::path(checkpoint_dir) / kModelFile).string();
}

std::string checkpoint_tmp_dir(const std::string& run_dir, std::int64_t step) {
  return (fs::path(run_dir) / "checkpoints" / (step_name(step) + ".tmp")).string();
}

std::string prepare_checkpoint_dir(const std::string& run_dir, std::int64_t step) {
  const fs::path tmp_dir = checkpoint_tmp_dir(run_dir, step);
  std::error_code ec;
  fs::remove_all(tmp_dir, ec);
  if (!fs::create_directories(tmp_dir, ec))
    throw UserError(tmp_dir.string() + ": cannot create checkpoint directory (" + ec.message() +
                    ")");
  return tmp_dir.string();
}

void write_optimizer_shard(const std::string& dir, int dp_rank, ShardedAdamW& optimizer) {
  char name[32];
  std::snprintf(name, sizeof name, "optim_rank%04d.h5", dp_rank);
  h5::File file = h5::File::create((fs::path(dir) / name).string());
  file.write_attr("/", "type", "adamw");
  file.write_attr_scalar<std::int64_t>("/", "steps", optimizer.step_count());
  file.write_attr_scalar<std::int64_t>("/", "shard_offset", optimizer.shard_offset());
  file.write_attr_scalar<std::int64_t>("/", "total", optimizer.total());
  file.write("exp_avg", optimizer.exp_avg());
  file.write("exp_avg_sq", optimizer.exp_avg_sq());
  file.close();
}

void load_optimizer_shard(const std::string& checkpoint_dir, ShardedAdamW& optimizer) {
  const FlatState state = read_flat_state(checkpoint_dir, optimizer.parameters());
  if (state.type != "adamw")
    throw UserError(checkpoint_dir + ": holds " + state.type + " state; ZeRO-1 needs adamw");
  float* m = optimizer.exp_avg().data<float>();
  float* v = optimizer.exp_avg_sq().data<float>();
  for (std::int64_t i = 0; i < optimizer.shard_size(); ++i) {
    const std::int64_t g = optimizer.shard_offset() + i;
    const bool inside = g < optimizer.total();
    m[i] = inside ? state.exp_avg[g] : 0.0f;
    v[i] = inside ? state.exp_avg_sq[g] : 0.0f;
  }
  optimizer.set_step_count(state.steps);
}

std::string save_checkpoint(const std::string& run_dir, const CheckpointMeta& meta_in,
                            const ParameterList& params, const Optimizer* optimizer, int keep,
                            const std::map<std::string, std::string>& extra_files,
                            bool keep_prepared) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  const fs::path final_dir = root / step_name(meta_in.step);
  const fs::path tmp_dir = root / (step_name(meta_in.step) + ".tmp");
  std::error_code ec;
  if (!keep_prepared) prepare_checkpoint_dir(run_dir, meta_in.step);
  try {
    CheckpointMeta meta = meta_in;
    for (const auto& entry : fs::directory_iterator(tmp_dir)) {  // shards of the other ranks
      fsync_path(entry.path());
      meta.checksums[entry.path().filename().string()] = file_checksum(entry.path().string());
    }
    write_weights((tmp_dir / kModelFile).string(), meta.model_type, meta.model_yaml, params);
    meta.checksums[kModelFile] = file_checksum((tmp_dir / kModelFile).string());
    if (optimizer) {
      write_optimizer_state((tmp_dir / kOptimizerFile).string(), *optimizer);
      fsync_path(tmp_dir / kOptimizerFile);
      meta.checksums[kOptimizerFile] = file_checksum((tmp_dir / kOptimizerFile).string());
    }
    for (const auto& [name, bytes] : extra_files) {
      write_text_file(tmp_dir / name, bytes);
      meta.checksums[name] = file_checksum((tmp_dir / name).string());
    }
    write_text_file(tmp_dir / kMetaFile, meta_to_yaml(meta));
    fsync_path(tmp_dir);
    fs::remove_all(final_dir, ec);
    fs::rename(tmp_dir, final_dir);
    fsync_path(root);
    // `latest` is replaced by rename, so readers see the old or the new name, never half.
    write_text_file(root / "latest.tmp", step_name(meta.step) + "\n");
    fs::rename(root / "latest.tmp", root / "latest");
    fsync_path(root);
  } catch (const UserError&) {
    fs::remove_all(tmp_dir, ec);
    throw;
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(tmp_dir, ec);
    throw UserError(final_dir.string() + ": checkpoint not written (" + e.code().message() + ")");
  }
  if (keep > 0) {
    auto all = complete_checkpoints(root);
    // Renamed first: a kill during the deletion leaves "*.pruned" (removed on resume), never a
    // half-deleted directory under a checkpoint's name.
    for (std::size_t i = 0; i + static_cast<std::size_t>(keep) < all.size(); ++i) {
      fs::path doomed = all[i];
      doomed += ".pruned";
      fs::rename(all[i], doomed, ec);
      fs::remove_all(ec ? all[i] : doomed, ec);
    }
  }
  return final_dir.string();
}

CheckpointMeta read_checkpoint_meta(const std::string& checkpoint_dir) {
  const std::string path = (fs::path(checkpoint_dir) / kMetaFile).string();
  if (!fs::exists(path)) throw UserError(checkpoint_dir + ": not a checkpoint (no meta.yaml)");
  YAML::Node n;
  try {
    n = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw UserError(path + ": unreadable (" + e.msg + ")");
  }
  CheckpointMeta m;
  m.step = meta_get<std::int64_t>(n["step"], "step", path);
  m.samples = meta_get<std::int64_t>(n["samples"], "samples", path);
  m.loader.epoch = meta_get<std::int64_t>(n["data_cursor"]["epoch"], "data_cursor.epoch", path);
  m.loader.step_in_epoch =
      meta_get<std::int64_t>(n["data_cursor"]["step_in_epoch"], "data_cursor.step_in_epoch", path);
  m.seed = meta_get<std::uint64_t>(n["seed"], "seed", path);
  m.optimizer_type = meta_get<std::string>(n["optimizer"]["type"], "optimizer.type", path);
  m.optimizer_steps = meta_get<std::int64_t>(n["optimizer"]["steps"], "optimizer.steps", path);
  m.bad_steps_in_row = meta_get<std::int64_t>(n["bad_steps_in_row"], "bad_steps_in_row", path);
  if (n["skipped_steps"])  // absent from checkpoints written before it was recorded
    m.skipped_steps = meta_get<std::int64_t>(n["skipped_steps"], "skipped_steps", path);
  m.tensor_parallel = meta_get<int>(n["layout"]["tensor"], "layout.tensor", path);
  m.data_parallel = meta_get<int>(n["layout"]["data"], "layout.data", path);
  m.zero = meta_get<int>(n["layout"]["zero"], "layout.zero", path);
  m.model_type = meta_get<std::string>(n["model_type"], "model_type", path);
  m.model_yaml = meta_get<std::string>(n["model"], "model", path);
  m.config_yaml = meta_get<std::string>(n["config"], "config", path);
  for (const auto& entry : n["checksums"])
    m.checksums[entry.first.as<std::string>()] = entry.second.as<std::string>();
  if (m.checksums.empty()) throw UserError(path + ": no checksums recorded");
  for (const auto& [file, sum] : m.checksums) {
    const std::string file_path = (fs::path(checkpoint_dir) / file).string();
    if (!fs::exists(file_path)) throw UserError(file_path + ": missing from the checkpoint");
    if (file_checksum(file_path) != sum)
      throw UserError(file_path + ": checksum mismatch (truncated or corrupted)");
  }
  return m;
}

std::string find_latest_checkpoint(const std::string& run_dir, std::string* warning) {
  auto all = complete_checkpoints(fs::path(run_dir) / "checkpoints");
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      read_checkpoint_meta(it->string());
      return it->string();
    } catch (const UserError& e) {
      if (warning)
        *warning += std::string(warning->empty() ? "" : "\n") + "warning: " + e.what() +
                    "; falling back to the previous checkpoint";
    }
  }
  return "";
}

std::vector<std::string> tidy_checkpoints(const std::string& run_dir, std::int64_t resume_step) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  std::vector<std::string> set_aside;
  if (!fs::is_directory(root)) return set_aside;
  std::error_code ec;
  std::vector<fs::path> temporaries;
  for (const auto& entry : fs::directory_iterator(root))
    if (entry.path().extension() == ".tmp" || entry.path().extension() == ".pruned")
      temporaries.push_back(entry.path());
  for (const fs::path& path : temporaries) fs::remove_all(path, ec);
  const std::string resume_name = step_name(resume_step);
  for (const fs::path& path : complete_checkpoints(root)) {
    const std::string name = path.filename().string();
    if (name <= resume_name) continue;  // fixed-width names sort by step
    const fs::path aside = root / (name + ".discarded");
    fs::remove_all(aside, ec);
    fs::rename(path, aside, ec);
    if (ec)
      throw UserError(path.string() +
                      ": cannot set aside a checkpoint newer than the one resumed (" +
                      ec.message() + ")");
    set_aside.push_back(name);
  }
  if (!set_aside.empty()) {  // `latest` named one of them: now the resumed one, or none
    if (fs::is_directory(root / resume_name)) {
      write_text_file(root / "latest.tmp", resume_name + "\n");
      fs::rename(root / "latest.tmp", root / "latest", ec);
    } else {
      fs::remove(root / "latest", ec);
    }
    fsync_path(root);
  }
  return set_aside;
}

void load_checkpoint(const std::string& checkpoint_dir, const ParameterList& params,
                     Optimizer* optimizer) {
  read_weights(checkpoint_model_file(checkpoint_dir), params);
  if (optimizer) read_optimizer_state(checkpoint_dir, *optimizer);
}

}  // namespace tr
