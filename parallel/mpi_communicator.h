// Communicator over MPI for host memory.
//
// Blocking collectives are issued as non-blocking MPI operations and polled, so a collective
// that does not complete within the watchdog timeout is reported (naming the group, the
// operation and this rank) and the job is aborted instead of hanging silently.
// Non-blocking all-reduces (DP gradient buckets) run on a per-communicator worker thread in
// submission order: MPI implementations progress non-blocking collectives only inside MPI
// calls, so a thread that sits in them is what makes them overlap with backward compute.
// Requires MPI_THREAD_MULTIPLE (tensor- and data-parallel groups talk concurrently).
#pragma once

#include <mpi.h>

#include <memory>

#include "parallel/communicator.h"

namespace tr {

// comm is duplicated (the communicator owns its copy). watchdog_seconds <= 0: no watchdog.
std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, const std::string& name,
                                                    double watchdog_seconds);

MPI_Datatype mpi_datatype(DType dtype);

}  // namespace tr
