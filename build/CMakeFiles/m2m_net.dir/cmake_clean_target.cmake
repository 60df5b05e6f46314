file(REMOVE_RECURSE
  "libm2m_net.a"
)
