file(REMOVE_RECURSE
  "CMakeFiles/m2m_server.dir/src/server/coap_service.c.o"
  "CMakeFiles/m2m_server.dir/src/server/coap_service.c.o.d"
  "CMakeFiles/m2m_server.dir/src/server/conf.c.o"
  "CMakeFiles/m2m_server.dir/src/server/conf.c.o.d"
  "CMakeFiles/m2m_server.dir/src/server/resources.c.o"
  "CMakeFiles/m2m_server.dir/src/server/resources.c.o.d"
  "CMakeFiles/m2m_server.dir/src/server/serve.c.o"
  "CMakeFiles/m2m_server.dir/src/server/serve.c.o.d"
  "libm2m_server.a"
  "libm2m_server.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/m2m_server.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
