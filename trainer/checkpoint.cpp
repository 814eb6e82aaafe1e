#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

#include "data/h5.h"
#include "layers/error.h"
#include "trainer/shard_io.h"

namespace tr {

namespace fs = std::filesystem;

namespace {

constexpr const char* kMetaFile = "meta.yaml";

std::string model_file_name(int tp_rank) {
  char name[32];
  std::snprintf(name, sizeof name, "model_tp%02d.h5", tp_rank);
  return name;
}

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
  return (fs::path(checkpoint_dir) / model_file_name(0)).string();
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

void write_model_shard(const std::string& dir, const CheckpointMeta& meta,
                       const ParameterList& params, int tp_rank, int tp_size) {
  const fs::path path = fs::path(dir) / model_file_name(tp_rank);
  h5::File file = h5::File::create(path.string());
  file.write_attr("/", "model_type", meta.model_type);
  file.write_attr("/", "config", meta.model_yaml);
  if (tp_size > 1) {
    file.write_attr_scalar<std::int64_t>("/", "tp_rank", tp_rank);
    file.write_attr_scalar<std::int64_t>("/", "tp_size", tp_size);
  }
  for (const Parameter* p : params) {
    // Replicated parameters are equal on every TP rank: stored once.
    if (!p->sharded() && tp_rank != 0) continue;
    write_shard(file, p->name, p->value, p->shard);
  }
  file.close();
  fsync_path(path);
}

std::string finish_checkpoint(const std::string& run_dir, const CheckpointMeta& meta_in, int keep,
                              const std::map<std::string, std::string>& extra_files) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  const fs::path final_dir = root / step_name(meta_in.step);
  const fs::path tmp_dir = root / (step_name(meta_in.step) + ".tmp");
  std::error_code ec;
  try {
    CheckpointMeta meta = meta_in;
    for (const auto& [name, bytes] : extra_files) write_text_file(tmp_dir / name, bytes);
    for (const auto& entry : fs::directory_iterator(tmp_dir)) {  // every rank's files
      fsync_path(entry.path());
      meta.checksums[entry.path().filename().string()] = file_checksum(entry.path().string());
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

std::string save_checkpoint(const std::string& run_dir, const CheckpointMeta& meta,
                            const ParameterList& params, const Optimizer* optimizer, int keep,
                            const std::map<std::string, std::string>& extra_files) {
  const std::string tmp_dir = prepare_checkpoint_dir(run_dir, meta.step);
  try {
    write_model_shard(tmp_dir, meta, params, 0, 1);
    if (optimizer) write_optimizer_file(tmp_dir, 0, 1, *optimizer);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp_dir, ec);
    throw;
  }
  return finish_checkpoint(run_dir, meta, keep, extra_files);
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

namespace {

// The newest complete checkpoint whose meta.yaml and checksums hold, and in `skipped` why each
// newer one does not.
std::string newest_intact_checkpoint(const std::string& run_dir,
                                     std::vector<std::string>& skipped) {
  auto all = complete_checkpoints(fs::path(run_dir) / "checkpoints");
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      read_checkpoint_meta(it->string());
      return it->string();
    } catch (const UserError& e) {
      skipped.emplace_back(e.what());
    }
  }
  return "";
}

}  // namespace

std::string find_latest_checkpoint(const std::string& run_dir, std::string* warning) {
  std::vector<std::string> skipped;
  const std::string found = newest_intact_checkpoint(run_dir, skipped);
  if (warning)
    for (const std::string& reason : skipped)
      *warning += std::string(warning->empty() ? "" : "\n") + "warning: " + reason +
                  "; falling back to the previous checkpoint";
  return found;
}

std::string newest_intact_checkpoint_or_throw(const std::string& run_dir) {
  std::vector<std::string> skipped;
  const std::string found = newest_intact_checkpoint(run_dir, skipped);
  if (found.empty() && !skipped.empty())
    throw UserError(run_dir + ": holds no intact checkpoint (the newest: " + skipped.front() + ")");
  for (const std::string& reason : skipped)
    std::fprintf(stderr, "warning: %s; reading the checkpoint before it\n", reason.c_str());
  return found;
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
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(checkpoint_dir))
    if (entry.path().filename().string().rfind("model_tp", 0) == 0)
      files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  if (files.empty()) throw UserError(checkpoint_dir + ": no model file (model_tp00.h5)");
  const ShardedReader reader(files, checkpoint_dir);
  // Every check before any value is read: a checkpoint that does not fit changes nothing.
  std::set<std::string> names;
  for (const Parameter* p : params) names.insert(p->name);
  for (const std::string& name : reader.root_datasets())
    if (!names.count(name))
      throw UserError(checkpoint_dir + ": unexpected tensor '" + name +
                      "' (the model has no such parameter)");
  std::vector<Tensor> full;
  for (const Parameter* p : params)
    full.push_back(reader.read_full(p->name, p->full_shape(), p->value.dtype()));
  for (std::size_t i = 0; i < params.size(); ++i)
    copy_full_to_shard(params[i]->value, full[i], params[i]->shard);
  if (optimizer) load_optimizer_state(checkpoint_dir, *optimizer);
}

}  // namespace tr
