// Data-parallel gradient averaging in buckets (as PyTorch DDP and Megatron-LM do).
//
// Parameters are grouped, in reverse canonical order (the order backward finalises them),
// into buckets of about parallel.bucket_mb. When every gradient of a bucket is final, its
// all-reduce starts at once, non-blocking, so communication overlaps the rest of backward;
// finish() completes the remaining buckets and writes the reduced values back.
// The reduction is a SUM: each rank's backward already scales its loss by 1 / (targets of the
// whole global batch), so the sum over ranks is the gradient of the global step loss.
#pragma once

#include <memory>
#include <unordered_map>
#include <vector>

#include "layers/parameter.h"
#include "parallel/communicator.h"

namespace tr {

class GradientReducer {
 public:
  // overlap false: buckets are reduced only in finish() (still bucketed, still pipelined).
  GradientReducer(const ParameterList& params, Communicator& dp, double bucket_mb, bool overlap);
  // Forgets readiness; call before the backward pass whose gradients are to be reduced.
  void begin_step();
  // The gradient of `p` is final for this step.
  void mark_ready(const Parameter* p);
  // Starts what has not started, waits for every bucket, copies the results into the grads.
  void finish();

  std::size_t bucket_count() const { return buckets_.size(); }
  // Buckets whose all-reduce started before finish() in the last step (overlap measure).
  std::size_t buckets_started_early() const { return started_early_; }

 private:
  struct Bucket {
    std::vector<Parameter*> params;
    Tensor flat;
    std::size_t pending = 0;
    std::unique_ptr<CommRequest> request;
  };
  void start(Bucket& bucket);

  Communicator& dp_;
  bool overlap_;
  std::vector<Bucket> buckets_;
  std::unordered_map<const Parameter*, std::size_t> bucket_of_;
  std::size_t started_early_ = 0;
  bool finishing_ = false;
};

}  // namespace tr
