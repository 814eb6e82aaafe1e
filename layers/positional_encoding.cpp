#include "layers/positional_encoding.h"

#include <cmath>

#include "layers/device_ops.h"

namespace tr {

PositionalEncoding::Kind parse_positional(const std::string& name) {
  if (name == "sinusoidal") return PositionalEncoding::Kind::sinusoidal;
  if (name == "learned") return PositionalEncoding::Kind::learned;
  throw UserError("model.positional: expected sinusoidal or learned, got '" + name + "'");
}

namespace {

template <typename T>
void fill_sinusoidal(T* table, std::int64_t max_len, std::int64_t d) {
  // PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(same); computed in double.
  for (std::int64_t pos = 0; pos < max_len; ++pos) {
    for (std::int64_t i = 0; i < d; i += 2) {
      const double angle = static_cast<double>(pos) / std::pow(10000.0, static_cast<double>(i) / d);
      table[pos * d + i] = static_cast<T>(std::sin(angle));
      if (i + 1 < d) table[pos * d + i + 1] = static_cast<T>(std::cos(angle));
    }
  }
}

template <typename T>
void add_rows(T* x, const T* table, std::int64_t B, std::int64_t Tn, std::int64_t d,
              std::int64_t offset) {
#pragma omp parallel for collapse(2) schedule(static)
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t t = 0; t < Tn; ++t) {
      T* row = x + (b * Tn + t) * d;
      const T* pe = table + (t + offset) * d;
      for (std::int64_t i = 0; i < d; ++i) row[i] += pe[i];
    }
}

template <typename T>
void sum_rows_accumulate(T* dtable, const T* dy, std::int64_t B, std::int64_t Tn, std::int64_t d) {
#pragma omp parallel for schedule(static)
  for (std::int64_t t = 0; t < Tn; ++t)
    for (std::int64_t b = 0; b < B; ++b) {  // fixed order over b: deterministic
      const T* row = dy + (b * Tn + t) * d;
      for (std::int64_t i = 0; i < d; ++i) dtable[t * d + i] += row[i];
    }
}

}  // namespace

PositionalEncoding::PositionalEncoding(const std::string& name, Kind kind, std::int64_t max_len,
                                       std::int64_t d, DType dtype)
    : kind_(kind), max_len_(max_len) {
  init_parameter(weight, name + ".weight", {max_len, d}, dtype, /*decay=*/false);
  weight.init = {InitRule::Kind::normal, 0.02};
  if (kind_ == Kind::sinusoidal) {
    weight.grad = Tensor();
    if (dtype == DType::f64)
      fill_sinusoidal(weight.value.data<double>(), max_len, d);
    else
      fill_sinusoidal(weight.value.data<float>(), max_len, d);
  }
}

void PositionalEncoding::collect_parameters(ParameterList& out) {
  if (kind_ == Kind::learned) out.push_back(&weight);
}

void PositionalEncoding::forward_inplace(Tensor& x, std::int64_t offset) const {
  const std::int64_t B = x.dim(0), Tn = x.dim(1), d = x.dim(2);
  if (Tn + offset > max_len_)
    throw UserError("sequence of " + std::to_string(Tn + offset) +
                    " positions exceeds model.max_len " + std::to_string(max_len_));
  if (x.device() == Device::cuda) return cuda_moves::add_position_rows(x, weight.value, offset);
  if (x.dtype() == DType::f64)
    add_rows(x.data<double>(), weight.value.data<double>(), B, Tn, d, offset);
  else
    add_rows(x.data<float>(), weight.value.data<float>(), B, Tn, d, offset);
}

void PositionalEncoding::backward_accumulate(const Tensor& dy) {
  if (kind_ != Kind::learned) return;
  const std::int64_t B = dy.dim(0), Tn = dy.dim(1), d = dy.dim(2);
  if (dy.device() == Device::cuda) return cuda_moves::sum_position_rows_accumulate(weight.grad, dy);
  if (dy.dtype() == DType::f64)
    sum_rows_accumulate(weight.grad.data<double>(), dy.data<double>(), B, Tn, d);
  else
    sum_rows_accumulate(weight.grad.data<float>(), dy.data<float>(), B, Tn, d);
}

}  // namespace tr
