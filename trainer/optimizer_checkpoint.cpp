#include "trainer/optimizer_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include "data/h5.h"
#include "trainer/shard_io.h"

namespace tr {

namespace fs = std::filesystem;

namespace {

// Attributes of a ZeRO-1 shard file; shard_offset marks the form.
constexpr const char* kShardOffset = "shard_offset";

std::vector<std::string> optimizer_files(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().filename().string().rfind("optim_", 0) == 0)
      files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  if (files.empty()) throw UserError(dir + ": optimizer state missing from the checkpoint");
  return files;
}

// The saved state of every parameter as whole tensors, whatever form and layout wrote it.
class SavedOptimizer {
 public:
  SavedOptimizer(const std::string& dir, const ParameterList& params) : dir_(dir) {
    const std::vector<std::string> files = optimizer_files(dir);
    {
      h5::File first = h5::File::open(files.front());
      type = first.read_attr_string("/", "type");
      steps = first.read_attr_scalar<std::int64_t>("/", "steps");
      flat_ = first.has_attr("/", kShardOffset);
    }
    if (flat_)
      read_flat(files, params);
    else
      per_param_.emplace(files, dir);
  }

  std::string type;
  std::int64_t steps = 0;

  Tensor full(const Parameter& p, const std::string& state) const {
    if (!flat_) return per_param_->read_full(p.name + "/" + state, p.full_shape(), DType::f32);
    Tensor full = Tensor::zeros(p.full_shape(), DType::f32);
    bool found = false;
    for (const FlatRank& r : ranks_) {
      const auto it = r.index.find(p.name);
      if (it == r.index.end()) continue;
      const Entry& e = it->second;
      const std::vector<float>& values = state == "exp_avg" ? r.exp_avg : r.exp_avg_sq;
      Shape local = p.full_shape();
      if (e.axis >= 0) local[e.axis] = e.local_dim;
      Tensor piece = Tensor::empty(local, DType::f32);
      std::memcpy(piece.raw(), values.data() + e.flat_offset, piece.bytes());
      if (e.axis < 0) return piece;  // replicated: every TP rank holds the same state
      copy_shard_to_full(full, piece, TpShard{e.axis, p.full_shape(), e.offset, e.extent});
      found = true;
    }
    if (!found) throw UserError(dir_ + ": optimizer state of '" + p.name + "' is missing");
    return full;
  }

 private:
  struct Entry {
    int axis = -1;
    std::int64_t local_dim = 0, offset = 0, extent = 0, flat_offset = 0;
  };
  struct FlatRank {
    std::map<std::string, Entry> index;
    std::vector<float> exp_avg, exp_avg_sq;
  };

  void read_flat(const std::vector<std::string>& files, const ParameterList& params) {
    std::map<int, std::vector<std::string>> by_tp;
    for (const std::string& path : files) {
      h5::File f = h5::File::open(path);
      if (!f.has_attr("/", kShardOffset))
        throw UserError(path + ": not a ZeRO-1 shard, unlike the checkpoint's other files");
      by_tp[f.has_attr("/", "tp_rank") ? f.read_attr_scalar<int>("/", "tp_rank") : 0].push_back(
          path);
    }
    for (const auto& [tp_rank, paths] : by_tp) {
      FlatRank r;
      std::int64_t total = -1, covered = 0;
      for (const std::string& path : paths) {
        h5::File f = h5::File::open(path);
        const auto offset = f.read_attr_scalar<std::int64_t>("/", kShardOffset);
        const auto file_total = f.read_attr_scalar<std::int64_t>("/", "total");
        if (total < 0) {
          total = file_total;
          r.exp_avg.assign(static_cast<std::size_t>(total), 0.0f);
          r.exp_avg_sq.assign(static_cast<std::size_t>(total), 0.0f);
          r.index = read_index(f, params, total);
        } else if (file_total != total) {
          throw UserError(path + ": optimizer shard of another model size");
        }
        const auto m = f.read<float>("exp_avg"), v = f.read<float>("exp_avg_sq");
        const std::int64_t n =
            std::min<std::int64_t>(static_cast<std::int64_t>(m.size()), total - offset);
        for (std::int64_t i = 0; i < n; ++i) {
          r.exp_avg[offset + i] = m[i];
          r.exp_avg_sq[offset + i] = v[i];
        }
        covered += std::max<std::int64_t>(n, 0);
      }
      if (covered != total)
        throw UserError(dir_ + ": optimizer shards cover " + std::to_string(covered) + " of " +
                        std::to_string(total) + " elements (a shard file is missing)");
      ranks_.push_back(std::move(r));
    }
  }

  // The flat layout of a shard file's TP rank. Files written before tensor parallelism have no
  // index: they hold the whole model in canonical order.
  std::map<std::string, Entry> read_index(const h5::File& f, const ParameterList& params,
                                          std::int64_t total) const {
    std::map<std::string, Entry> index;
    std::map<std::string, const Parameter*> by_name;
    for (const Parameter* p : params) by_name[p->name] = p;
    std::int64_t flat = 0;
    if (!f.has_attr("/", "param_names")) {
      for (const Parameter* p : params) {
        index[p->name] = Entry{-1, 0, 0, 0, flat};
        flat += shape_numel(p->full_shape());
      }
    } else {
      const auto names = f.read_attr_strings("/", "param_names");
      const auto axis = f.read_attr<std::int64_t>("/", "split_axis");
      const auto local = f.read_attr<std::int64_t>("/", "local_dim");
      const auto offset = f.read_attr<std::int64_t>("/", "offset");
      const auto extent = f.read_attr<std::int64_t>("/", "extent");
      for (std::size_t i = 0; i < names.size(); ++i) {
        const auto it = by_name.find(names[i]);
        if (it == by_name.end())
          throw UserError(f.path() + ": optimizer state of '" + names[i] +
                          "', which the model does not have");
        Shape shape = it->second->full_shape();
        if (axis[i] >= static_cast<std::int64_t>(shape.size()))
          throw UserError(f.path() + ": bad split_axis for '" + names[i] + "'");
        if (axis[i] >= 0) shape[axis[i]] = local[i];
        index[names[i]] = Entry{static_cast<int>(axis[i]), local[i], offset[i], extent[i], flat};
        flat += shape_numel(shape);
      }
    }
    if (flat != total)
      throw UserError(f.path() + ": optimizer shard of another model size (" +
                      std::to_string(total) + " elements, the model has " + std::to_string(flat) +
                      ")");
    return index;
  }

