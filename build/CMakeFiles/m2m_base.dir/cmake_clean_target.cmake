file(REMOVE_RECURSE
  "libm2m_base.a"
)
