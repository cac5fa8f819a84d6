// rolesanywhere-agent-core: the whole program (daemon/fast_path_main.cpp execs it). Process-wide protections
// first, then the command line.

#include <cstdio>
#include <exception>

#include "common/error.hpp"
#include "common/process_protection.hpp"
#include "daemon/cli/cli.hpp"
#include "pki/openssl_startup.hpp"

int main(int argc, char** argv) {
    rad::protect_process_memory();
    rad::pki::start_openssl();
    try {
        return rad::cli::run_cli(argc, argv);
    } catch (const rad::ResultError& e) {
        std::fprintf(stderr, "rolesanywhere-agent: %s\n", e.what());
        return rad::exit_code(e.error().code);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "rolesanywhere-agent: internal error: %s\n", e.what());
        return 70;
    }
}
