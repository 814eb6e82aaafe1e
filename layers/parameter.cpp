#include "layers/parameter.h"

#include <cstring>

#include "layers/tensor_parallel.h"

namespace tr {

void init_parameter(Parameter& p, std::string name, const Shape& shape, DType dtype, bool decay) {
  p.name = std::move(name);
  p.value = Tensor::zeros(shape, dtype);
  p.grad = Tensor::zeros(shape, dtype);
  p.decay = decay;
  p.shard = TpShard{-1, shape, 0, 0};
}

void init_sharded_parameter(Parameter& p, std::string name, const Shape& full_shape, int axis,
                            int rank, int ranks, DType dtype, bool decay) {
  TR_CHECK(axis >= 0 && axis < static_cast<int>(full_shape.size()), "shard axis out of range");
  const DimSplit s = split_dim(full_shape[axis], rank, ranks);
  Shape local = full_shape;
  local[axis] = s.local;
  init_parameter(p, std::move(name), local, dtype, decay);
  p.shard = TpShard{axis, full_shape, s.offset, s.extent};
}

namespace {

// A tensor viewed as [outer, dim, inner] around `axis`.
struct AxisView {
  std::int64_t outer = 1, dim = 1, inner = 1;
};

AxisView around(const Shape& shape, int axis) {
  AxisView v;
  for (int i = 0; i < static_cast<int>(shape.size()); ++i) {
    if (i < axis) v.outer *= shape[i];
    if (i == axis) v.dim = shape[i];
    if (i > axis) v.inner *= shape[i];
  }
  return v;
}

// Copies `extent` slices along the axis: local index i <-> full index offset + i.
void copy_slices(Tensor& full, Tensor& local, const TpShard& shard, bool to_full) {
  TR_CHECK(full.dtype() == local.dtype(), "shard copy: dtypes differ");
  TR_CHECK(full.shape() == shard.full_shape, "shard copy: full tensor " +
                                                 shape_string(full.shape()) + ", expected " +
                                                 shape_string(shard.full_shape));
  if (shard.axis < 0) {
    TR_CHECK(local.shape() == full.shape(), "shard copy: unsharded shapes differ");
    if (to_full)
      full.copy_from(local);
    else
      local.copy_from(full);
    return;
  }
  const AxisView f = around(full.shape(), shard.axis), l = around(local.shape(), shard.axis);
  TR_CHECK(f.outer == l.outer && f.inner == l.inner && shard.extent <= l.dim &&
               shard.offset + shard.extent <= f.dim,
           "shard copy: local " + shape_string(local.shape()) + " does not fit full " +
               shape_string(full.shape()));
  const std::size_t es = dtype_size(full.dtype());
  const std::size_t run = static_cast<std::size_t>(shard.extent * f.inner) * es;
  auto* fb = static_cast<char*>(full.raw());
  auto* lb = static_cast<char*>(local.raw());
  if (!to_full) local.zero_();
  for (std::int64_t o = 0; o < f.outer; ++o) {
    char* fp = fb + static_cast<std::size_t>((o * f.dim + shard.offset) * f.inner) * es;
    char* lp = lb + static_cast<std::size_t>(o * l.dim * l.inner) * es;
    if (to_full)
      std::memcpy(fp, lp, run);
    else
      std::memcpy(lp, fp, run);
  }
}

}  // namespace

void copy_full_to_shard(Tensor& local, const Tensor& full, const TpShard& shard) {
  copy_slices(const_cast<Tensor&>(full), local, shard, /*to_full=*/false);
}

void copy_shard_to_full(Tensor& full, const Tensor& local, const TpShard& shard) {
  copy_slices(full, const_cast<Tensor&>(local), shard, /*to_full=*/true);
}

}  // namespace tr
