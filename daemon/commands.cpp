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

Result<pki::Identity> load_identity_from(const config::IdentitySpec& spec, bool check_validity_period) {
    if (spec.certificate.empty()) {
        return make_error(Errc::usage,
                          "--certificate is required (a PEM, DER or PKCS#12 file or a pkcs11: URI)");
    }
    if (auto r = refuse_hardware_reference(spec.certificate, "--certificate"); !r) {
        return r.error();
    }
    if (auto r = refuse_hardware_reference(spec.private_key, "--private-key"); !r) {
        return r.error();
    }
    auto source = resolve_identity(spec, check_validity_period);
    if (!source) {
        return source.error();
    }
    return pki::load_identity(*source, std::chrono::system_clock::now());
}

// sign_string_key loads the key sign-string uses. A token key is found through its certificate (the key's
// own URI names it when --certificate is absent), which also gives the public key sign-string hashes.
Result<pki::PrivateKey> sign_string_key(const config::IdentitySpec& spec) {
    if (pki::is_pkcs11_uri(spec.private_key.native())) {
        auto source = resolve_identity(spec, false);
        if (!source) {
            return source.error();
        }
        if (source->certificate.empty()) {
            source->certificate = spec.private_key;
        }
        auto identity = pki::load_identity(*source, std::chrono::system_clock::now());
        if (!identity) {
            return identity.error();
        }
        return std::move(identity->key);
    }
    auto source = resolve_identity(spec, false);
    if (!source) {
        return source.error();
    }
    auto key = pki::load_private_key(*source);
    if (!key) {
        return key.error();
    }
    if (auto r = pki::check_supported(*key, spec.private_key.native()); !r) {
        return r.error();
    }
    return key;
}

// list_token_certificates is read-certificate-data for a pkcs11: URI: every matching certificate, as the
// reference helper lists identities (SHA-1 fingerprint, names, serial in hex, and the object's URI).
Result<void> list_token_certificates(const ReadCertificateDataOptions& options, std::FILE* out) {
    auto uri = pki::parse_pkcs11_uri(options.identity.certificate.native(), "--certificate");
    if (!uri) {
        return uri.error();
    }
    pki::Pkcs11Options p11;
    p11.module = options.identity.pkcs11_lib;
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

void Diagnostics::warn(const std::string& line) const {
    std::fprintf(stream, "rolesanywhere-agent: warning: %s\n", line.c_str());
}

void Diagnostics::trace(const std::string& line) const {
    if (debug) {
        std::fprintf(stream, "rolesanywhere-agent: debug: %s\n", line.c_str());
    }
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

// resolve_identity is where every secret an identity needs is gathered: a value handed over is copied, a
// file is read under the secret-file rules (owner-only, no symlink, unless the user allowed loose
// permissions). A PIN in a "pkcs11:" URI stays in the URI; pin_file serves a URI without one.
Result<pki::IdentitySource> resolve_identity(const config::IdentitySpec& spec, bool check_validity_period) {
    const SecretFilePolicy policy{spec.allow_insecure_key_permissions};
    // read_into fills `secret` from the value handed over, else from `file`; neither leaves it empty.
    const auto read_into = [&policy](std::optional<Secret>& secret,
                                     const std::shared_ptr<const Secret>& value,
                                     const std::filesystem::path& file) -> Result<void> {
        if (value) {
            if (!value->empty()) {  // the reference helper's rule: an empty password means none
                secret.emplace(value->clone());
            }
        } else if (!file.empty()) {
            auto read = read_passphrase_file(file, policy);
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
    source.key_file_policy = policy;
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

Result<PreparedSession> prepare_session(const config::ProfileConfig& profile, const Diagnostics& diag) {
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
    auto identity = load_identity_from(profile.identity, true);
    if (!identity) {
        return identity.error();
    }
    diag.trace("certificate subject=\"" + identity->leaf.subject() +
               "\" serial=" + identity->leaf.serial_decimal() + " key=" + identity->key.description() +
               " chain=" + std::to_string(identity->chain.size()));
    diag.trace("endpoint " + endpoint->url.scheme + "://" + endpoint->url.host_header() + endpoint->url.path +
               " region=" + endpoint->region);

    HttpsClientOptions client;
    client.verify_peer = !profile.no_verify_ssl;
    if (profile.no_verify_ssl) {
        diag.warn(
            "--no-verify-ssl: the server certificate is not checked; anyone on the path can read and "
            "forge the credentials");
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
        diag.trace("using proxy " + client.proxy->host + ":" + client.proxy->port);
    }

    signer::CreateSessionParams params;
    params.profile_arn = profile.profile_arn;
    params.role_arn = profile.role_arn;
    params.trust_anchor_arn = profile.trust_anchor_arn;
    params.duration_seconds = profile.session_duration;
    params.role_session_name = profile.role_session_name;
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
    auto session = prepare_session(options.profile, diag);
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
    const std::string& path = options.identity.certificate.native();
    if (path.empty()) {
        return make_error(Errc::usage, "--certificate is required");
    }
    if (auto r = refuse_hardware_reference(path, "--certificate"); !r) {
        return r.error();
    }
    if (pki::is_pkcs11_uri(path)) {
        return list_token_certificates(options, out);
    }
    // A PKCS#12 bundle is opened as credential-process opens it: same passphrase sources, same file rules.
    auto source = resolve_identity(options.identity, false);
    if (!source) {
        return source.error();
    }
    auto certificate = pki::load_leaf_certificate(*source);
    if (!certificate) {
        return certificate.error();
    }
    auto key_type = certificate->key_type();
    if (!key_type) {
        return make_error(key_type.error().code, path + ": " + key_type.error().message);
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
