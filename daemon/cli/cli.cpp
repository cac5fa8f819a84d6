#include "daemon/cli/cli.hpp"

#include <string.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <string_view>

#include "common/version.hpp"
#include "daemon/cli/agent_commands.hpp"
#include "daemon/cli/credential_sources_command.hpp"
#include "daemon/cli/one_shot_commands.hpp"

namespace rad::cli {
namespace {

constexpr const char* kProgram = "rolesanywhere-agent";
constexpr const char* kSecretFlags[] = {"--pkcs8-password", "--tpm-key-password"};
constexpr std::string_view kCommands[] = {"credential-process",
                                          "serve",
                                          "update",
                                          "status",
                                          "refresh",
                                          "reload",
                                          "sign-string",
                                          "read-certificate-data",
                                          "version",
                                          "check-credential-sources"};

// terminal_log is the logger of a command run by a person: its --debug lines and warnings on stderr.
Logger terminal_log(bool debug) {
    return Logger(debug ? LogLevel::debug : LogLevel::warning, LogFormat::terminal);
}

void print_error(const std::string& message) {
    std::fprintf(stderr, "%s: %s\n", kProgram, message.c_str());
}

// HeldFlags are the identity flags that do not go into the IdentitySpec as CLI11 parses them: the
// passphrase's value and environment variable (turned into a Secret, and wiped, by take_identity_flags) and
// the OS certificate store flags (accepted for compatibility, refused on Linux).
struct HeldFlags {
    std::string passphrase;
    std::string passphrase_environment_variable;
    bool no_tpm_key_password = false;
    std::string cert_selector;
    std::string system_store_name;
    bool use_latest_expiring_certificate = false;
};

// add_tpm_flags declares the flags of TPM keys (--private-key handle:0x81xxxxxx or a TSS2 PRIVATE KEY file).
void add_tpm_flags(CLI::App& cmd, config::IdentitySpec& o, HeldFlags& held) {
    auto* password = cmd.add_option_function<std::string>(
        "--tpm-key-password",
        [&o](const std::string& value) { o.tpm_key_password = std::make_shared<const Secret>(value); },
        "Password of the TPM key (compatibility; prefer --tpm-key-password-file, argv is visible to other "
        "users in /proc)");
    auto* password_file =
        cmd.add_option("--tpm-key-password-file", o.tpm_key_password_file,
                       "File holding the TPM key's password (one trailing newline is ignored)");
    auto* no_password = cmd.add_flag("--no-tpm-key-password", held.no_tpm_key_password,
                                     "The TPM key has no password (the default; accepted for compatibility)");
    password->excludes(password_file)->excludes(no_password);
    password_file->excludes(no_password);
    cmd.add_option("--tpm-parent-password-file", o.tpm_parent_password_file,
                   "File holding the password of the TPM key's parent: the persistent parent key, or the "
                   "hierarchy (owner) of a key file whose parent is one");
    cmd.add_option("--tpm-tcti", o.tpm_tcti,
                   "The TPM, as a tpm2-tss TCTI string (default device:/dev/tpmrm0; e.g. tabrmd: or "
                   "swtpm:host=127.0.0.1,port=2321)");
}

// add_passphrase_flags declares the three exclusive sources of the passphrase of an encrypted key or PKCS#12
// bundle, and the switch that accepts loose permissions on the files holding secrets.
void add_passphrase_flags(CLI::App& cmd, config::IdentitySpec& o, HeldFlags& held) {
    auto* pw = cmd.add_option("--pkcs8-password", held.passphrase,
                              "Passphrase of an encrypted key or PKCS#12 file (compatibility; prefer "
                              "--pkcs8-password-file, argv is visible to other users)");
    auto* pw_file = cmd.add_option("--pkcs8-password-file", o.passphrase_file,
                                   "File holding the passphrase (one trailing newline is ignored)");
    auto* pw_env = cmd.add_option("--pkcs8-password-env", held.passphrase_environment_variable,
                                  "Name of an environment variable holding the passphrase");
    pw->excludes(pw_file)->excludes(pw_env);
    pw_file->excludes(pw_env);
    cmd.add_flag("--allow-insecure-key-permissions", o.allow_insecure_key_permissions,
                 "Accept key and passphrase files readable by group or others, or symlinks");
}

// add_identity_flags declares the certificate/key flags shared by credential-process and sign-string.
void add_identity_flags(CLI::App& cmd, config::IdentitySpec& o, HeldFlags& held) {
    cmd.add_option("--certificate", o.certificate,
                   "Certificate: PEM or DER leaf, combined PEM, PKCS#12 bundle, or pkcs11: URI (RFC 7512)");
    cmd.add_option("--private-key", o.private_key,
                   "Private key file: PEM PKCS#1, SEC1, PKCS#8 or encrypted PKCS#8 (mode 0600 or 0400), or "
                   "pkcs11: URI (PIN in pin-source=file:/path or pin-value=)");
    cmd.add_option("--pkcs11-lib", o.pkcs11_lib,
                   "PKCS#11 module for pkcs11: URIs (default: p11-kit's proxy module)");
    cmd.add_flag("--reuse-pin", o.reuse_pin,
                 "Log in to keys that need a PIN for every signature (CKA_ALWAYS_AUTHENTICATE) with the "
                 "user PIN");
    add_passphrase_flags(cmd, o, held);
    add_tpm_flags(cmd, o, held);
    auto* selector = cmd.add_option("--cert-selector", held.cert_selector,
                                    "OS certificate store selector (macOS/Windows only)");
    auto* store = cmd.add_option("--system-store-name", held.system_store_name,
                                 "Windows certificate store name (Windows only)");
    auto* latest = cmd.add_flag("--use-latest-expiring-certificate", held.use_latest_expiring_certificate,
                                "Pick the latest-expiring match in an OS store (macOS/Windows only)");
    selector->excludes("--certificate")->excludes("--private-key");
    store->excludes("--certificate")->excludes("--private-key");
    latest->excludes("--private-key");
}

// take_identity_flags completes the IdentitySpec once CLI11 has parsed the command line: it refuses the OS
// store flags, and takes the passphrase handed over on the command line or in the environment. The
// variable's bytes are wiped in place, so that /proc/PID/environ no longer shows them; this is the only
// place that reads it.
Result<void> take_identity_flags(const CLI::App& cmd, HeldFlags& held, config::IdentitySpec& spec) {
    if (!held.cert_selector.empty() || !held.system_store_name.empty() ||
        held.use_latest_expiring_certificate) {
        return make_error(
            Errc::usage,
            "--cert-selector, --system-store-name and --use-latest-expiring-certificate select OS "
            "certificate stores, which exist only on macOS and Windows; use --certificate and "
            "--private-key");
    }
    if (cmd.count("--pkcs8-password") > 0) {
        spec.passphrase = std::make_shared<const Secret>(std::move(held.passphrase));
    } else if (const std::string& name = held.passphrase_environment_variable; !name.empty()) {
        char* value = std::getenv(name.c_str());
        if (value == nullptr) {
            return make_error(Errc::usage,
                              "--pkcs8-password-env: environment variable " + name + " is not set");
        }
        spec.passphrase = std::make_shared<const Secret>(std::string_view(value));
        explicit_bzero(value, std::strlen(value));
    }
    return {};
}

// add_agent_socket_flags declares how a command finds the running agent's control socket.
void add_agent_socket_flags(CLI::App& cmd, std::string& config_path, std::string& socket_path) {
    cmd.add_option("--config", config_path, "Configuration file (to find the socket)");
    cmd.add_option("--socket", socket_path, "The agent's Unix socket");
}

void add_debug_flag(CLI::App& cmd, bool& debug) {
    cmd.add_flag("--debug", debug, "Diagnostics on stderr (never secrets or response bodies)");
}

// add_credential_flags declares the flags shared by credential-process, serve and update (README.md,
// "Reference").
void add_credential_flags(CLI::App& cmd, CredentialOptions& options, HeldFlags& held) {
    config::ProfileConfig& o = options.profile;
    add_identity_flags(cmd, o.identity, held);
    cmd.add_option("--intermediates", o.identity.intermediates,
                   "PEM bundle of intermediate CA certificates, sent in X-Amz-X509-Chain");
    cmd.add_option("--trust-anchor-arn", o.trust_anchor_arn, "ARN of the trust anchor");
    cmd.add_option("--profile-arn", o.profile_arn, "ARN of the Roles Anywhere profile");
    cmd.add_option("--role-arn", o.role_arn, "ARN of the role to assume");
    cmd.add_option("--session-duration", o.session_duration,
                   "Lifetime of the credentials in seconds, 900 to 43200")
        ->default_val(3600);
    cmd.add_option("--role-session-name", o.role_session_name,
                   "Role session name (the profile must accept it)");
    cmd.add_option("--region", o.region, "Signing region (default: the trust anchor's)");
    cmd.add_option("--endpoint", o.endpoint,
                   "Base URL of the Roles Anywhere endpoint (default: from the region)");
    cmd.add_flag("--use-fips-endpoint", o.use_fips_endpoint, "Use the FIPS endpoint of the region");
    cmd.add_option(
        "--ca-bundle", o.ca_bundle,
        "PEM file of CA certificates to trust instead of the system store (default: $AWS_CA_BUNDLE)");
    cmd.add_flag("--no-verify-ssl", o.no_verify_ssl,
                 "Do not verify the server certificate (insecure; compatibility)");
    cmd.add_flag("--with-proxy", options.with_proxy,
                 "Accepted for compatibility: HTTPS_PROXY/NO_PROXY are always honoured");
    cmd.add_option("--connect-timeout", o.connect_timeout_seconds,
                   "Seconds allowed for the TCP connect and for the TLS handshake")
        ->default_val(5);
    cmd.add_option("--timeout", o.timeout_seconds,
                   "Seconds allowed for one CreateSession attempt, end to end")
        ->default_val(20);
    add_debug_flag(cmd, options.debug);
}

int finish(const Result<void>& result) {
    if (result) {
        return 0;
    }
    print_error(result.error().message);
    return exit_code(result.error().code);
}

}  // namespace

void scrub_secret_arguments(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        // A pkcs11: URI may carry its PIN as pin-value=...; blank it up to the next attribute.
        for (char* pin = std::strstr(argv[i], "pin-value="); pin != nullptr;
             pin = std::strstr(pin, "pin-value=")) {
            pin += std::strlen("pin-value=");
            explicit_bzero(pin, std::strcspn(pin, "&;"));
        }
        for (const char* flag : kSecretFlags) {
            const std::size_t n = std::strlen(flag);
            if (std::strcmp(argv[i], flag) == 0 && i + 1 < argc) {
                explicit_bzero(argv[i + 1], std::strlen(argv[i + 1]));
            } else if (std::strncmp(argv[i], flag, n) == 0 && argv[i][n] == '=') {
                explicit_bzero(argv[i] + n + 1, std::strlen(argv[i] + n + 1));
            }
        }
    }
}

