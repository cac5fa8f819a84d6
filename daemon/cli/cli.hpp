#pragma once
// run_cli parses the command line (aws_signing_helper-compatible commands and flags) and runs the command.
// It returns the process exit status: 0, or a sysexits code (64 for usage errors; see exit_code()).

namespace rad::cli {

int run_cli(int argc, char** argv);

// scrub_secret_arguments overwrites the values of secret-bearing flags (--pkcs8-password) in argv in place,
// so that /proc/<pid>/cmdline and ps no longer show them. Call it after parsing.
void scrub_secret_arguments(int argc, char** argv);

}  // namespace rad::cli
