// OpenBLAS settings for the CPU path, applied once at the start of `lema`
// (Debian's LibTorch does its GEMMs in OpenBLAS; docs/DEMO.md has the
// measurements behind both settings).
#pragma once

namespace lema::cli {

// 1. OpenBLAS 0.3.21 takes a CPU it does not know (Sapphire Rapids behind a
//    hypervisor) for a Prescott and runs SSE3 kernels. When it reports
//    Prescott on a CPU with AVX2/AVX-512, this sets OPENBLAS_CORETYPE
//    (Haswell or SkylakeX) and re-executes the binary once, since OpenBLAS
//    reads it only when it loads. An OPENBLAS_CORETYPE already set is left.
// 2. OpenBLAS's own threads spin against LibTorch's OpenMP threads on the
//    same cores: OpenBLAS gets one thread (LibTorch parallelises around it)
//    unless OPENBLAS_NUM_THREADS says otherwise.
// Nothing happens when the BLAS is not OpenBLAS. Returns only if it did not
// re-execute.
void tune_openblas(char** argv);

}  // namespace lema::cli
