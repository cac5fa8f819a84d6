# Hardening of the shipped program, for every object of the build: the libraries are linked into the
# executables, and the tests run the same objects. A stack protector, glibc's checked string and memory
# functions (_FORTIFY_SOURCE), a position-independent executable and full RELRO, the fast-path program
# included.
#
# A sanitizer or fuzz build (sanitizers.cmake) is never shipped and leaves _FORTIFY_SOURCE out: the sanitizer
# runtimes do not intercept glibc's __*_chk functions, so fortified calls would hide from them the overflows
# they are run to find (https://github.com/google/sanitizers/issues/247).
if(RAD_SANITIZE OR RAD_SANITIZE_THREAD OR RAD_FUZZ)
  add_compile_options(-fstack-protector-strong -fPIE)
else()
  add_compile_options(-fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE)
endif()
add_link_options(-pie -Wl,-z,relro,-z,now)
