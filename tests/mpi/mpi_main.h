// main() for tests run under `mpirun -np N`: one ParallelRuntime for the whole process, and
// only rank 0 prints (and writes) gtest's report (every rank still asserts; any failure fails the
// job).
#pragma once

#include <gtest/gtest.h>

#include "parallel/runtime.h"

namespace tr::testing {

inline ParallelRuntime* g_runtime = nullptr;

inline int run_mpi_tests(int argc, char** argv) {
  ParallelRuntime runtime(&argc, &argv);
  g_runtime = &runtime;
  ::testing::InitGoogleTest(&argc, argv);
  if (runtime.world_rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    // --gtest_output names one file for the job: rank 0's report alone (the exit status
    // below carries every rank's failures).
    delete listeners.Release(listeners.default_xml_generator());
  }
  int failed = RUN_ALL_TESTS();
  // Every rank must agree on the outcome, or mpirun would report success for rank 0 only.
  failed = static_cast<int>(
      runtime.world().all_reduce_scalar(static_cast<std::int64_t>(failed), ReduceOp::max));
  g_runtime = nullptr;
  return failed;
}

}  // namespace tr::testing

#define TR_MPI_TEST_MAIN                           \
  int main(int argc, char** argv) {                \
    return tr::testing::run_mpi_tests(argc, argv); \
  }
