// Test entry point: the same process setup as tfcpp (passive OpenMP waiting, a correct OpenBLAS kernel, threads).
#include "transformers/runtime.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

int main(int argc, char** argv) {
  if (!std::getenv("TFCPP_REEXEC") && transformers::prepare_environment()) {
    setenv("TFCPP_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
  }
  transformers::init_runtime();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
