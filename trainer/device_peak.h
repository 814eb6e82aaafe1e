// Dense peak FLOP rates of the GPUs the MFU metric knows, from NVIDIA's data sheets: the
// denominator of each metrics row's `mfu`, and of bench/gpu_compare.py's (train_step reports it).
#pragma once

#include <string>

namespace tr {

// TFLOP/s of `gpu_name` (as the CUDA runtime names it) for `precision` ("fp32": without
// tensor cores, as the fp32 path's CUBLAS_COMPUTE_32F GEMMs run; "bf16": dense tensor cores);
// 0 for a GPU or precision not in the table (then no mfu is logged).
double dense_peak_tflops(const std::string& gpu_name, const std::string& precision);

}  // namespace tr
