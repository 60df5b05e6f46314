file(REMOVE_RECURSE
  "libm2m_server.a"
)
