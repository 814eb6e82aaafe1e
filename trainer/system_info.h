// `trainer info`: what this binary was built with and what it finds on this machine, the first
// thing to run on a new cluster node: the CUDA backend and its architectures, NCCL and MPI,
// the OpenMP threads, and each GPU with whether this build can train on it (fp32, bf16).
#pragma once

#include <string>

namespace tr {

// The report, one fact per line.
std::string system_info();

}  // namespace tr
