# Project-wide compile flags. rad_set_warnings(target) is applied to every project target.
# -Wnull-dereference is left out on purpose: with g++ 12 at -O2 it fires on inlined libstdc++ and Boost.Asio
# code (shared_ptr, vector, io_context) that is not ours, which -Werror would turn into a broken build.
function(rad_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                                            -Wold-style-cast -Wcast-align -Wunused -Woverloaded-virtual
                                            -Wimplicit-fallthrough -Werror=unused-result
                                            -Werror=return-type)
  if(RAD_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

if(RAD_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# Hardening for the shipped binary.
add_compile_options(-fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE)
add_link_options(-pie -Wl,-z,relro,-z,now)
