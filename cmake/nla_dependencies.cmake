# Every external dependency is found here and exposed as an imported target.

# ---- CUDA architectures: NLA_CUDA_ARCHITECTURES governs ours and LibTorch's --
# A CUDA LibTorch ignores CMAKE_CUDA_ARCHITECTURES (its config sets it OFF) and adds -gencode
# flags for TORCH_CUDA_ARCH_LIST to CMAKE_CUDA_FLAGS, probing the GPU when the list is unset
# (which fails or guesses on a build host without one). So the list is derived here, before
# find_package(Torch), unless the user set it (environment or -D).
# CMake spelling -> Torch spelling: 80 -> 8.0, 90a -> 9.0a, 100-real -> 10.0, 90-virtual -> 9.0+PTX.
function(nla_torch_cuda_arch_list cmake_architectures out_var)
  set(torch_list "")
  foreach(architecture IN LISTS cmake_architectures)
    if(architecture MATCHES "^([0-9]+)([0-9])([a-z]?)(-real|-virtual)?$")
      set(entry "${CMAKE_MATCH_1}.${CMAKE_MATCH_2}${CMAKE_MATCH_3}")
      if(CMAKE_MATCH_4 STREQUAL "-virtual")
        string(APPEND entry "+PTX")
      endif()
      list(APPEND torch_list "${entry}")
    else()  # native, all, all-major: no fixed list to give; LibTorch then probes the GPU
      set(torch_list "")
      break()
    endif()
  endforeach()
  set(${out_var} "${torch_list}" PARENT_SCOPE)
endfunction()

if(DEFINED TORCH_CUDA_ARCH_LIST)
  set(NLA_TORCH_CUDA_ARCH_LIST_SOURCE "set with -D")
