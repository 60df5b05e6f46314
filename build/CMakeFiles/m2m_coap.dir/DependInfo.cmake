
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/src/proto/coap/coap_block.c" "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_block.c.o" "gcc" "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_block.c.o.d"
  "/work/main/src/proto/coap/coap_client.c" "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_client.c.o" "gcc" "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_client.c.o.d"
  "/work/main/src/proto/coap/coap_codec.c" "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_codec.c.o" "gcc" "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_codec.c.o.d"
  "/work/main/src/proto/coap/coap_core.c" "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_core.c.o" "gcc" "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_core.c.o.d"
  "/work/main/src/proto/coap/coap_link.c" "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_link.c.o" "gcc" "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_link.c.o.d"
  "/work/main/src/proto/coap/coap_notify.c" "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_notify.c.o" "gcc" "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_notify.c.o.d"
  "/work/main/src/proto/coap/coap_observe.c" "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_observe.c.o" "gcc" "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_observe.c.o.d"
  "/work/main/src/proto/coap/coap_option.c" "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_option.c.o" "gcc" "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_option.c.o.d"
  "/work/main/src/proto/coap/coap_server.c" "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_server.c.o" "gcc" "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_server.c.o.d"
  "/work/main/src/proto/coap/coap_uri.c" "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_uri.c.o" "gcc" "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_uri.c.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  "/work/main/build/CMakeFiles/m2m_base.dir/DependInfo.cmake"
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
