# Compiler launcher, linker and warnings. Build time is part of the product.
if(NLA_CCACHE)
  find_program(NLA_CCACHE_PROGRAM ccache)
  if(NLA_CCACHE_PROGRAM)
    set(CMAKE_C_COMPILER_LAUNCHER ${NLA_CCACHE_PROGRAM})
    set(CMAKE_CXX_COMPILER_LAUNCHER ${NLA_CCACHE_PROGRAM})
    set(CMAKE_CUDA_COMPILER_LAUNCHER ${NLA_CCACHE_PROGRAM})
  endif()
endif()
if(NLA_MOLD)
  find_program(NLA_MOLD_PROGRAM mold)
  if(NLA_MOLD_PROGRAM)
    add_link_options(-fuse-ld=mold)
  endif()
endif()

# Warnings for our own targets only (third-party headers come in as SYSTEM).
add_library(nla_warnings INTERFACE)
target_compile_options(nla_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)
