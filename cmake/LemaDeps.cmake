# Third-party dependencies. Debian 12 packages on CPU machines; on the GPU
# machine the same packages unpacked from .deb files (shared/device) plus the
# LibTorch inside PyTorch (CMAKE_PREFIX_PATH from torch.utils.cmake_prefix_path).
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(SQLiteCpp REQUIRED)
find_package(cppzmq REQUIRED)
find_package(CLI11 REQUIRED)

pkg_check_modules(TOMLPP REQUIRED IMPORTED_TARGET tomlplusplus)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
# Unicode normalization (NFC...) for tokenizer.json normalizers; lema_text only.
pkg_check_modules(ICU_UC REQUIRED IMPORTED_TARGET icu-uc)
# Only executables that never link LibTorch may use it: both bring their own
# protobuf, and the two copies clash in one process.
pkg_check_modules(SENTENCEPIECE IMPORTED_TARGET sentencepiece)

# msgpack-c++ is header-only; its CMake config wants Boost, which we do not use.
find_path(MSGPACK_INCLUDE_DIR msgpack.hpp REQUIRED)
add_library(lema_msgpack INTERFACE)
target_include_directories(lema_msgpack SYSTEM INTERFACE ${MSGPACK_INCLUDE_DIR})
target_compile_definitions(lema_msgpack INTERFACE MSGPACK_NO_BOOST)

if(LEMA_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()

if(LEMA_ENABLE_ENGINE)
  find_package(Torch REQUIRED)
  # CUDA is on when the LibTorch found was built with it (PyTorch on the GPU
  # machine); LEMA_CUDA=OFF forces a CPU build against a CUDA LibTorch.
  set(LEMA_TORCH_HAS_CUDA OFF)
  if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES OR CUDA_FOUND)
    set(LEMA_TORCH_HAS_CUDA ON)
  endif()
  option(LEMA_CUDA "Build the engine with CUDA" ${LEMA_TORCH_HAS_CUDA})
  message(STATUS "lema: LibTorch ${Torch_VERSION}, CUDA ${LEMA_CUDA}")
  if(LEMA_CUDA)
    # engine/cuda/*.cu (lema's own kernels); enabled here, at the top
    # directory's scope, because every executable links them.
    enable_language(CUDA)
  endif()
endif()
