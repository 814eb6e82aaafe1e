#include "parallel/runtime.h"

#include <cstdio>
#include <cstdlib>

#include "layers/device.h"
#include "parallel/gpu_placement.h"
#include "parallel/nccl_communicator.h"
#include "parallel/staged_communicator.h"

#ifdef TR_HAVE_MPI
#include <mpi.h>

#include "parallel/mpi_communicator.h"
#endif

namespace tr {

namespace {
// The world group's watchdog (setup_grid gives the TP and DP groups theirs).
constexpr double kDefaultWatchdogSeconds = 300;
}  // namespace

bool launched_by_mpi() {
  // Open MPI's mpirun, PMIx (srun --mpi=pmix), PMI-1/2 (MPICH, srun --mpi=pmi2).
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"})
    if (std::getenv(var)) return true;
  return false;
}

ParallelRuntime::ParallelRuntime(int* argc, char*** argv) {
#ifdef TR_HAVE_MPI
  if (launched_by_mpi()) {
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
    if (provided < MPI_THREAD_MULTIPLE) {
      std::fprintf(stderr, "trainer: this MPI does not provide MPI_THREAD_MULTIPLE\n");
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    mpi_ = true;
    MPI_Comm_size(MPI_COMM_WORLD, &world_size_);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank_, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &local_size_);
    MPI_Comm_rank(node, &local_rank_);
    MPI_Comm_free(&node);
    world_comm_ = make_mpi_communicator(MPI_COMM_WORLD, "world", kDefaultWatchdogSeconds);
  }
#else
  (void)argc;
  (void)argv;
#endif
  if (!world_comm_) world_comm_ = make_single_process_communicator("world");
}

ParallelRuntime::ParallelRuntime() : world_comm_(make_single_process_communicator("world")) {}

ParallelRuntime::~ParallelRuntime() {
  tp_device_.reset();
  dp_device_.reset();
  tp_comm_.reset();
  dp_comm_.reset();
  world_comm_.reset();
#ifdef TR_HAVE_MPI
  if (mpi_) MPI_Finalize();
#endif
}

void ParallelRuntime::setup_grid(int tensor, int data, double watchdog_seconds) {
  grid_ = ProcessGrid::make(world_size_, world_rank_, tensor, data);
  // Device groups built over the groups replaced here would outlive them.
  tp_device_.reset();
  dp_device_.reset();
#ifdef TR_HAVE_MPI
  if (mpi_) {
    MPI_Comm tp, dp;
    MPI_Comm_split(MPI_COMM_WORLD, grid_.dp_rank, grid_.tp_rank, &tp);
    MPI_Comm_split(MPI_COMM_WORLD, grid_.tp_rank, grid_.dp_rank, &dp);
    tp_comm_ = make_mpi_communicator(tp, "tp", watchdog_seconds);
    dp_comm_ = make_mpi_communicator(dp, "dp", watchdog_seconds);
    MPI_Comm_free(&tp);
    MPI_Comm_free(&dp);
    return;
  }
#endif
  (void)watchdog_seconds;
  tp_comm_ = make_single_process_communicator("tp");
  dp_comm_ = make_single_process_communicator("dp");
}

void ParallelRuntime::select_device() {
  select_cuda_device(gpu_for_local_rank(local_rank_));
}

DeviceTransport device_transport_from_name(const std::string& name) {
  if (name == "nccl") return DeviceTransport::nccl;
  if (name == "mpi") return DeviceTransport::mpi;
  if (name == "auto") return nccl_built() ? DeviceTransport::nccl : DeviceTransport::mpi;
  throw InternalError("device transport '" + name + "': expected nccl, mpi or auto");
}

void ParallelRuntime::setup_device_groups(DeviceTransport transport) {
  select_device();
  tp_device_.reset();
  dp_device_.reset();
  // Two ranks of a group on one GPU would fail inside NCCL's init: the world checks every
  // group first, before any NCCL communicator exists (parallel/gpu_placement.h). Staged
  // through host memory, ranks may share a GPU.
  if (transport == DeviceTransport::nccl && world_comm_->size() > 1) {
    const CudaDeviceInfo gpu = cuda_device_info(current_cuda_device());
    require_distinct_gpus(*world_comm_, {world_rank_, grid_.dp_rank, grid_.tp_rank, host_name(),
                                         gpu.uuid, gpu.pci_bus_id});
  }
  const auto device_group = [transport](Communicator& host) {
    // A group of one needs no NCCL (tests/gpu/test_gpu_nccl.cpp checks NCCL in a world of one).
    if (host.size() == 1) return make_single_process_communicator(host.name());
    if (transport == DeviceTransport::mpi)
      return make_staged_communicator(host, device_staging_memory());
    return make_nccl_communicator(host, current_cuda_device());
  };
  // The same order on every rank: TP groups, then DP groups (each a collective of its group).
  tp_device_ = device_group(*tp_comm_);
  dp_device_ = device_group(*dp_comm_);
}

void ParallelRuntime::abort(int exit_code) {
  std::fflush(stdout);
  std::fflush(stderr);
#ifdef TR_HAVE_MPI
  if (mpi_ && world_size_ > 1) MPI_Abort(MPI_COMM_WORLD, exit_code);
#endif
  std::exit(exit_code);
}

}  // namespace tr
