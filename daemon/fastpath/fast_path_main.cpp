// rolesanywhere-agent: the command users and AWS SDKs run. It answers the credential_process fast path
// (`credential-process --profile NAME`, an SDK's every credential fetch) from the running agent with the
// code the full program runs for it (fast_path.cpp), and hands every other command line, unchanged and in
// the same process, to the full program (rolesanywhere-agent-core) with execv: so does a fast path that no
// agent answers and that may sign by itself. The same PID continues as the full program, so `serve` under
// systemd (Type=notify, NotifyAccess=main) and every exit code and message of the other commands are the
// full program's own.
//
// Why two executables: the full program maps libcrypto, libssl and the rest (about 3 ms of a cold start
// here, before any work); this one maps the C library only (libstdc++ is linked in statically, saving the
// 1,800 symbol relocations that loading it costs at each start), so that an answer from the agent costs
// little more than starting an empty process. bench/run measures both.

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <string>

#include "common/error.hpp"
#include "common/process_protection.hpp"
#include "daemon/fastpath/fast_path.hpp"

namespace {

constexpr const char* kProgram = "rolesanywhere-agent";

int fail(const rad::Error& error) {
    std::fprintf(stderr, "%s: %s\n", kProgram, error.message.c_str());
    return rad::exit_code(error.code);
}

// run_core replaces this process with the full program: beside this executable in a build tree, else where
// the package installs it relative to the bin directory (RAD_CORE_FROM_BINDIR), so that any prefix works.
[[noreturn]] void run_core(char** argv) {
    std::error_code ec;
    const auto directory = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
    std::filesystem::path core = directory / "rolesanywhere-agent-core";
    if (!std::filesystem::is_regular_file(core, ec)) {
        core = (directory / RAD_CORE_FROM_BINDIR).lexically_normal();
    }
    ::execv(core.c_str(), argv);
    const int err = errno;
    std::fprintf(stderr, "%s: cannot run %s: %s\n", kProgram, core.c_str(), std::strerror(err));
    std::exit(69);
}

// answer returns the exit status of a fast path the agent settled, or -1 when the full program must run.
int answer(int argc, char** argv) {
    const auto parsed = rad::fastpath::parse_fast_path_arguments(argc, argv);
    if (!parsed || !*parsed) {
        return -1;  // another command, or a usage error the full program reports with its help hint
    }
    const rad::fastpath::FastPathOptions& options = **parsed;
    const auto consultation = rad::fastpath::consult_agent(options);
    if (!rad::fastpath::settled(options, consultation)) {
        return -1;  // no agent answers: the full program signs by itself (and traces why, with --debug)
    }
    const auto printed = rad::fastpath::print_agent_answer(consultation, stdout);
    return printed ? 0 : fail(printed.error());
}

}  // namespace

int main(int argc, char** argv) {
    rad::protect_process_memory();
    int status = -1;
    try {
        status = answer(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: internal error: %s\n", kProgram, e.what());
        return 70;
    }
    if (status >= 0) {
        return status;
    }
    run_core(argv);
}
