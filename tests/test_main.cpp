// GoogleTest main for every nla test binary: MPI is initialised (tests may run under the
// launcher), and failures on any rank reach rank 0's output and the exit status.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

#include "nla/core/world.hpp"

int main(int argc, char** argv) {
  nla::MpiSession mpi(&argc, &argv);
  testing::InitGoogleTest(&argc, argv);
  if (nla::world_rank() != 0) {
    auto& listeners = testing::UnitTest::GetInstance()->listeners();
    // Other ranks print only failures, prefixed by their rank.
    delete listeners.Release(listeners.default_result_printer());
    struct FailurePrinter : testing::EmptyTestEventListener {
      void OnTestPartResult(const testing::TestPartResult& result) override {
        if (result.failed())
          std::fprintf(stderr, "[rank %d] %s:%d: %s\n", nla::world_rank(), result.file_name() ? result.file_name() : "?",
                       result.line_number(), result.summary());
      }
    };
    listeners.Append(new FailurePrinter);
  }
  int local = RUN_ALL_TESTS();
  int global = local;
  MPI_Allreduce(&local, &global, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return global;
}
