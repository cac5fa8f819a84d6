#include "common/version.hpp"

#ifndef RAD_VERSION
#define RAD_VERSION "0.0.0"
#endif

namespace rad {

const char* const kVersion = RAD_VERSION;

}  // namespace rad
