file(REMOVE_RECURSE
  "libm2m_coap.a"
)
