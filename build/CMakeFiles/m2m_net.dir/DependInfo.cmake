
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/src/net/addr.c" "CMakeFiles/m2m_net.dir/src/net/addr.c.o" "gcc" "CMakeFiles/m2m_net.dir/src/net/addr.c.o.d"
  "/work/main/src/net/coap_wire.c" "CMakeFiles/m2m_net.dir/src/net/coap_wire.c.o" "gcc" "CMakeFiles/m2m_net.dir/src/net/coap_wire.c.o.d"
  "/work/main/src/net/pump.c" "CMakeFiles/m2m_net.dir/src/net/pump.c.o" "gcc" "CMakeFiles/m2m_net.dir/src/net/pump.c.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  "/work/main/build/CMakeFiles/m2m_coap.dir/DependInfo.cmake"
  "/work/main/build/CMakeFiles/m2m_base.dir/DependInfo.cmake"
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
