
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/src/server/coap_service.c" "CMakeFiles/m2m_server.dir/src/server/coap_service.c.o" "gcc" "CMakeFiles/m2m_server.dir/src/server/coap_service.c.o.d"
  "/work/main/src/server/conf.c" "CMakeFiles/m2m_server.dir/src/server/conf.c.o" "gcc" "CMakeFiles/m2m_server.dir/src/server/conf.c.o.d"
  "/work/main/src/server/resources.c" "CMakeFiles/m2m_server.dir/src/server/resources.c.o" "gcc" "CMakeFiles/m2m_server.dir/src/server/resources.c.o.d"
  "/work/main/src/server/serve.c" "CMakeFiles/m2m_server.dir/src/server/serve.c.o" "gcc" "CMakeFiles/m2m_server.dir/src/server/serve.c.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  "/work/main/build/CMakeFiles/m2m_net.dir/DependInfo.cmake"
  "/work/main/build/CMakeFiles/m2m_coap.dir/DependInfo.cmake"
  "/work/main/build/CMakeFiles/m2m_base.dir/DependInfo.cmake"
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
