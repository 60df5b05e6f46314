file(REMOVE_RECURSE
  "CMakeFiles/m2mkit.dir/bench/coap/loadgen.c.o"
  "CMakeFiles/m2mkit.dir/bench/coap/loadgen.c.o.d"
  "CMakeFiles/m2mkit.dir/src/cli/cmd_coap.c.o"
  "CMakeFiles/m2mkit.dir/src/cli/cmd_coap.c.o.d"
  "CMakeFiles/m2mkit.dir/src/cli/cmd_serve.c.o"
  "CMakeFiles/m2mkit.dir/src/cli/cmd_serve.c.o.d"
  "CMakeFiles/m2mkit.dir/src/cli/log_stderr.c.o"
  "CMakeFiles/m2mkit.dir/src/cli/log_stderr.c.o.d"
  "CMakeFiles/m2mkit.dir/src/cli/main.c.o"
  "CMakeFiles/m2mkit.dir/src/cli/main.c.o.d"
  "CMakeFiles/m2mkit.dir/src/cli/pretty.c.o"
  "CMakeFiles/m2mkit.dir/src/cli/pretty.c.o.d"
  "m2mkit"
  "m2mkit.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/m2mkit.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
