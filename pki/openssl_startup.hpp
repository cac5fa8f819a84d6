#pragma once
// start_openssl initialises OpenSSL at the start of an executable that uses it. Call it once, first thing
// in main(); every later OpenSSL call works as it would without it.

namespace rad::pki {

void start_openssl() noexcept;

}  // namespace rad::pki
