#include "trainer/weights_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "data/h5.h"

namespace tr {

namespace {

// Forces a file's (or directory's) data to disk. Renaming an unsynced file can, after a power
// loss, leave the new name pointing at empty blocks; syncing first keeps the rename atomic in
// effect and not only in name.
void sync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;  // best effort: the data is already written through HDF5
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

void write_weights(const std::string& path, const std::string& model_type,
                   const std::string& config_yaml, const ParameterList& params) {
  const std::string tmp = path + ".tmp";
  try {
    h5::File file = h5::File::create(tmp);
    file.write_attr("/", "model_type", model_type);
    file.write_attr("/", "config", config_yaml);
    std::set<std::string> seen;
    for (const Parameter* p : params) {
      TR_CHECK(seen.insert(p->name).second, "duplicate parameter name '" + p->name + "'");
      TR_CHECK(!p->sharded(), "write_weights: " + p->name + " is a tensor-parallel shard");
      // A '/' would make HDF5 create groups, and read_weights only looks at the root.
      TR_CHECK(!p->name.empty() && p->name.find('/') == std::string::npos,
               "parameter name '" + p->name + "' cannot name a root dataset");
      file.write(p->name, p->value, DType::f32);
    }
    file.close();
    sync_path(tmp);
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) throw UserError(path + ": cannot rename " + tmp + " into place (" + ec.message() + ")");
    const std::string dir = std::filesystem::path(path).parent_path().string();
    sync_path(dir.empty() ? "." : dir);
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw;
  }
}

WeightsInfo read_weights(const std::string& path, const ParameterList& params) {
  h5::File file = h5::File::open(path);
  if (!file.has_attr("/", "model_type"))
    throw UserError(path + ": not a weights file (root attribute 'model_type' is missing)");
  WeightsInfo info;
  info.model_type = file.read_attr_string("/", "model_type");
  info.config = file.read_attr_string("/", "config");

  const std::vector<std::string> stored = file.datasets("/");
  const std::set<std::string> in_file(stored.begin(), stored.end());
  std::set<std::string> in_model;
  for (const Parameter* p : params) {
    const std::string& name = p->name;
    in_model.insert(name);
    if (!in_file.count(name)) throw UserError(path + ": tensor '" + name + "' is missing");
    const Shape shape = file.shape(name);
    if (shape != p->full_shape())
      throw UserError(path + ": tensor '" + name + "' has shape " + shape_string(shape) +
                      ", expected " + shape_string(p->full_shape()));
    if (!file.stored_type(name).is_float)
      throw UserError(path + ": tensor '" + name + "' is not floating point");
  }
  for (const std::string& name : stored)
    if (!in_model.count(name))
      throw UserError(path + ": unexpected tensor '" + name +
                      "' (the model has no such parameter)");

  for (Parameter* p : params) {
    if (!p->sharded()) {
      file.read_into(p->name, p->value);
      continue;
    }
    const Tensor full = file.read_tensor(p->name, p->value.dtype());
    copy_full_to_shard(p->value, full, p->shard);
  }
  return info;
}

}  // namespace tr
