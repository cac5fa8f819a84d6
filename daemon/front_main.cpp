// rolesanywhere-agent: the command users and AWS SDKs run. It answers the credential_process fast path
// (`credential-process --profile NAME`, an SDK's every credential fetch) from the running agent itself, and
// hands every other command line unchanged to the full program with execv.
//
// Why two executables: the full program loads libcrypto, libssl, libstdc++, tss2 and relocates 4 MB of its
// own before main() — about 10 ms on a small VM, for a call whose real work is one Unix-socket round trip.
// This one links libstdc++ statically and nothing but libc dynamically (see daemon/CMakeLists.txt). The
// same PID continues as the full program, so `serve` under systemd (Type=notify, NotifyAccess=main) and
// every exit code and message are the full program's own.

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <system_error>

#include "common/error.hpp"
#include "common/process_protection.hpp"
#include "daemon/fast_path.hpp"

namespace {

constexpr const char* kProgram = "rolesanywhere-agent";

// core_executable is the full program: beside this executable in a build tree, else where the package
// installs it relative to the bin directory (RAD_CORE_FROM_BINDIR, e.g. ../libexec/rolesanywhere-agent/…),
// so that any installation prefix works without a path compiled in.
std::filesystem::path core_executable() {
    std::error_code ec;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (ec) {
        return {};
    }
    const auto dir = self.parent_path();
    const auto sibling = dir / "rolesanywhere-agent-core";
    if (std::filesystem::is_regular_file(sibling, ec)) {
        return sibling;
    }
    return (dir / RAD_CORE_FROM_BINDIR).lexically_normal();
}

int run_core(char** argv) {
    const auto core = core_executable();
    if (core.empty()) {
        std::fprintf(stderr, "%s: cannot find its own executable (/proc/self/exe)\n", kProgram);
        return 69;
    }
    ::execv(core.c_str(), argv);
    std::fprintf(stderr, "%s: cannot run %s: %s\n", kProgram, core.c_str(), std::strerror(errno));
    return 69;
}

}  // namespace

int main(int argc, char** argv) {
    rad::protect_process_memory();
    try {
        if (const auto options = rad::daemon::parse_fast_path_arguments(argc, argv)) {
            const auto consultation = rad::daemon::consult_agent(*options);
            if (rad::daemon::settled(*options, consultation)) {
                if (!consultation.reply) {
                    std::fprintf(stderr, "%s: %s\n", kProgram, consultation.reply.error().message.c_str());
                    return rad::exit_code(consultation.reply.error().code);
                }
                const auto& json = consultation.reply->reveal();
                if (std::fwrite(json.data(), 1, json.size(), stdout) != json.size() ||
                    std::fflush(stdout) != 0) {
                    std::fprintf(stderr, "%s: cannot write the credentials to standard output\n", kProgram);
                    return rad::exit_code(rad::Errc::internal);
                }
                return 0;
            }
            // No agent answers: the full program signs by itself from the same configuration.
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: internal error: %s\n", kProgram, e.what());
        return 70;
    }
    return run_core(argv);
}
