#include "models/init.h"

#include <vector>

#include "layers/cpu/philox.h"

namespace tr {

std::uint64_t name_hash(const std::string& name) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : name) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

namespace {

template <typename T>
void fill(T* out, const std::vector<double>& values) {
  for (std::size_t i = 0; i < values.size(); ++i) out[i] = static_cast<T>(values[i]);
}

}  // namespace

void initialize_parameters(const ParameterList& params, std::uint64_t seed) {
  for (Parameter* p : params) {
    // Values of the full tensor, then this rank's shard of them: a tensor-parallel run starts
    // from exactly the single-process weights.
    const std::int64_t n = shape_numel(p->full_shape());
    std::vector<double> values(static_cast<std::size_t>(n), 0.0);
    const std::uint64_t stream = name_hash(p->name);
    switch (p->init.kind) {
      case InitRule::Kind::zeros: break;
      case InitRule::Kind::ones: std::fill(values.begin(), values.end(), 1.0); break;
      case InitRule::Kind::uniform:
        cpu::philox_uniform(values.data(), n, seed, stream, 0);
        for (double& v : values) v = (2 * v - 1) * p->init.scale;
        break;
      case InitRule::Kind::normal:
        cpu::philox_normal(values.data(), n, seed, stream, 0);
        for (double& v : values) v *= p->init.scale;
        break;
    }
    Tensor full = p->sharded() ? Tensor::empty(p->full_shape(), p->value.dtype()) : p->value;
    if (full.dtype() == DType::f64)
      fill(full.data<double>(), values);
    else
      fill(full.data<float>(), values);
    if (p->sharded()) copy_full_to_shard(p->value, full, p->shard);
  }
}

}  // namespace tr
