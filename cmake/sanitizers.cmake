# Sanitizer builds, each in its own build directory (they cannot be mixed): AddressSanitizer with
# UndefinedBehaviorSanitizer for the unit and integration tests, ThreadSanitizer for the daemon's threaded
# tests, and the libFuzzer build of tests/fuzz. The flags go to every object of the build, the libraries the
# tests link included, so they are set for the whole directory tree.

option(RAD_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
option(RAD_SANITIZE_THREAD "Build with ThreadSanitizer" OFF)
option(RAD_FUZZ "Build the libFuzzer targets of tests/fuzz (clang only) with ASan + UBSan" OFF)
set(RAD_FUZZ_SECONDS 20 CACHE STRING "How long each fuzz target runs under ctest -L fuzz, in seconds")
set(RAD_FUZZ_SEED 0 CACHE STRING "libFuzzer -seed for ctest -L fuzz (0: a new seed every run)")

if(RAD_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

if(RAD_SANITIZE_THREAD)
  if(RAD_SANITIZE OR RAD_FUZZ)
    message(FATAL_ERROR "RAD_SANITIZE_THREAD cannot be combined with RAD_SANITIZE or RAD_FUZZ")
  endif()
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # g++ warns (-Wtsan) on every std::atomic_thread_fence, which Boost.Asio uses: TSan does not model fences.
    # The warning is about false positives TSan might report, not a defect, and -Werror would stop the build.
    add_compile_options(-Wno-tsan)
  endif()
endif()

if(RAD_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "RAD_FUZZ needs clang (libFuzzer): configure with CXX=clang++-14 (see scripts/fuzz)")
  endif()
  if(RAD_SANITIZE)
    message(FATAL_ERROR "RAD_FUZZ already turns on ASan and UBSan; leave RAD_SANITIZE off")
  endif()
  # Every project library gets coverage instrumentation (fuzzer-no-link) and the sanitizers; only the fuzz
  # targets link libFuzzer itself (tests/fuzz/CMakeLists.txt). UBSan findings abort, so libFuzzer sees them.
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
