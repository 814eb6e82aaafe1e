// The tensor-parallel group of layers/tensor_parallel.h over a Communicator (the TP group of
// the process grid): what the sharded modules of layers/ and models/ communicate through.
#pragma once

#include <memory>

#include "layers/tensor_parallel.h"
#include "parallel/communicator.h"

namespace tr {

// `comm` must outlive the returned group.
std::unique_ptr<TensorParallel> make_tensor_parallel(Communicator& comm);

}  // namespace tr
