# Writes the version header from `git describe` of the source tree. Run at configure time
# (include) and before every build (cmake -P, target nla_version), so that the version an
# output records names the commit the binary was built from, not the one it was configured
# at. configure_file rewrites the header only when its text changes: a build at the same
# commit recompiles nothing.
#   Variables: NLA_SOURCE_DIR, NLA_VERSION_INPUT, NLA_VERSION_OUTPUT, PROJECT_VERSION,
#   PROJECT_SOURCE_DIR.
execute_process(COMMAND git describe --always --dirty --abbrev=10
                WORKING_DIRECTORY ${NLA_SOURCE_DIR}
                OUTPUT_VARIABLE NLA_GIT_DESCRIBE OUTPUT_STRIP_TRAILING_WHITESPACE
                ERROR_QUIET)
if(NOT NLA_GIT_DESCRIBE)
  set(NLA_GIT_DESCRIBE "unknown")
endif()
configure_file(${NLA_VERSION_INPUT} ${NLA_VERSION_OUTPUT} @ONLY)