  std::string dir_;
  bool flat_ = false;
  std::optional<ShardedReader> per_param_;
  std::vector<FlatRank> ranks_;
};

}  // namespace

std::string optimizer_file_name(int tp_rank, int tp_size, int dp_rank) {
  char name[48];
  if (tp_size == 1)
    std::snprintf(name, sizeof name, "optim_rank%04d.h5", dp_rank);
  else
    std::snprintf(name, sizeof name, "optim_tp%02d_rank%04d.h5", tp_rank, dp_rank);
  return name;
}

void write_optimizer_file(const std::string& dir, int tp_rank, int tp_size,
                          const Optimizer& optimizer) {
  h5::File file =
      h5::File::create((fs::path(dir) / optimizer_file_name(tp_rank, tp_size, 0)).string());
  file.write_attr("/", "type", optimizer.type());
  file.write_attr_scalar<std::int64_t>("/", "steps", optimizer.step_count());
  const ParameterList& params = optimizer.parameters();
  for (std::size_t i = 0; i < params.size(); ++i) {
    // Replicated parameters have the same state on every TP rank: stored once.
    if (!params[i]->sharded() && tp_rank != 0) continue;
    for (const std::string& name : optimizer.state_names())
      write_shard(file, params[i]->name + "/" + name, optimizer.state(i, name), params[i]->shard);
  }
  file.close();
}

void write_optimizer_shard(const std::string& dir, int tp_rank, int tp_size, int dp_rank,
                           const ShardedAdamW& optimizer) {
  h5::File file =
      h5::File::create((fs::path(dir) / optimizer_file_name(tp_rank, tp_size, dp_rank)).string());
  file.write_attr("/", "type", "adamw");
  file.write_attr_scalar<std::int64_t>("/", "steps", optimizer.step_count());
  file.write_attr_scalar<std::int64_t>("/", kShardOffset, optimizer.shard_offset());
  file.write_attr_scalar<std::int64_t>("/", "total", optimizer.total());
  file.write_attr_scalar<std::int64_t>("/", "tp_rank", tp_rank);
  file.write_attr_scalar<std::int64_t>("/", "tp_size", tp_size);
  std::vector<std::string> names;
  std::vector<std::int64_t> axis, local, offset, extent;
  for (const Parameter* p : optimizer.parameters()) {
    names.push_back(p->name);
    axis.push_back(p->shard.axis);
    local.push_back(p->sharded() ? p->value.dim(p->shard.axis) : 0);
    offset.push_back(p->shard.offset);
    extent.push_back(p->shard.extent);
  }
  file.write_attr("/", "param_names", names);
  file.write_attr("/", "split_axis", axis);
  file.write_attr("/", "local_dim", local);
  file.write_attr("/", "offset", offset);
  file.write_attr("/", "extent", extent);
  file.write("exp_avg", optimizer.exp_avg());
  file.write("exp_avg_sq", optimizer.exp_avg_sq());
  file.close();
}

void load_optimizer_state(const std::string& dir, Optimizer& optimizer) {
  const SavedOptimizer saved(dir, optimizer.parameters());
  if (saved.type != optimizer.type())
    throw UserError(dir + ": holds " + saved.type +
                    " optimizer state, but train.optimizer.type is " + optimizer.type());
  const ParameterList& params = optimizer.parameters();
  for (std::size_t i = 0; i < params.size(); ++i)
    for (const std::string& name : optimizer.state_names())
      copy_full_to_shard(optimizer.state(i, name), saved.full(*params[i], name), params[i]->shard);
  optimizer.set_step_count(saved.steps);
}

void load_optimizer_shard(const std::string& dir, ShardedAdamW& optimizer) {
  const SavedOptimizer saved(dir, optimizer.parameters());
  if (saved.type != "adamw")
    throw UserError(dir + ": holds " + saved.type + " optimizer state; ZeRO-1 needs adamw");
  // This TP rank's flat vector of each moment, then this DP rank's piece of it.
  for (const char* state : {"exp_avg", "exp_avg_sq"}) {
    std::vector<float> flat(static_cast<std::size_t>(optimizer.total()), 0.0f);
    std::int64_t offset = 0;
    for (const Parameter* p : optimizer.parameters()) {
      Tensor local = Tensor::empty(p->value.shape(), DType::f32);
      copy_full_to_shard(local, saved.full(*p, state), p->shard);
      std::memcpy(flat.data() + offset, local.raw(), local.bytes());
      offset += local.numel();
    }
    Tensor& out = std::string(state) == "exp_avg" ? optimizer.exp_avg() : optimizer.exp_avg_sq();
    float* m = out.data<float>();
    for (std::int64_t i = 0; i < optimizer.shard_size(); ++i) {
      const std::int64_t g = optimizer.shard_offset() + i;
      m[i] = g < optimizer.total() ? flat[g] : 0.0f;
    }
  }
  optimizer.set_step_count(saved.steps);
}

}  // namespace tr
