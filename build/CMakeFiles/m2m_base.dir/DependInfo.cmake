
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/src/base/config.c" "CMakeFiles/m2m_base.dir/src/base/config.c.o" "gcc" "CMakeFiles/m2m_base.dir/src/base/config.c.o.d"
  "/work/main/src/base/cursor.c" "CMakeFiles/m2m_base.dir/src/base/cursor.c.o" "gcc" "CMakeFiles/m2m_base.dir/src/base/cursor.c.o.d"
  "/work/main/src/base/err.c" "CMakeFiles/m2m_base.dir/src/base/err.c.o" "gcc" "CMakeFiles/m2m_base.dir/src/base/err.c.o.d"
  "/work/main/src/base/heap.c" "CMakeFiles/m2m_base.dir/src/base/heap.c.o" "gcc" "CMakeFiles/m2m_base.dir/src/base/heap.c.o.d"
  "/work/main/src/base/hmap.c" "CMakeFiles/m2m_base.dir/src/base/hmap.c.o" "gcc" "CMakeFiles/m2m_base.dir/src/base/hmap.c.o.d"
  "/work/main/src/base/log.c" "CMakeFiles/m2m_base.dir/src/base/log.c.o" "gcc" "CMakeFiles/m2m_base.dir/src/base/log.c.o.d"
  "/work/main/src/base/prng.c" "CMakeFiles/m2m_base.dir/src/base/prng.c.o" "gcc" "CMakeFiles/m2m_base.dir/src/base/prng.c.o.d"
  "/work/main/src/base/utf8.c" "CMakeFiles/m2m_base.dir/src/base/utf8.c.o" "gcc" "CMakeFiles/m2m_base.dir/src/base/utf8.c.o.d"
  "/work/main/src/base/varint.c" "CMakeFiles/m2m_base.dir/src/base/varint.c.o" "gcc" "CMakeFiles/m2m_base.dir/src/base/varint.c.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
