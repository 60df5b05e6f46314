
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/bench/coap/loadgen.c" "CMakeFiles/m2mkit.dir/bench/coap/loadgen.c.o" "gcc" "CMakeFiles/m2mkit.dir/bench/coap/loadgen.c.o.d"
  "/work/main/src/cli/cmd_coap.c" "CMakeFiles/m2mkit.dir/src/cli/cmd_coap.c.o" "gcc" "CMakeFiles/m2mkit.dir/src/cli/cmd_coap.c.o.d"
  "/work/main/src/cli/cmd_serve.c" "CMakeFiles/m2mkit.dir/src/cli/cmd_serve.c.o" "gcc" "CMakeFiles/m2mkit.dir/src/cli/cmd_serve.c.o.d"
  "/work/main/src/cli/log_stderr.c" "CMakeFiles/m2mkit.dir/src/cli/log_stderr.c.o" "gcc" "CMakeFiles/m2mkit.dir/src/cli/log_stderr.c.o.d"
  "/work/main/src/cli/main.c" "CMakeFiles/m2mkit.dir/src/cli/main.c.o" "gcc" "CMakeFiles/m2mkit.dir/src/cli/main.c.o.d"
  "/work/main/src/cli/pretty.c" "CMakeFiles/m2mkit.dir/src/cli/pretty.c.o" "gcc" "CMakeFiles/m2mkit.dir/src/cli/pretty.c.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  "/work/main/build/CMakeFiles/m2m_server.dir/DependInfo.cmake"
  "/work/main/build/CMakeFiles/m2m_net.dir/DependInfo.cmake"
  "/work/main/build/CMakeFiles/m2m_coap.dir/DependInfo.cmake"
  "/work/main/build/CMakeFiles/m2m_base.dir/DependInfo.cmake"
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
