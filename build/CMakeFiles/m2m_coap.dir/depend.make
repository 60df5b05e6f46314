# Empty dependencies file for m2m_coap.
# This may be replaced when dependencies are built.
