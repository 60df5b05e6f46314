# Empty dependencies file for m2m_server.
# This may be replaced when dependencies are built.