int run_cli(int argc, char** argv) {
    // The fast path (an SDK's every credential fetch) is parsed by the same code as in the front executable,
    // and before the CLI11 application is built.
    if (auto fast = fastpath::parse_fast_path_arguments(argc, argv)) {
        if (!*fast) {
            print_error(fast->error().message + " (see --help)");
            return exit_code(fast->error().code);
        }
        const fastpath::FastPathOptions& options = **fast;
        Logger log = terminal_log(options.debug);
        return finish(run_fast_path(options, stdout, log));
    }
    // Declaring every option of every command is a tenth of a cold credential-process (3.4 million
    // instructions, most of them CLI11 building and destroying its option objects); a command line that
    // names its command first needs only that command's options. Any other command line (no command, an
    // unknown one, --help-all) gets every option, so that help and errors read as before.
    const std::string_view named = argc > 1 ? std::string_view(argv[1]) : std::string_view();
    bool every_command = std::find(std::begin(kCommands), std::end(kCommands), named) == std::end(kCommands);
    for (int i = 1; i < argc; ++i) {
        every_command = every_command || std::string_view(argv[i]) == "--help-all";
    }
    const auto declares = [&](std::string_view command) { return every_command || command == named; };

    CLI::App app{"rolesanywhere-agent: AWS credentials for on-premises hosts through IAM Roles Anywhere",
                 kProgram};
    app.require_subcommand(0, 1);
    app.set_help_all_flag("--help-all", "Show the help of every command");

    // credential-process
    CredentialOptions cp;
    HeldFlags cp_held;
    std::string fast_path_value;  // bound to the fast path's flags, which CLI11 never gets to parse
    bool fast_path_switch = false;
    auto* credential_process = app.add_subcommand(
        "credential-process", "Print temporary credentials as credential_process JSON (Version 1) and exit");
    if (declares("credential-process")) {
        add_credential_flags(*credential_process, cp, cp_held);
        // `credential-process --profile` command lines never reach CLI11 (run_cli hands them to
        // fastpath::parse_fast_path_arguments first); its flags are declared here for --help, and so that one
        // given without --profile is refused as before.
        CLI::Option* fast_profile = nullptr;
        for (const auto& flag : fastpath::kFastPathFlags) {
            CLI::Option* option = flag.takes_value
                                      ? credential_process->add_option(flag.name, fast_path_value, flag.help)
                                      : credential_process->add_flag(flag.name, fast_path_switch, flag.help);
            if (fast_profile == nullptr) {
                fast_profile = option;
            } else {
                option->needs(fast_profile);
            }
        }
    }

    // serve
    ServeOptions sv;
    HeldFlags sv_held;
    auto* serve = app.add_subcommand(
        "serve",
        "Run the agent: refresh credentials in the background and serve them (IMDSv2, container endpoint, "
        "credential_process socket, credentials file)");
    if (declares("serve")) {
        add_credential_flags(*serve, sv.credentials, sv_held);
        serve->add_option(
            "--config", sv.config_path,
            "Configuration file (default /etc/rolesanywhere-agent/config.toml when no certificate flags "
            "are given)");
        serve->add_option("--port", sv.port, "IMDS port on 127.0.0.1 when serving from flags (default 9911)")
            ->default_val(9911);
        serve->add_option("--hop-limit", sv.hop_limit, "IP TTL / hop limit of responses (default 1)")
            ->default_val(1);
        serve->add_option("--socket", sv.socket_path,
                          "Also serve the credential_process fast path on this Unix socket");
        serve->add_option("--log-level", sv.log_level, "debug, info, warning or error");
        serve->add_option("--log-format", sv.log_format, "text (key=value, journald priorities) or json");
    }

    // update
    UpdateOptions up;
    HeldFlags up_held;
    auto* update = app.add_subcommand(
        "update",
        "Keep a profile of the shared credentials file (~/.aws/credentials) filled with fresh credentials");
    if (declares("update")) {
        add_credential_flags(*update, up.credentials, up_held);
        update
            ->add_option("--profile", up.profile,
                         "Section of the credentials file to write (default \"default\")")
            ->default_val("default");
        update->add_flag("--once", up.once, "Write once and exit instead of refreshing until stopped");
        update->add_option("--log-level", up.log_level, "debug, info, warning or error")->default_val("info");
    }

    // status
    StatusOptions st;
    auto* status = app.add_subcommand("status", "Show what the running agent holds, per profile");
    if (declares("status")) {
        add_agent_socket_flags(*status, st.config_path, st.socket_path);
        status->add_flag("--json", st.json, "Print the status as JSON");
    }

    // refresh
    RefreshOptions rf;
    auto* refresh = app.add_subcommand(
        "refresh", "Make the running agent refresh its credentials now (root or the agent's own user)");
    if (declares("refresh")) {
        add_agent_socket_flags(*refresh, rf.config_path, rf.socket_path);
        refresh->add_option("--profile", rf.profiles,
                            "A profile to refresh (repeatable; default: every profile)");
    }

    // reload
    ReloadOptions rl;
    auto* reload = app.add_subcommand(
        "reload",
        "Make the running agent read its configuration again; fails when it refuses the file (root or the "
        "agent's own user)");
    if (declares("reload")) {
        add_agent_socket_flags(*reload, rl.config_path, rl.socket_path);
    }

    // sign-string
    SignStringOptions ss;
    HeldFlags ss_held;
    auto* sign_string =
        app.add_subcommand("sign-string", "Sign the fixed test string with the key (diagnostic)");
    if (declares("sign-string")) {
        add_identity_flags(*sign_string, ss.identity, ss_held);
        sign_string->add_option("--digest", ss.digest, "SHA256, SHA384 or SHA512")->default_val("SHA256");
        sign_string->add_option("--format", ss.format, "json, text or bin")->default_val("json");
        add_debug_flag(*sign_string, ss.debug);
    }

    // read-certificate-data
    ReadCertificateDataOptions rcd;
    HeldFlags rcd_held;
    auto* read_certificate_data = app.add_subcommand(
        "read-certificate-data", "Print the certificate's key type, DER and serial as JSON");
    if (declares("read-certificate-data")) {
        read_certificate_data->add_option(
            "--certificate", rcd.identity.certificate,
            "Certificate file (PEM, DER or PKCS#12), or a pkcs11: URI to list token certificates");
        add_passphrase_flags(*read_certificate_data, rcd.identity, rcd_held);
        read_certificate_data->add_option(
            "--pkcs11-lib", rcd.identity.pkcs11_lib,
            "PKCS#11 module for a pkcs11: URI (default: p11-kit's proxy module)");
        auto* rcd_selector = read_certificate_data->add_option("--cert-selector", rcd_held.cert_selector,
                                                               "OS store selector (macOS/Windows only)");
        auto* rcd_store = read_certificate_data->add_option("--system-store-name", rcd_held.system_store_name,
                                                            "Windows store name (Windows only)");
        rcd_selector->excludes("--certificate");
        rcd_store->excludes("--certificate");
        add_debug_flag(*read_certificate_data, rcd.debug);
    }

    auto* version = app.add_subcommand("version", "Print the version");

    // check-credential-sources (the unit's ExecStartPre=+)
    CredentialSourcesOptions cs;
    auto* check_sources = app.add_subcommand(
        "check-credential-sources",
        "Check the sources of a unit's LoadCredential= files with the key-file rules and record them for the "
        "agent (the unit's privileged pre-start check)");
    if (declares("check-credential-sources")) {
        check_sources->add_option("--unit", cs.unit, "The service unit (systemd's %n)")->required();
        check_sources->add_option("--output", cs.output, "The record to write")->required();
    }

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        print_error(std::string(e.what()) + " (see --help)");
        return 64;
    }
    scrub_secret_arguments(argc, argv);

    if (*version) {
        std::printf("%s\n", kVersion);
        return 0;
    }
    if (*credential_process) {
        if (auto r = take_identity_flags(*credential_process, cp_held, cp.profile.identity); !r) {
            return finish(r);
        }
        Logger log = terminal_log(cp.debug);
        return finish(run_credential_process(cp, stdout, log));
    }
    if (*serve) {
        sv.credentials_given = serve->count("--certificate") > 0 || serve->count("--trust-anchor-arn") > 0 ||
                               serve->count("--profile-arn") > 0 || serve->count("--role-arn") > 0;
        if (auto r = take_identity_flags(*serve, sv_held, sv.credentials.profile.identity); !r) {
            return finish(r);
        }
        return run_serve(std::move(sv));
    }
    if (*update) {
        if (auto r = take_identity_flags(*update, up_held, up.credentials.profile.identity); !r) {
            return finish(r);
        }
        return run_update(std::move(up));
    }
    if (*status) {
        return finish(run_status(st, stdout));
    }
    if (*check_sources) {
        return finish(run_check_credential_sources(cs, stderr));
    }
    if (*refresh) {
        return finish(run_refresh(rf, stdout));
    }
    if (*reload) {
        return finish(run_reload(rl, stdout));
    }
    if (*sign_string) {
        if (auto r = take_identity_flags(*sign_string, ss_held, ss.identity); !r) {
            return finish(r);
        }
        Logger log = terminal_log(ss.debug);
        return finish(run_sign_string(ss, stdout, log));
    }
    if (*read_certificate_data) {
        if (auto r = take_identity_flags(*read_certificate_data, rcd_held, rcd.identity); !r) {
            return finish(r);
        }
        Logger log = terminal_log(rcd.debug);
        return finish(run_read_certificate_data(rcd, stdout, log));
    }
    std::fputs(app.help().c_str(), stderr);
    return 64;
}

}  // namespace rad::cli
