# Warnings: rad_set_warnings(target) is applied to every project target, one by one, so that the warning set
# (and -Werror with RAD_WERROR) holds our code only. Sanitizers are in sanitizers.cmake, hardening flags in
# hardening.cmake.
# -Wnull-dereference is left out on purpose: with g++ 12 at -O2 it fires on inlined libstdc++ and Boost.Asio
# code (shared_ptr, vector, io_context) that is not ours, which -Werror would turn into a broken build.
option(RAD_WERROR "Treat warnings as errors" OFF)

function(rad_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                                            -Wold-style-cast -Wcast-align -Wunused -Woverloaded-virtual
                                            -Wimplicit-fallthrough -Werror=unused-result
                                            -Werror=return-type)
  if(RAD_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