elseif(DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(NLA_TORCH_CUDA_ARCH_LIST_SOURCE "from the environment")
  set(TORCH_CUDA_ARCH_LIST "$ENV{TORCH_CUDA_ARCH_LIST}")  # for the summary; Torch reads the same
elseif(NOT NLA_CUDA STREQUAL "OFF")
  nla_torch_cuda_arch_list("${NLA_CUDA_ARCHITECTURES}" TORCH_CUDA_ARCH_LIST)
  if(TORCH_CUDA_ARCH_LIST)
    set(NLA_TORCH_CUDA_ARCH_LIST_SOURCE "from NLA_CUDA_ARCHITECTURES")
  else()
    unset(TORCH_CUDA_ARCH_LIST)
    set(NLA_TORCH_CUDA_ARCH_LIST_SOURCE "unset (NLA_CUDA_ARCHITECTURES has no fixed list): LibTorch probes the GPU")
  endif()
endif()

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

# ---- OpenMP, as LibTorch's own ops use it ------------------------------------
# at::parallel_for is a header template: code of ours runs it on several threads only when
# compiled with OpenMP (without, it is a plain loop). Link the OpenMP runtime libtorch_cpu
# itself uses, so our parallel regions and ATen's share one thread pool: the pip wheels
# bundle theirs (torch/lib/libgomp-<hash>.so.1), Debian's libtorch uses the system libgomp.
find_package(OpenMP REQUIRED COMPONENTS CXX)
add_library(nla_openmp INTERFACE)
file(GLOB _nla_torch_gomp "${TORCH_INSTALL_PREFIX}/lib/libgomp*.so*")
if(_nla_torch_gomp)
  list(GET _nla_torch_gomp 0 NLA_OPENMP_RUNTIME)
  separate_arguments(_nla_openmp_flags UNIX_COMMAND "${OpenMP_CXX_FLAGS}")
  target_compile_options(nla_openmp INTERFACE ${_nla_openmp_flags})
  target_link_libraries(nla_openmp INTERFACE "${NLA_OPENMP_RUNTIME}")
else()
  set(NLA_OPENMP_RUNTIME "${OpenMP_CXX_LIBRARIES}")
  target_link_libraries(nla_openmp INTERFACE OpenMP::OpenMP_CXX)
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
# CONFIG: Boost >= 1.70 installs BoostConfig.cmake, and CMake >= 3.30 has no FindBoost (CMP0167).
find_package(Boost 1.74 CONFIG REQUIRED COMPONENTS program_options)
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
  # A CUDA LibTorch has enabled CUDA already, set CMAKE_CUDA_ARCHITECTURES OFF and put its
  # -gencode flags (TORCH_CUDA_ARCH_LIST above) in CMAKE_CUDA_FLAGS; a CPU LibTorch has not.
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    # `native` fails on machines without a GPU (build hosts, CI).
    set(CMAKE_CUDA_ARCHITECTURES ${NLA_CUDA_ARCHITECTURES})
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)

  # NCCL has no CMake config. Searched in this order: NCCL_HOME / NCCL_ROOT (-D or
  # environment); the pip wheel's nvidia/<package>/ beside the torch of Torch_DIR
  # (<site-packages>/torch/share/cmake/Torch), i.e. the very NCCL LibTorch loads; the CUDA
  # toolkit. A wheel ships only libnccl.so.2, hence that second name.
  set(_nla_nccl_roots "")
  foreach(_root IN ITEMS "${NCCL_HOME}" "$ENV{NCCL_HOME}" "${NCCL_ROOT}" "$ENV{NCCL_ROOT}")
    if(_root)
      list(APPEND _nla_nccl_roots "${_root}")
    endif()
  endforeach()
  get_filename_component(_nla_site_packages "${Torch_DIR}/../../../.." ABSOLUTE)
  file(GLOB _nla_wheel_nccl_libraries "${_nla_site_packages}/nvidia/*/lib/libnccl.so*")
  foreach(_library IN LISTS _nla_wheel_nccl_libraries)
    get_filename_component(_root "${_library}/../.." ABSOLUTE)
    list(APPEND _nla_nccl_roots "${_root}")
  endforeach()
  list(REMOVE_DUPLICATES _nla_nccl_roots)
  find_library(NLA_NCCL_LIBRARY NAMES nccl libnccl.so.2 NAMES_PER_DIR HINTS ${_nla_nccl_roots} ${CUDAToolkit_LIBRARY_DIR}
               PATH_SUFFIXES lib lib64 DOC "NCCL library (libnccl.so or a wheel's libnccl.so.2)")
  if(NLA_NCCL_LIBRARY)
    # The header from the library's own root first, so the two cannot come from different NCCLs.
    get_filename_component(_nla_nccl_library_root "${NLA_NCCL_LIBRARY}/../.." ABSOLUTE)
    find_path(NLA_NCCL_INCLUDE_DIR nccl.h HINTS "${_nla_nccl_library_root}" ${_nla_nccl_roots}
              ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES include DOC "folder of nccl.h")
  endif()
  if(NOT NLA_NCCL_LIBRARY OR NOT NLA_NCCL_INCLUDE_DIR)
    message(FATAL_ERROR
      "NLA_CUDA is on but NCCL was not found (library: ${NLA_NCCL_LIBRARY}, nccl.h: "
      "${NLA_NCCL_INCLUDE_DIR}). Searched NCCL_HOME/NCCL_ROOT, the pip wheel's "
      "${_nla_site_packages}/nvidia/*/ and the CUDA toolkit ${CUDAToolkit_LIBRARY_DIR}; "
      "set NCCL_HOME to a folder holding lib/libnccl.so(.2) and include/nccl.h.")
  endif()
  set(NLA_NCCL_VERSION "")
  file(STRINGS "${NLA_NCCL_INCLUDE_DIR}/nccl.h" _nla_nccl_defines REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) +[0-9]+")
  foreach(_part MAJOR MINOR PATCH)
    if(_nla_nccl_defines MATCHES "NCCL_${_part} +([0-9]+)")
      list(APPEND NLA_NCCL_VERSION "${CMAKE_MATCH_1}")
    endif()
  endforeach()
  list(JOIN NLA_NCCL_VERSION "." NLA_NCCL_VERSION)
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
