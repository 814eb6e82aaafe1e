// Position information added to [B, T, d] activations: sinusoidal (fixed) or learned
// ({name}.weight [max_len, d], no weight decay).
#pragma once

#include <string>

#include "layers/parameter.h"

namespace tr {

class PositionalEncoding {
 public:
  enum class Kind { sinusoidal, learned };
  PositionalEncoding(const std::string& name, Kind kind, std::int64_t max_len, std::int64_t d,
                     DType dtype);
  void collect_parameters(ParameterList& out);
  // x[b, t, :] += table[t + offset, :]  (in place; offset for incremental decoding)
  void forward_inplace(Tensor& x, std::int64_t offset = 0) const;
  // learned: table grad[t] += sum_b dy[b, t]; sinusoidal: nothing to learn
  void backward_accumulate(const Tensor& dy);
  std::int64_t max_len() const { return max_len_; }

  Parameter weight;  // learned table; for sinusoidal, the fixed table (not a parameter)

 private:
  Kind kind_;
  std::int64_t max_len_;
};

PositionalEncoding::Kind parse_positional(const std::string& name);

}  // namespace tr
