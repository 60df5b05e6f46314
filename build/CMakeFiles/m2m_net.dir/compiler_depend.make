# Empty compiler generated dependencies file for m2m_net.
# This may be replaced when dependencies are built.
