#include "parallel/process_grid.h"

#include <string>

#include "layers/error.h"

namespace tr {

ProcessGrid ProcessGrid::make(int world_size, int world_rank, int tensor, int data) {
  if (tensor < 1) throw UserError("parallel.tensor: expected >= 1, got " + std::to_string(tensor));
  if (data < 1) throw UserError("parallel.data: expected >= 1, got " + std::to_string(data));
  if (tensor * data != world_size)
    throw UserError("parallel.tensor " + std::to_string(tensor) + " x parallel.data " +
                    std::to_string(data) + " = " + std::to_string(tensor * data) +
                    " ranks, but the job has " + std::to_string(world_size) +
                    " (mpirun -np); use parallel.data: auto or change the process count");
  ProcessGrid g;
  g.world_size = world_size;
  g.world_rank = world_rank;
  g.tp_size = tensor;
  g.dp_size = data;
  g.tp_rank = world_rank % tensor;
  g.dp_rank = world_rank / tensor;
  return g;
}

}  // namespace tr
