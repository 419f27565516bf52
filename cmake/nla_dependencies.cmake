# Every external dependency is found here and exposed as an imported target.

# ---- LibTorch (1.13 CPU from Debian, or 2.x with CUDA on clusters) ---------
find_package(Torch REQUIRED)
# Torch's config exports the plain `torch` target; wrap it so include dirs are SYSTEM.
add_library(nla_torch INTERFACE)
target_link_libraries(nla_torch INTERFACE ${TORCH_LIBRARIES})
target_include_directories(nla_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
separate_arguments(_nla_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
target_compile_options(nla_torch INTERFACE ${_nla_torch_flags})
if(TORCH_CUDA_LIBRARIES OR TARGET torch_cuda)
  set(NLA_TORCH_HAS_CUDA TRUE)
else()
  set(NLA_TORCH_HAS_CUDA FALSE)
endif()

# ---- MPI --------------------------------------------------------------------
set(MPI_CXX_SKIP_MPICXX ON)   # the deprecated C++ bindings break the link
find_package(MPI REQUIRED COMPONENTS C CXX)

# ---- parallel HDF5 ----------------------------------------------------------
set(HDF5_PREFER_PARALLEL TRUE)
find_package(HDF5 REQUIRED COMPONENTS C)
if(NOT HDF5_IS_PARALLEL)
  message(FATAL_ERROR
    "nla needs a parallel (MPI-IO) HDF5, but the HDF5 found is serial "
    "(${HDF5_C_LIBRARIES}). On Debian/Ubuntu install libhdf5-openmpi-dev, or point "
    "HDF5_ROOT / HDF5_C_COMPILER_EXECUTABLE at an h5pcc of a parallel build.")
endif()
add_library(nla_hdf5 INTERFACE)
target_link_libraries(nla_hdf5 INTERFACE ${HDF5_C_LIBRARIES} MPI::MPI_C)
target_include_directories(nla_hdf5 SYSTEM INTERFACE ${HDF5_C_INCLUDE_DIRS})
target_compile_definitions(nla_hdf5 INTERFACE ${HDF5_C_DEFINITIONS})

# ---- Boost.Program_options, nlohmann-json -----------------------------------
find_package(Boost 1.74 REQUIRED COMPONENTS program_options)
find_package(nlohmann_json 3.10 REQUIRED)

# ---- PCRE2, utf8proc, yaml-cpp (pkg-config; Debian ships no CMake configs for the first two)
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
find_package(yaml-cpp REQUIRED)

# ---- GoogleTest --------------------------------------------------------------
if(NLA_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()

# ---- CUDA, cuBLAS, NCCL (only with a CUDA LibTorch, unless forced) -----------
set(NLA_WITH_CUDA FALSE)
if(NLA_CUDA STREQUAL "ON" OR (NLA_CUDA STREQUAL "AUTO" AND NLA_TORCH_HAS_CUDA))
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    # `native` fails on machines without a GPU (build hosts, CI).
    set(CMAKE_CUDA_ARCHITECTURES ${NLA_CUDA_ARCHITECTURES})
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  find_library(NLA_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} $ENV{NCCL_HOME}/lib
               PATH_SUFFIXES lib lib64)
  find_path(NLA_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} $ENV{NCCL_HOME}/include)
  if(NOT NLA_NCCL_LIBRARY OR NOT NLA_NCCL_INCLUDE_DIR)
    message(FATAL_ERROR "NLA_CUDA is on but NCCL was not found (set NCCL_HOME)")
  endif()
  add_library(nla_nccl UNKNOWN IMPORTED)
  set_target_properties(nla_nccl PROPERTIES IMPORTED_LOCATION ${NLA_NCCL_LIBRARY}
                        INTERFACE_INCLUDE_DIRECTORIES ${NLA_NCCL_INCLUDE_DIR})
  add_library(nla_cuda_deps INTERFACE)
  target_link_libraries(nla_cuda_deps INTERFACE CUDA::cudart CUDA::cublas nla_nccl)
  target_compile_definitions(nla_cuda_deps INTERFACE NLA_WITH_CUDA=1)
  set(NLA_WITH_CUDA TRUE)
elseif(NLA_CUDA STREQUAL "AUTO" OR NLA_CUDA STREQUAL "OFF")
  add_library(nla_cuda_deps INTERFACE)
else()
  message(FATAL_ERROR "NLA_CUDA must be AUTO, ON or OFF (got '${NLA_CUDA}')")
endif()

# ---- tools used by tests (optional) ------------------------------------------
find_program(NLA_NODE node)
set(NLA_SYSTEM_PYTHON /usr/bin/python3 CACHE FILEPATH "Python with Debian's numpy/scipy/h5py")
