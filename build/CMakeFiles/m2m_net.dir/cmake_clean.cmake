file(REMOVE_RECURSE
  "CMakeFiles/m2m_net.dir/src/net/addr.c.o"
  "CMakeFiles/m2m_net.dir/src/net/addr.c.o.d"
  "CMakeFiles/m2m_net.dir/src/net/coap_wire.c.o"
  "CMakeFiles/m2m_net.dir/src/net/coap_wire.c.o.d"
  "CMakeFiles/m2m_net.dir/src/net/pump.c.o"
  "CMakeFiles/m2m_net.dir/src/net/pump.c.o.d"
  "libm2m_net.a"
  "libm2m_net.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/m2m_net.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
