// Error checks of CUDA and cuBLASLt calls: a failure is an internal fault (exit 1) naming the
// call, its file and line.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "layers/error.h"

#define TR_CUDA_CHECK(call)                                                              \
  do {                                                                                   \
    const cudaError_t tr_err_ = (call);                                                  \
    if (tr_err_ != cudaSuccess)                                                          \
      throw ::tr::InternalError(std::string(__FILE__) + ":" + std::to_string(__LINE__) + \
                                ": " #call ": " + cudaGetErrorString(tr_err_));          \
  } while (0)

#define TR_CUBLAS_CHECK(call)                                                            \
  do {                                                                                   \
    const cublasStatus_t tr_st_ = (call);                                                \
    if (tr_st_ != CUBLAS_STATUS_SUCCESS)                                                 \
      throw ::tr::InternalError(std::string(__FILE__) + ":" + std::to_string(__LINE__) + \
                                ": " #call ": cuBLAS status " + std::to_string(tr_st_)); \
  } while (0)

// After a kernel launch: reports launch errors (bad configuration) at once; faults inside the
// kernel surface at the next synchronising call.
#define TR_CUDA_LAUNCH_CHECK() TR_CUDA_CHECK(cudaGetLastError())
