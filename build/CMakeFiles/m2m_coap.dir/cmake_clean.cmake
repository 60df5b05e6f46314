file(REMOVE_RECURSE
  "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_block.c.o"
  "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_block.c.o.d"
  "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_client.c.o"
  "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_client.c.o.d"
  "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_codec.c.o"
  "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_codec.c.o.d"
  "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_core.c.o"
  "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_core.c.o.d"
  "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_link.c.o"
  "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_link.c.o.d"
  "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_notify.c.o"
  "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_notify.c.o.d"
  "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_observe.c.o"
  "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_observe.c.o.d"
  "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_option.c.o"
  "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_option.c.o.d"
  "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_server.c.o"
  "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_server.c.o.d"
  "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_uri.c.o"
  "CMakeFiles/m2m_coap.dir/src/proto/coap/coap_uri.c.o.d"
  "libm2m_coap.a"
  "libm2m_coap.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/m2m_coap.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
