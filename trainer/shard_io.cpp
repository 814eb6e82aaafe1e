#include "trainer/shard_io.h"

#include <set>

namespace tr {

namespace {

constexpr const char* kGlobalShape = "global_shape";
constexpr const char* kSplitAxis = "split_axis";
constexpr const char* kOffset = "offset";

}  // namespace

void write_shard(h5::File& file, const std::string& dataset, const Tensor& value,
                 const TpShard& shard) {
  if (shard.axis < 0) {
    file.write(dataset, value, DType::f32);
    return;
  }
  // Only the slice that exists in the full tensor: padding rows are not part of the model.
  Shape piece_shape = value.shape();
  piece_shape[shard.axis] = shard.extent;
  Tensor piece = Tensor::empty(piece_shape, value.dtype());
  copy_shard_to_full(piece, value, TpShard{shard.axis, piece_shape, 0, shard.extent});
  file.write(dataset, piece, DType::f32);
  file.write_attr(dataset, kGlobalShape, std::vector<std::int64_t>(shard.full_shape));
  file.write_attr_scalar<std::int64_t>(dataset, kSplitAxis, shard.axis);
  file.write_attr_scalar<std::int64_t>(dataset, kOffset, shard.offset);
}

ShardedReader::ShardedReader(const std::vector<std::string>& paths, std::string label)
    : label_(std::move(label)) {
  for (const std::string& path : paths) files_.push_back(h5::File::open(path));
}

std::vector<std::string> ShardedReader::root_datasets() const {
  std::set<std::string> names;
  for (const h5::File& f : files_)
    for (const std::string& name : f.datasets("/")) names.insert(name);
  return {names.begin(), names.end()};
}

bool ShardedReader::has(const std::string& dataset) const {
  for (const h5::File& f : files_)
    if (f.is_dataset(dataset)) return true;
  return false;
}

Tensor ShardedReader::read_full(const std::string& dataset, const Shape& full_shape,
                                DType dtype) const {
  Tensor full = Tensor::zeros(full_shape, dtype);
  // Indices covered along the split axis (or the whole tensor, counted as its axis-0 size).
  std::int64_t covered = 0, needed = -1;
  bool found = false;
  for (const h5::File& f : files_) {
    if (!f.is_dataset(dataset)) continue;
    found = true;
    const Shape stored = f.shape(dataset);
    const auto bad = [&](const std::string& what) {
      return UserError(f.path() + ": tensor '" + dataset + "' " + what);
    };
    if (!f.stored_type(dataset).is_float) throw bad("is not floating point");
    if (!f.has_attr(dataset, kSplitAxis)) {
      if (stored != full_shape)
        throw bad("has shape " + shape_string(stored) + ", expected " + shape_string(full_shape));
      f.read_into(dataset, full);
      return full;
    }
    const auto global = f.read_attr<std::int64_t>(dataset, kGlobalShape);
    const auto axis = f.read_attr_scalar<std::int64_t>(dataset, kSplitAxis);
    const auto offset = f.read_attr_scalar<std::int64_t>(dataset, kOffset);
    if (Shape(global.begin(), global.end()) != full_shape)
      throw bad("is a shard of shape " + shape_string(Shape(global.begin(), global.end())) +
                ", expected " + shape_string(full_shape));
    if (axis < 0 || axis >= static_cast<std::int64_t>(full_shape.size()))
      throw bad("has split_axis " + std::to_string(axis));
    Shape expect = full_shape;
    expect[axis] = stored.size() == full_shape.size() ? stored[axis] : -1;
    if (stored != expect || offset < 0 || offset + stored[axis] > full_shape[axis])
      throw bad("holds a slice " + shape_string(stored) + " at offset " + std::to_string(offset) +
                " that does not fit " + shape_string(full_shape));
    const Tensor piece = f.read_tensor(dataset, dtype);
    copy_shard_to_full(full, piece,
                       TpShard{static_cast<int>(axis), full_shape, offset, stored[axis]});
    covered += stored[axis];
    needed = full_shape[axis];
  }
  if (!found) throw UserError(label_ + ": tensor '" + dataset + "' is missing");
  if (covered != needed)
    throw UserError(label_ + ": tensor '" + dataset + "': its shards cover " +
                    std::to_string(covered) + " of " + std::to_string(needed) +
                    " indices (a shard file is missing)");
  return full;
}

void ShardedReader::read_into(const std::string& dataset, Tensor& local,
                              const TpShard& shard) const {
  const Tensor full = read_full(dataset, shard.full_shape, local.dtype());
  copy_full_to_shard(local, full, shard);
}

}  // namespace tr
