# Empty compiler generated dependencies file for m2mkit.
# This may be replaced when dependencies are built.
