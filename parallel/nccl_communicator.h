// Communicator over NCCL for device memory (issue 6, section 4).
//
// One NCCL communicator per group (TP, DP), set up over the group's host communicator: rank 0
// draws the unique id and broadcasts it (over MPI in a job, the identity in a world of one),
// then every rank joins on the GPU chosen for it (gpu_for_local_rank). Collectives:
// - blocking ones (all_reduce: the TP all-reduces inside forward/backward, reduce_scatter,
//   all_gather, broadcast) are enqueued on the compute stream and return without waiting,
//   ordered with the kernels around them;
// - all_reduce_async (the DP gradient buckets) runs on the communicator's own stream: it
//   waits for the compute stream's work so far (the bucket's copies), and wait() makes the
//   compute stream wait for it, so backward keeps computing while buckets reduce.
// Host buffers (scalars such as a sum of squares) are staged through a device buffer and
// synchronise. Built only where NCCL is found (TR_HAVE_NCCL); nccl_built() says which.
#pragma once

#include <memory>

#include "parallel/communicator.h"

namespace tr {

bool nccl_built();
// The GPU this process uses: its node-local rank modulo the GPUs it sees (one GPU per rank
// when the job places as many ranks per node as there are GPUs).
int gpu_for_local_rank(int local_rank);
// Collective over `host`'s ranks (all of them must call it); UserError without NCCL.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host, int device);

}  // namespace tr
