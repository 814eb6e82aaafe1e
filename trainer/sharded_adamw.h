// ZeRO stage 1 (parallel.zero: 1): AdamW whose state is sharded over the data-parallel ranks.
//
// All parameters are laid end to end in canonical order as one flat vector of N elements,
// padded to S * DP; DP rank r owns elements [r*S, (r+1)*S). A step reduce-scatters the
// gradients (each rank receives the summed gradients of its shard), clips on the global norm
// (shard sums of squares all-reduced), updates its shard with AdamW (the decay of each element
// from its parameter's group), and all-gathers the updated parameters. Optimizer memory per
// rank falls to 1/DP; the result equals unsharded AdamW on the summed gradients.
//
// Under tensor parallelism each TP rank runs its own ShardedAdamW over its local parameters
// (its shards and its copies of the replicated ones) within its DP group; the global norm
// then adds the TP ranks' sums of squares, counting replicated parameters on TP rank 0 only.
#pragma once

#include <cstdint>
#include <vector>

#include "layers/parameter.h"
#include "parallel/communicator.h"
#include "trainer/optimizer.h"

namespace tr {

class ShardedAdamW {
 public:
  // tp: the tensor-parallel group (null or of one rank without tensor parallelism).
  ShardedAdamW(ParameterList params, const AdamWConfig& config, Communicator& dp,
               Communicator* tp = nullptr);

  struct StepResult {
    double grad_norm = 0;  // global, before clipping
    bool updated = false;  // false: non-finite gradients, parameters left as they were
  };
  // Gradients as backward left them (per rank, not yet summed). max_norm <= 0: no clipping.
  StepResult step(double lr, double max_norm);
  void zero_grad();

  std::int64_t step_count() const { return steps_; }
  void set_step_count(std::int64_t steps) { steps_ = steps; }
  std::int64_t total() const { return total_; }       // N, all parameter elements
  std::int64_t shard_size() const { return shard_; }  // S
  std::int64_t shard_offset() const { return shard_ * dp_.rank(); }
  // This rank's shard of the state: exp_avg and exp_avg_sq, [S] each (padding included).
  Tensor& exp_avg() { return m_; }
  Tensor& exp_avg_sq() { return v_; }
  const Tensor& exp_avg() const { return m_; }
  const Tensor& exp_avg_sq() const { return v_; }
  const ParameterList& parameters() const { return params_; }
  // Moves the flat buffers and the state to `device`, where the parameters are (the trainer
  // writes and restores state on the host). On CUDA, dp and tp are device communicators.
  void to_device(Device device);

 private:
  struct Segment {  // the part of one parameter inside this rank's shard
    std::size_t param;
    std::int64_t shard_begin, param_begin, count;
    double weight_decay;
    bool in_norm;  // counted in the global norm by this rank (see the class comment)
  };
  ParameterList params_;
  AdamWConfig config_;
  Communicator& dp_;
  Communicator* tp_;  // null without tensor parallelism
  Device device_ = Device::cpu;
  std::int64_t total_ = 0, shard_ = 0, steps_ = 0;
  std::vector<Segment> segments_;
  Tensor flat_, grad_shard_, param_shard_, m_, v_;
};

}  // namespace tr
