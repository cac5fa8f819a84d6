#include "daemon/upstream/prepared_session.hpp"

#include <sys/stat.h>

#include <cstdlib>
#include <random>
#include <thread>

#include "common/version.hpp"

namespace rad::upstream {
namespace {

std::optional<std::string> env_value(const char* name) {
    if (const char* v = std::getenv(name)) {
        return std::string(v);
    }
    return std::nullopt;
}

bool env_true(const char* name) {
    const auto v = env_value(name);
    return v && (*v == "true" || *v == "TRUE" || *v == "True" || *v == "1");
}

Result<pki::Identity> load_identity_from(const config::IdentitySpec& spec, bool check_validity_period) {
    if (spec.certificate.empty()) {
        return make_error(Errc::usage,
                          "--certificate is required (a PEM, DER or PKCS#12 file or a pkcs11: URI)");
    }
    if (auto r = refuse_hardware_reference(spec.certificate, "--certificate"); !r) {
        return r.error();
    }
    auto source = resolve_identity(spec, check_validity_period);
    if (!source) {
        return source.error();
    }
    return pki::load_identity(*source, std::chrono::system_clock::now());
}

Result<signer::ResolvedEndpoint> resolve(const config::ProfileConfig& profile) {
    signer::EndpointOptions endpoint = endpoint_options(profile);
    // The reference helper reads the SDK's endpoint variables through config.LoadDefaultConfig; we honour
    // them only when --endpoint is absent, so that the flag always wins.
    if (endpoint.endpoint.empty()) {
        endpoint.endpoint =
            env_value("AWS_ENDPOINT_URL_ROLESANYWHERE").value_or(env_value("AWS_ENDPOINT_URL").value_or(""));
    }
    endpoint.use_fips = endpoint.use_fips || env_true("AWS_USE_FIPS_ENDPOINT");
    return signer::resolve_endpoint(endpoint);
}

std::chrono::milliseconds seconds_to_ms(double seconds) {
    return std::chrono::milliseconds(static_cast<long long>(seconds * 1000.0));
}

}  // namespace

Result<void> refuse_hardware_reference(const std::string& value, const char* flag) {
    if (value.starts_with("handle:") && std::string_view(flag) != "--private-key") {
        return make_error(Errc::usage,
                          std::string(flag) +
                              ": \"handle:\" names a TPM key, which is given with --private-key; give the "
                              "certificate as a PEM, DER or PKCS#12 file or a pkcs11: URI");
    }
    return {};
}

signer::EndpointOptions endpoint_options(const config::ProfileConfig& profile) {
    signer::EndpointOptions endpoint;
    endpoint.trust_anchor_arn = profile.trust_anchor_arn;
    endpoint.profile_arn = profile.profile_arn;
    endpoint.role_arn = profile.role_arn;
    endpoint.region = profile.region;
    endpoint.endpoint = profile.endpoint;
    endpoint.use_fips = profile.use_fips_endpoint;
    return endpoint;
}

namespace {

// in_credentials_directory: `file` is one of systemd's LoadCredential= copies for this service, in a
// directory no other user may enter. systemd 257 makes those copies 0440 (owner and the service's group):
// the group bit there exposes nothing, so it is admitted for them, and only for them.
bool in_credentials_directory(const std::filesystem::path& file) {
    const auto directory = env_value("CREDENTIALS_DIRECTORY");
    if (!directory || directory->empty() || file.parent_path() != std::filesystem::path(*directory)) {
        return false;
    }
    struct stat st {};
    return ::stat(directory->c_str(), &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0007) == 0;
}

}  // namespace

// resolve_identity is where every secret an identity needs is gathered: a value handed over is copied, a
// file is read under the secret-file rules (owner-only, no link another user controls, unless the user
// allowed loose permissions; a LoadCredential= copy may be group-readable). A PIN in a "pkcs11:" URI stays in
// the URI; pin_file serves a URI without one.
Result<pki::IdentitySource> resolve_identity(const config::IdentitySpec& spec, bool check_validity_period) {
    const auto policy_for = [&spec](const std::filesystem::path& file) {
        return SecretFilePolicy{spec.allow_insecure_key_permissions, in_credentials_directory(file)};
    };
    // read_into fills `secret` from the value handed over, else from `file`; neither leaves it empty.
    const auto read_into = [&policy_for](std::optional<Secret>& secret,
                                         const std::shared_ptr<const Secret>& value,
                                         const std::filesystem::path& file) -> Result<void> {
        if (value) {
            if (!value->empty()) {  // the reference helper's rule: an empty password means none
                secret.emplace(value->clone());
            }
        } else if (!file.empty()) {
            auto read = read_passphrase_file(file, policy_for(file));
            if (!read) {
                return read.error();
            }
            secret.emplace(std::move(*read));
        }
        return {};
    };
    pki::IdentitySource source;
    source.certificate = spec.certificate;
    source.private_key = spec.private_key;
    source.intermediates = spec.intermediates;
    source.key_file_policy = policy_for(spec.private_key.empty() ? spec.certificate : spec.private_key);
    source.check_validity_period = check_validity_period;
    source.pkcs11_module = spec.pkcs11_lib;
    source.reuse_pin = spec.reuse_pin;
    source.tpm.tcti = spec.tpm_tcti;
    if (auto r = read_into(source.passphrase, spec.passphrase, spec.passphrase_file); !r) {
        return r.error();
    }
    if (auto r = read_into(source.pin, nullptr, spec.pin_file); !r) {
        return r.error();
    }
    if (auto r = read_into(source.tpm.key_password, spec.tpm_key_password, spec.tpm_key_password_file); !r) {
        return r.error();
    }
    if (auto r = read_into(source.tpm.parent_password, nullptr, spec.tpm_parent_password_file); !r) {
        return r.error();
    }
    return source;
}

Result<PreparedSession> prepare_session(const config::ProfileConfig& profile,
                                        Logger& log,
                                        bool check_validity_period) {
    if (profile.role_arn.empty() || profile.profile_arn.empty() || profile.trust_anchor_arn.empty()) {
        return make_error(Errc::usage, "--trust-anchor-arn, --profile-arn and --role-arn are all required");
    }
    if (auto r = signer::check_session_duration(profile.session_duration); !r) {
        return r.error();
    }
    if (profile.connect_timeout_seconds <= 0 || profile.timeout_seconds <= 0) {
        return make_error(Errc::usage, "--connect-timeout and --timeout must be positive numbers of seconds");
    }
    auto endpoint = resolve(profile);
    if (!endpoint) {
        return endpoint.error();
    }
    // A LoadCredential= copy whose source in /etc others may read is refused as that file would be, and an
    // error about a copy names its source too: the file the operator knows and fixes.
    if (auto r = config::refuse_unsafe_sources(profile.credential_copies); !r) {
        return r.error();
    }
    auto identity = load_identity_from(profile.identity, check_validity_period);
    if (!identity) {
        Error error = identity.error();
        error.message = config::name_credential_sources(std::move(error.message), profile.credential_copies);
        return error;
    }
    log.debug("certificate", {{"subject", identity->leaf.subject()},
                              {"serial", identity->leaf.serial_decimal()},
                              {"key", identity->key.description()},
                              {"chain", identity->chain.size()}});
    log.debug("endpoint",
              {{"url", endpoint->url.scheme + "://" + endpoint->url.host_header() + endpoint->url.path},
               {"region", endpoint->region}});

    HttpsClientOptions client;
    client.verify_peer = !profile.no_verify_ssl;
    if (profile.no_verify_ssl) {
        log.warning(
            "server_not_verified",
            {{"message",
              "--no-verify-ssl: the server certificate is not checked; anyone on the path can read and "
              "forge the credentials"}});
    }
    client.ca_bundle =
        !profile.ca_bundle.empty() ? profile.ca_bundle.string() : env_value("AWS_CA_BUNDLE").value_or("");
    client.connect_timeout = seconds_to_ms(profile.connect_timeout_seconds);
    client.tls_timeout = seconds_to_ms(profile.connect_timeout_seconds);
    client.total_timeout = seconds_to_ms(profile.timeout_seconds);
    client.user_agent = std::string("rolesanywhere-agent/") + kVersion;
    // Like the reference helper since 1.7.0, the proxy variables apply whether or not --with-proxy is given.
    auto proxy = proxy_for(endpoint->url, env_value);
    if (!proxy) {
        return proxy.error();
    }
    client.proxy = std::move(*proxy);
    if (client.proxy) {
        log.debug("proxy", {{"host", client.proxy->host}, {"port", client.proxy->port}});
    }

    signer::CreateSessionParams params;
    params.profile_arn = profile.profile_arn;
    params.role_arn = profile.role_arn;
    params.trust_anchor_arn = profile.trust_anchor_arn;
    params.duration_seconds = profile.session_duration;
    params.role_session_name = profile.role_session_name;
    return PreparedSession{std::move(*identity), std::move(*endpoint), std::move(params), std::move(client)};
}

SessionClientHooks production_hooks(const HttpsClientOptions& client, Logger& log) {
    auto rng = std::make_shared<std::mt19937_64>(std::random_device{}());
    SessionClientHooks hooks;
    hooks.send = [&client](const signer::Url& url, const signer::HttpRequest& request) {
        return send_request(url, request, client);
    };
    hooks.now = [] { return std::chrono::system_clock::now(); };
    hooks.sleep = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
    hooks.jitter01 = [rng] { return std::uniform_real_distribution<double>(0.0, 1.0)(*rng); };
    hooks.on_attempt_failed = [&log](int attempt, const Error& error, std::chrono::milliseconds delay) {
        log.debug("attempt_failed", {{"attempt", attempt},
                                     {"code", errc_name(error.code)},
                                     {"error", error.message},
                                     {"retry_in_ms", static_cast<std::int64_t>(delay.count())}});
    };
    return hooks;
}

}  // namespace rad::upstream
