// Device-memory collectives copied through host memory and reduced over a host communicator
// (MPI): `parallel.gpu_comm: mpi`.
//
// NCCL needs one GPU per rank of a group and refuses two ranks on one GPU. This transport has
// neither need: every collective copies its device buffers to the host (after the work the
// compute stream has queued), reduces them over the group's MPI communicator, and copies the
// result back. It is slow (each TP all-reduce waits for the GPU) and exists for what NCCL
// cannot do: a layout's smoke test with several ranks sharing the one GPU of a workstation
// (or of the machine the gpu tests run on: tests/mpi/test_gpu_parallel_training.cpp), and
// hosts whose CUDA toolkit has no NCCL.
//
// all_reduce_async copies to the host at once and reduces on the host communicator's worker
// thread, so the GPU keeps computing while a DP bucket is summed; wait() copies the result
// back. bf16 buffers are summed in fp32 on the host (MPI has no bf16) and rounded once.
#pragma once

#include <functional>
#include <memory>

#include "parallel/communicator.h"

namespace tr {

// How the staging reaches a buffer: whether it is device memory, and a copy in any direction
// that returns once the copy is done and is ordered after the device work queued before it.
// CUDA's in a trainer (device_staging_memory); tests put host memory behind the same calls.
struct StagingMemory {
  std::function<bool(const void*)> is_device;
  std::function<void(void* dst, const void* src, std::size_t bytes)> copy;
};
StagingMemory device_staging_memory();

// A communicator over `host`'s ranks (which must outlive it), named like it.
std::unique_ptr<Communicator> make_staged_communicator(Communicator& host, StagingMemory memory);

}  // namespace tr
