// One GPU per rank of a device group. NCCL refuses a communicator in which two ranks share a
// GPU (its init fails with "Duplicate GPU detected"), which a user meets by starting more ranks
// on a node than it has GPUs (ranks choose GPUs by node-local rank modulo the GPUs they see).
// Before any NCCL communicator is made, the ranks compare their GPUs, so that the run ends with
// one line instead. Two ranks share a GPU when their GPUs have one UUID, or one PCI address on
// one host (NCCL's own key: MIG instances of one GPU have UUIDs of their own but one address).
// Comparing by UUID and address, not device index, lets ranks given their own GPU through
// CUDA_VISIBLE_DEVICES (srun --gpus-per-task: every rank sees its GPU as device 0) pass.
#pragma once

#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace tr {

// Where one rank trains: its world rank, the TP and DP groups it belongs to (any numbering that
// gives the members of one group one number: the grid's DP rank names a TP group and its TP
// rank a DP group), its node's host name, and its GPU's UUID and PCI address.
struct GpuPlacement {
  int world_rank = 0;
  int tp_group = 0, dp_group = 0;
  std::string host;
  std::string gpu_uuid;
  std::string pci_bus_id;  // "" where unknown
};

// "" when no two of `ranks` (the members of one `group`, "tp" or "dp") share a GPU; else a
// line naming the first two that do (world ranks), the GPU and the host, and what to do.
std::string shared_gpu_problem(const std::vector<GpuPlacement>& ranks, const std::string& group);

// Collective over `world` (every rank calls it): gathers every rank's placement, then checks
// every TP group and every DP group, and throws UserError with the first problem's line. Every
// rank checks every group from the same records, so all throw together: a rank whose own
// groups are fine never waits in a later collective for ranks that have left.
void require_distinct_gpus(Communicator& world, const GpuPlacement& mine);

// This process's host name (gethostname; "" where it fails).
std::string host_name();

}  // namespace tr
