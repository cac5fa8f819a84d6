#pragma once
// The program's version, as the build names it (the project version in CMakeLists.txt).

namespace rad {

extern const char* const kVersion;

}  // namespace rad
