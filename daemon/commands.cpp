#include "daemon/commands.hpp"

#include <string.h>
#include <cstdlib>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/encoding.hpp"
#include "daemon/https_client.hpp"
#include "daemon/session_client.hpp"
#include "pki/identity.hpp"
#include "pki/pkcs11.hpp"
#include "signer/credentials.hpp"
#include "signer/sigv4x509.hpp"

#ifndef RAD_VERSION
#define RAD_VERSION "0.0.0"
#endif

namespace rad::daemon {

const char* const kVersion = RAD_VERSION;

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

Result<void> refuse_os_store(const std::string& cert_selector,
                             const std::string& system_store_name,
                             bool use_latest_expiring_certificate) {
    if (!cert_selector.empty() || !system_store_name.empty() || use_latest_expiring_certificate) {
        return make_error(
            Errc::usage,
            "--cert-selector, --system-store-name and --use-latest-expiring-certificate select OS "
            "certificate stores, which exist only on macOS and Windows; use --certificate and "
            "--private-key");
    }
    return {};
}

// refuse_hardware_reference refuses a TPM handle anywhere but --private-key: a TPM holds keys, not
// certificates.
Result<void> refuse_hardware_reference(const std::string& value, const char* flag) {
    if (value.starts_with("handle:") && std::string_view(flag) != "--private-key") {
        return make_error(Errc::usage,
                          std::string(flag) +
                              ": \"handle:\" names a TPM key, which is given with --private-key; give the "
                              "certificate as a PEM, DER or PKCS#12 file or a pkcs11: URI");
    }
    return {};
}

// tpm_options gathers --tpm-tcti and the TPM key and parent passwords (files read now, as Secrets).
Result<pki::TpmKeyOptions> tpm_options(const IdentityOptions& options) {
    pki::TpmKeyOptions tpm;
    tpm.tcti = options.tpm_tcti;
    const SecretFilePolicy policy{options.allow_insecure_key_permissions};
    if (options.tpm_key_password && !options.no_tpm_key_password) {
        tpm.key_password.emplace(options.tpm_key_password->clone());
    } else if (!options.tpm_key_password_file.empty()) {
        auto password = read_passphrase_file(options.tpm_key_password_file, policy);
        if (!password) {
            return password.error();
        }
        tpm.key_password.emplace(std::move(*password));
    }
    if (!options.tpm_parent_password_file.empty()) {
        auto password = read_passphrase_file(options.tpm_parent_password_file, policy);
        if (!password) {
            return password.error();
        }
        tpm.parent_password.emplace(std::move(*password));
    }
    return tpm;
}

// read_passphrase gathers the passphrase from the one source the user named. The environment variable's
// bytes are wiped in place afterwards, so /proc/<pid>/environ no longer shows them.
Result<std::optional<Secret>> read_passphrase(const IdentityOptions& options) {
    if (options.pkcs8_password) {
        if (options.pkcs8_password->empty()) {
            return std::optional<Secret>{};  // the helper's rule: an empty password means none
        }
        return std::optional<Secret>(options.pkcs8_password->clone());
    }
    if (!options.pkcs8_password_file.empty()) {
        auto secret = read_passphrase_file(options.pkcs8_password_file,
                                           SecretFilePolicy{options.allow_insecure_key_permissions});
        if (!secret) {
            return secret.error();
        }
        return std::optional<Secret>(std::move(*secret));
    }
    if (!options.pkcs8_password_env.empty()) {
        char* value = std::getenv(options.pkcs8_password_env.c_str());
        if (value == nullptr) {
            return make_error(Errc::usage, "--pkcs8-password-env: environment variable " +
                                               options.pkcs8_password_env + " is not set");
        }
        Secret secret{std::string_view(value)};
        explicit_bzero(value, strlen(value));
        return std::optional<Secret>(std::move(secret));
    }
    return std::optional<Secret>{};
}

// identity_source turns the flags into what pki::load_identity reads, with the passphrase and the PIN file
// read (and kept as Secrets).
Result<pki::IdentitySource> identity_source(const IdentityOptions& options, bool check_validity_period) {
    auto passphrase = read_passphrase(options);
    if (!passphrase) {
        return passphrase.error();
    }
    pki::IdentitySource source;
    source.certificate = options.certificate;
    source.private_key = options.private_key;
    source.intermediates = options.intermediates;
    source.passphrase = std::move(*passphrase);
    source.key_file_policy.allow_loose_permissions = options.allow_insecure_key_permissions;
    source.check_validity_period = check_validity_period;
    source.pkcs11_module = options.pkcs11_lib;
    source.reuse_pin = options.reuse_pin;
    auto tpm = tpm_options(options);
    if (!tpm) {
        return tpm.error();
    }
    source.tpm = std::move(*tpm);
    if (!options.pin_file.empty()) {
        auto pin = read_passphrase_file(options.pin_file, source.key_file_policy);
        if (!pin) {
            return pin.error();
        }
        source.pin.emplace(std::move(*pin));
    }
    return source;
}

Result<pki::Identity> load_identity_from(const IdentityOptions& options, bool check_validity_period) {
    if (auto r = refuse_os_store(options.cert_selector, options.system_store_name,
                                 options.use_latest_expiring_certificate);
        !r) {
        return r.error();
    }
    if (options.certificate.empty()) {
        return make_error(Errc::usage,
                          "--certificate is required (a PEM, DER or PKCS#12 file or a pkcs11: URI)");
    }
    if (auto r = refuse_hardware_reference(options.certificate, "--certificate"); !r) {
        return r.error();
    }
    if (auto r = refuse_hardware_reference(options.private_key, "--private-key"); !r) {
        return r.error();
    }
    auto source = identity_source(options, check_validity_period);
    if (!source) {
        return source.error();
    }
    return pki::load_identity(*source, std::chrono::system_clock::now());
}

// sign_string_key loads the key sign-string uses. A token key is found through its certificate (the key's
// own URI names it when --certificate is absent), which also gives the public key sign-string hashes.
Result<pki::PrivateKey> sign_string_key(const IdentityOptions& options) {
    if (pki::is_pkcs11_uri(options.private_key)) {
        auto source = identity_source(options, false);
        if (!source) {
            return source.error();
        }
        if (source->certificate.empty()) {
            source->certificate = options.private_key;
        }
        auto identity = pki::load_identity(*source, std::chrono::system_clock::now());
        if (!identity) {
            return identity.error();
        }
        return std::move(identity->key);
    }
    auto source = identity_source(options, false);
    if (!source) {
        return source.error();
    }
    auto key = pki::load_private_key(*source);
    if (!key) {
        return key.error();
    }
    if (auto r = pki::check_supported(*key, options.private_key); !r) {
        return r.error();
    }
    return key;
}

// list_token_certificates is read-certificate-data for a pkcs11: URI: every matching certificate, as the
// reference helper lists identities (SHA-1 fingerprint, names, serial in hex, and the object's URI).
Result<void> list_token_certificates(const ReadCertificateDataOptions& options, std::FILE* out) {
    auto uri = pki::parse_pkcs11_uri(options.certificate, "--certificate");
    if (!uri) {
        return uri.error();
    }
    pki::Pkcs11Options p11;
    p11.module = options.pkcs11_lib;
    auto found = pki::list_pkcs11_certificates(*uri, p11);
    if (!found) {
        return found.error();
    }
    std::string text = found->empty() ? "No matching identities\n" : "Matching identities\n";
    int index = 0;
    for (const auto& entry : *found) {
        const auto& c = entry.certificate;
        text += std::to_string(++index) + ") Hex Fingerprint: " + c.sha1_fingerprint_hex() + "\n";
        text += "\tSubject: " + c.subject() + "\n";
        text += "\tIssuer: " + c.issuer() + "\n";
        text += "\tSerial Number: " + c.serial_hex() + "\n";
        text += "\tURI: " + pki::format_pkcs11_uri(entry.uri) + "\n";
    }
    if (std::fwrite(text.data(), 1, text.size(), out) != text.size() || std::fflush(out) != 0) {
        return make_error(Errc::internal, "cannot write to standard output");
    }
    return {};
}

Result<signer::ResolvedEndpoint> resolve(const CredentialOptions& options) {
    signer::EndpointOptions endpoint = endpoint_options(options);
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

void Diagnostics::warn(const std::string& line) const {
    std::fprintf(stream, "rolesanywhere-agent: warning: %s\n", line.c_str());
}

void Diagnostics::trace(const std::string& line) const {
    if (debug) {
        std::fprintf(stream, "rolesanywhere-agent: debug: %s\n", line.c_str());
    }
}

signer::EndpointOptions endpoint_options(const CredentialOptions& options) {
    signer::EndpointOptions endpoint;
    endpoint.trust_anchor_arn = options.trust_anchor_arn;
    endpoint.profile_arn = options.profile_arn;
    endpoint.role_arn = options.role_arn;
    endpoint.region = options.region;
    endpoint.endpoint = options.endpoint;
    endpoint.use_fips = options.use_fips_endpoint;
    return endpoint;
}

Result<PreparedSession> prepare_session(const CredentialOptions& options, const Diagnostics& diag) {
    if (options.role_arn.empty() || options.profile_arn.empty() || options.trust_anchor_arn.empty()) {
        return make_error(Errc::usage, "--trust-anchor-arn, --profile-arn and --role-arn are all required");
    }
    if (auto r = signer::check_session_duration(options.session_duration); !r) {
        return r.error();
    }
    if (options.connect_timeout_seconds <= 0 || options.timeout_seconds <= 0) {
        return make_error(Errc::usage, "--connect-timeout and --timeout must be positive numbers of seconds");
    }
    auto endpoint = resolve(options);
    if (!endpoint) {
        return endpoint.error();
    }
    auto identity = load_identity_from(options.identity, true);
    if (!identity) {
        return identity.error();
    }
    diag.trace("certificate subject=\"" + identity->leaf.subject() +
               "\" serial=" + identity->leaf.serial_decimal() + " key=" + identity->key.description() +
               " chain=" + std::to_string(identity->chain.size()));
    diag.trace("endpoint " + endpoint->url.scheme + "://" + endpoint->url.host_header() + endpoint->url.path +
               " region=" + endpoint->region);

    HttpsClientOptions client;
    client.verify_peer = !options.no_verify_ssl;
    if (options.no_verify_ssl) {
        diag.warn(
            "--no-verify-ssl: the server certificate is not checked; anyone on the path can read and "
            "forge the credentials");
    }
    client.ca_bundle =
        !options.ca_bundle.empty() ? options.ca_bundle : env_value("AWS_CA_BUNDLE").value_or("");
    client.connect_timeout = seconds_to_ms(options.connect_timeout_seconds);
    client.tls_timeout = seconds_to_ms(options.connect_timeout_seconds);
    client.total_timeout = seconds_to_ms(options.timeout_seconds);
    client.user_agent = std::string("rolesanywhere-agent/") + kVersion;
    // Like the reference helper since 1.7.0, the proxy variables apply whether or not --with-proxy is given.
    auto proxy = proxy_for(endpoint->url, env_value);
    if (!proxy) {
        return proxy.error();
    }
    client.proxy = std::move(*proxy);
    if (client.proxy) {
        diag.trace("using proxy " + client.proxy->host + ":" + client.proxy->port);
    }

    signer::CreateSessionParams params;
    params.profile_arn = options.profile_arn;
    params.role_arn = options.role_arn;
    params.trust_anchor_arn = options.trust_anchor_arn;
    params.duration_seconds = options.session_duration;
    params.role_session_name = options.role_session_name;
    return PreparedSession{std::move(*identity), std::move(*endpoint), std::move(params), std::move(client)};
}

SessionClientHooks production_hooks(const HttpsClientOptions& client, const Diagnostics& diag) {
    auto rng = std::make_shared<std::mt19937_64>(std::random_device{}());
    SessionClientHooks hooks;
    hooks.send = [&client](const signer::Url& url, const signer::HttpRequest& request) {
        return send_request(url, request, client);
    };
    hooks.now = [] { return std::chrono::system_clock::now(); };
    hooks.sleep = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
    hooks.jitter01 = [rng] { return std::uniform_real_distribution<double>(0.0, 1.0)(*rng); };
    hooks.on_attempt_failed = [diag](int attempt, const Error& error, std::chrono::milliseconds delay) {
        diag.trace("attempt " + std::to_string(attempt) + " failed (" + errc_name(error.code) +
                   "): " + error.message + "; retrying in " + std::to_string(delay.count()) + " ms");
    };
    return hooks;
}

Result<void> run_credential_process(const CredentialOptions& options,
                                    std::FILE* out,
                                    const Diagnostics& diag) {
    auto session = prepare_session(options, diag);
    if (!session) {
        return session.error();
    }
    auto credentials = fetch_credentials(session->identity, session->params, session->endpoint,
                                         RetryOptions{}, production_hooks(session->client, diag));
    if (!credentials) {
        return credentials.error();
    }
    diag.trace("credentials issued: access key " + signer::redact_access_key_id(credentials->access_key_id));
    const Secret document = signer::credential_process_json(*credentials);
    if (document.empty()) {
        return make_error(Errc::internal, "the credentials are not UTF-8 text and cannot be written as JSON");
    }
    if (std::fwrite(document.reveal().data(), 1, document.size(), out) != document.size() ||
        std::fflush(out) != 0) {
        return make_error(Errc::internal, "cannot write the credentials to standard output");
    }
    return {};
}

Result<void> run_sign_string(const SignStringOptions& options, std::FILE* out, const Diagnostics& diag) {
    pki::Digest digest;
    if (options.digest == "SHA256") {
        digest = pki::Digest::sha256;
    } else if (options.digest == "SHA384") {
        digest = pki::Digest::sha384;
    } else if (options.digest == "SHA512") {
        digest = pki::Digest::sha512;
    } else {
        return make_error(Errc::usage,
                          "--digest must be SHA256, SHA384 or SHA512 (got \"" + options.digest + "\")");
    }
    if (options.format != "json" && options.format != "text" && options.format != "bin") {
        return make_error(Errc::usage, "--format must be json, text or bin (got \"" + options.format + "\")");
    }
    // sign-string needs only the key: --certificate matters to the helper for PKCS#11 URIs alone.
    if (auto r = refuse_os_store(options.identity.cert_selector, options.identity.system_store_name,
                                 options.identity.use_latest_expiring_certificate);
        !r) {
        return r.error();
    }
    if (options.identity.private_key.empty()) {
        return make_error(Errc::usage, "--private-key is required");
    }
    if (auto r = refuse_hardware_reference(options.identity.private_key, "--private-key"); !r) {
        return r.error();
    }
    auto key = sign_string_key(options.identity);
    if (!key) {
        return key.error();
    }
    diag.trace("key " + key->description());
    // docs/protocol.md §7.2: fixed text || "1" || SHA256("IAM RA" || public key), raw digest bytes; for
    // ML-DSA the text alone (as aws_signing_helper 1.8.0 does), signed without a digest, so --digest changes
    // nothing.
    std::string message = "AWS Roles Anywhere Credential Helper Signing Test1";
    if (!pki::is_ml_dsa(key->key_type())) {
        auto public_key = key->sign_string_public_key();
        if (!public_key) {
            return public_key.error();
        }
        const auto suffix = pki::sha256("IAM RA" + *public_key);
        message.append(reinterpret_cast<const char*>(suffix.data()), suffix.size());
    }
    auto signature = key->sign(message, digest);
    if (!signature) {
        return signature.error();
    }
    std::string output;
    if (options.format == "bin") {
        output.assign(reinterpret_cast<const char*>(signature->data()), signature->size());
    } else if (options.format == "text") {
        output = hex_lower(*signature);
    } else {
        output = "\"" + hex_lower(*signature) + "\"";
    }
    if (std::fwrite(output.data(), 1, output.size(), out) != output.size() || std::fflush(out) != 0) {
        return make_error(Errc::internal, "cannot write the signature to standard output");
    }
    return {};
}

Result<void> run_read_certificate_data(const ReadCertificateDataOptions& options,
                                       std::FILE* out,
                                       const Diagnostics& diag) {
    if (auto r = refuse_os_store(options.cert_selector, options.system_store_name, false); !r) {
        return r.error();
    }
    if (options.certificate.empty()) {
        return make_error(Errc::usage, "--certificate is required");
    }
    if (auto r = refuse_hardware_reference(options.certificate, "--certificate"); !r) {
        return r.error();
    }
    if (pki::is_pkcs11_uri(options.certificate)) {
        return list_token_certificates(options, out);
    }
    // A PKCS#12 bundle is opened as credential-process opens it: same passphrase sources, same file rules.
    IdentityOptions identity;
    identity.certificate = options.certificate;
    if (options.pkcs8_password) {
        identity.pkcs8_password.emplace(options.pkcs8_password->clone());
    }
    identity.pkcs8_password_file = options.pkcs8_password_file;
    identity.pkcs8_password_env = options.pkcs8_password_env;
    identity.allow_insecure_key_permissions = options.allow_insecure_key_permissions;
    auto source = identity_source(identity, false);
    if (!source) {
        return source.error();
    }
    auto certificate = pki::load_leaf_certificate(*source);
    if (!certificate) {
        return certificate.error();
    }
    auto key_type = certificate->key_type();
    if (!key_type) {
        return make_error(key_type.error().code, options.certificate + ": " + key_type.error().message);
    }
    diag.trace("certificate subject=\"" + certificate->subject() + "\" issuer=\"" + certificate->issuer() +
               "\"");
    // Key order as the helper prints it (a Go struct marshalled in field order), hence ordered_json.
    const std::string name(pki::key_type_name(*key_type));
    nlohmann::ordered_json doc;
    doc["keyType"] = name;
    doc["certificateData"] = certificate->der_base64();
    doc["serialNumber"] = certificate->serial_decimal();
    // RSA and EC list the digests sign-string offers; ML-DSA signs without one, so its only entry is itself.
    doc["supportedAlgorithms"] =
        pki::is_ml_dsa(*key_type)
            ? nlohmann::json::array({name})
            : nlohmann::json::array({name + "SHA256", name + "SHA384", name + "SHA512"});
    const std::string text = doc.dump();
    if (std::fwrite(text.data(), 1, text.size(), out) != text.size() || std::fflush(out) != 0) {
        return make_error(Errc::internal, "cannot write to standard output");
    }
    return {};
}

}  // namespace rad::daemon
