// One GPU per rank of a device group. NCCL refuses a communicator in which two ranks share a
// GPU (its init fails with "Duplicate GPU detected"), which a user meets by starting more ranks
// on a node than it has GPUs (ranks choose GPUs by node-local rank modulo the GPUs they see).
// Before any NCCL communicator is made, each group's ranks compare their GPUs by UUID, so that
// ranks given their own GPU through CUDA_VISIBLE_DEVICES (srun --gpus-per-task, where every
// rank sees its GPU as device 0) count as distinct, and the run ends with one line instead.
#pragma once

#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace tr {

// Where one rank of a group trains: its world rank, its node's host name and its GPU's UUID.
struct GpuPlacement {
  int world_rank = 0;
  std::string host;
  std::string gpu_uuid;
};

// "" when no two of `ranks` (one group's, by group rank) share a GPU; else a line naming the
// first two that do (world ranks), the GPU and the host, and what to do about it.
std::string shared_gpu_problem(const std::vector<GpuPlacement>& ranks, const std::string& group);

// Collective over `group` (every rank calls it): gathers every rank's placement and throws
// UserError with shared_gpu_problem's line on every rank when two share a GPU.
void require_distinct_gpus(Communicator& group, const GpuPlacement& mine);

// This process's host name (gethostname; "" where it fails).
std::string host_name();

}  // namespace tr
