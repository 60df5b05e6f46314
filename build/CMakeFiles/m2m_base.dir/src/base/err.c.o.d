CMakeFiles/m2m_base.dir/src/base/err.c.o: /work/main/src/base/err.c \
 /usr/include/stdc-predef.h /work/main/include/m2m/err.h
