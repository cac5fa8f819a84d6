// rolesanywhere-agent: entry point. Process-wide protections first, then the command line.

#include <sys/prctl.h>
#include <sys/resource.h>

#include <cstdio>
#include <exception>

#include "common/error.hpp"
#include "daemon/cli.hpp"

int main(int argc, char** argv) {
    // Keys and credentials live in this process's memory: no core dumps, no ptrace by same-uid processes.
    struct rlimit no_core {
        0, 0
    };
    (void)setrlimit(RLIMIT_CORE, &no_core);
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    try {
        return rad::daemon::run_cli(argc, argv);
    } catch (const rad::ResultError& e) {
        std::fprintf(stderr, "rolesanywhere-agent: %s\n", e.what());
        return rad::exit_code(e.error().code);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "rolesanywhere-agent: internal error: %s\n", e.what());
        return 70;
    }
}
