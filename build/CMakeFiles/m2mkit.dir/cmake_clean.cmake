file(REMOVE_RECURSE
  "CMakeFiles/m2mkit.dir/src/cli/main.c.o"
  "CMakeFiles/m2mkit.dir/src/cli/main.c.o.d"
  "m2mkit"
  "m2mkit.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/m2mkit.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
