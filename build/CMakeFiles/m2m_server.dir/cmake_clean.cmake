file(REMOVE_RECURSE
  "CMakeFiles/m2m_server.dir/src/server/coap_service.c.o"
  "CMakeFiles/m2m_server.dir/src/server/coap_service.c.o.d"
  "libm2m_server.a"
  "libm2m_server.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/m2m_server.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
