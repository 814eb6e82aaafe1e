// Tensor-parallel shards in HDF5 files (checkpoints, docs/FORMATS.md).
//
// A sharded tensor is stored as the rank's slice of the canonical tensor, padding dropped,
// with dataset attributes `global_shape` (int64[]), `split_axis` (int64) and `offset` (int64:
// the full index of the slice's first element along the split axis). A dataset without them
// is the whole tensor. So a set of files written under one TP layout can be read back under
// any other: ShardedReader assembles whole tensors from the pieces, and each reading rank keeps
// its own slice.
#pragma once

#include <string>
#include <vector>

#include "data/h5.h"
#include "layers/parameter.h"

namespace tr {

// Writes `value` (a rank's local tensor of `shard`) as `dataset`, in float32.
void write_shard(h5::File& file, const std::string& dataset, const Tensor& value,
                 const TpShard& shard);

class ShardedReader {
 public:
  // `label` names the set in messages (a checkpoint directory).
  ShardedReader(const std::vector<std::string>& paths, std::string label);
  // Root dataset names of all files, sorted, without duplicates.
  std::vector<std::string> root_datasets() const;
  bool has(const std::string& dataset) const;
  // The whole tensor `dataset` of canonical shape `full_shape`, assembled from every file
  // holding it (whole or in slices); UserError naming the file when a piece does not fit the
  // shape, or naming the tensor when the pieces do not cover it.
  Tensor read_full(const std::string& dataset, const Shape& full_shape, DType dtype) const;
  // local = this rank's part (shard) of the assembled tensor.
  void read_into(const std::string& dataset, Tensor& local, const TpShard& shard) const;

 private:
  std::vector<h5::File> files_;
  std::string label_;
};

}  // namespace tr
