file(REMOVE_RECURSE
  "CMakeFiles/m2m_base.dir/src/base/config.c.o"
  "CMakeFiles/m2m_base.dir/src/base/config.c.o.d"
  "CMakeFiles/m2m_base.dir/src/base/cursor.c.o"
  "CMakeFiles/m2m_base.dir/src/base/cursor.c.o.d"
  "CMakeFiles/m2m_base.dir/src/base/err.c.o"
  "CMakeFiles/m2m_base.dir/src/base/err.c.o.d"
  "CMakeFiles/m2m_base.dir/src/base/heap.c.o"
  "CMakeFiles/m2m_base.dir/src/base/heap.c.o.d"
  "CMakeFiles/m2m_base.dir/src/base/hmap.c.o"
  "CMakeFiles/m2m_base.dir/src/base/hmap.c.o.d"
  "CMakeFiles/m2m_base.dir/src/base/log.c.o"
  "CMakeFiles/m2m_base.dir/src/base/log.c.o.d"
  "CMakeFiles/m2m_base.dir/src/base/prng.c.o"
  "CMakeFiles/m2m_base.dir/src/base/prng.c.o.d"
  "CMakeFiles/m2m_base.dir/src/base/utf8.c.o"
  "CMakeFiles/m2m_base.dir/src/base/utf8.c.o.d"
  "CMakeFiles/m2m_base.dir/src/base/varint.c.o"
  "CMakeFiles/m2m_base.dir/src/base/varint.c.o.d"
  "libm2m_base.a"
  "libm2m_base.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/m2m_base.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
