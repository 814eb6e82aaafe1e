// The process's place in a job: MPI's lifetime, the world, the TP x DP grid and the
// communicators of its groups.
//
// Launched by mpirun or srun (detected from the launcher's environment) the world is MPI's;
// started directly, the world is this one process and MPI is never initialised, so single
// runs and GPU hosts without an MPI installation work the same way.
#pragma once

#include <memory>
#include <string>

#include "parallel/communicator.h"
#include "parallel/process_grid.h"

namespace tr {

// How device buffers travel between the ranks of a group (parallel.gpu_comm).
enum class DeviceTransport { nccl, mpi };
// "nccl", "mpi", or "auto": nccl where this trainer was built with NCCL, else mpi.
DeviceTransport device_transport_from_name(const std::string& name);

class ParallelRuntime {
 public:
  // Initialises MPI when launched by an MPI launcher (and this build has MPI).
  ParallelRuntime(int* argc, char*** argv);
  // A world of this one process, whatever launched it (tests compare against it).
  ParallelRuntime();
  ~ParallelRuntime();
  ParallelRuntime(const ParallelRuntime&) = delete;
  ParallelRuntime& operator=(const ParallelRuntime&) = delete;

  bool distributed() const { return mpi_; }
  int world_size() const { return world_size_; }
  int world_rank() const { return world_rank_; }
  // Ranks on this node (an MPI shared-memory split): GPU choice and thread counts.
  int local_size() const { return local_size_; }
  int local_rank() const { return local_rank_; }

  // Builds the grid and its TP and DP communicators (again on each call: the world group and
  // references to it stay valid); UserError when the layout does not fit the world.
  void setup_grid(int tensor, int data, double watchdog_seconds);
  const ProcessGrid& grid() const { return grid_; }
  Communicator& world() { return *world_comm_; }
  Communicator& tp() { return *tp_comm_; }
  Communicator& dp() { return *dp_comm_; }

  // For training on CUDA: makes the GPU of this rank's node-local rank current.
  void select_device();
  // For training on CUDA, after setup_grid: select_device(), then builds the TP and DP groups'
  // device communicators over `transport` for groups of several ranks (nccl: UserError where
  // NCCL was not built, or where two ranks of a group would share a GPU; mpi: device buffers
  // staged through host memory, parallel/staged_communicator.h), the single-process one for a
  // group of one. Collective over the world.
  void setup_device_groups(DeviceTransport transport);
  Communicator& tp_device() { return *tp_device_; }
  Communicator& dp_device() { return *dp_device_; }

  // Ends every rank of the job (MPI_Abort), or exits when alone.
  [[noreturn]] void abort(int exit_code);

 private:
  bool mpi_ = false;
  int world_size_ = 1, world_rank_ = 0, local_size_ = 1, local_rank_ = 0;
  ProcessGrid grid_;
  std::unique_ptr<Communicator> world_comm_, tp_comm_, dp_comm_;
  std::unique_ptr<Communicator> tp_device_, dp_device_;
};

// True when this process was started by mpirun/mpiexec or srun with an MPI job around it.
bool launched_by_mpi();

}  // namespace tr
