#include "cli/blas_tuning.h"

#include <dlfcn.h>
#include <strings.h>
#include <unistd.h>

#include <cstdlib>

namespace lema::cli {

void tune_openblas(char** argv) {
  using CoreName = char* (*)();
  using SetThreads = void (*)(int);
  const auto core_name = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (core_name == nullptr) return;
  if (std::getenv("OPENBLAS_CORETYPE") == nullptr) {
    const char* name = core_name();
    const char* better = nullptr;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
      better = "SkylakeX";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      better = "Haswell";
    }
#endif
    if (name != nullptr && strcasecmp(name, "prescott") == 0 && better != nullptr) {
      setenv("OPENBLAS_CORETYPE", better, 1);
      execv("/proc/self/exe", argv);  // only returns on failure: go on as we are
    }
  }
  const auto set_threads = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set_threads != nullptr && std::getenv("OPENBLAS_NUM_THREADS") == nullptr) set_threads(1);
}

}  // namespace lema::cli
