# Empty compiler generated dependencies file for m2m_base.
# This may be replaced when dependencies are built.
