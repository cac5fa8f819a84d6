# Project-wide compile flags. rad_set_warnings(target) is applied to every project target.
function(rad_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                                            -Wold-style-cast -Wcast-align -Wunused -Woverloaded-virtual
                                            -Wnull-dereference -Wimplicit-fallthrough -Werror=unused-result
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
