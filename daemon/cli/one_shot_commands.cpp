#include "daemon/cli/one_shot_commands.hpp"

#include <nlohmann/json.hpp>

#include "common/encoding.hpp"
#include "pki/identity.hpp"
#include "pki/pkcs11.hpp"
#include "signer/credentials.hpp"
#include "signer/sigv4x509.hpp"

namespace rad::cli {
namespace {

// sign_string_key loads the key sign-string uses. A token key is found through its certificate (the key's
// own URI names it when --certificate is absent), which also gives the public key sign-string hashes.
Result<pki::PrivateKey> sign_string_key(const config::IdentitySpec& spec) {
    auto source = upstream::resolve_identity(spec, false);
    if (!source) {
        return source.error();
    }
    if (pki::is_pkcs11_uri(spec.private_key.native())) {
        if (source->certificate.empty()) {
            source->certificate = spec.private_key;
        }
        auto identity = pki::load_identity(*source, std::chrono::system_clock::now());
        if (!identity) {
            return identity.error();
        }
        return std::move(identity->key);
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

}  // namespace

Result<void> run_credential_process(const CredentialOptions& options, std::FILE* out, Logger& log) {
    auto session = upstream::prepare_session(options.profile, log);
    if (!session) {
        return session.error();
    }
    auto credentials = upstream::fetch_credentials(session->identity, session->params, session->endpoint,
                                                   upstream::RetryOptions{},
                                                   upstream::production_hooks(session->client, log));
    if (!credentials) {
        return credentials.error();
    }
    log.debug("credentials_issued",
              {{"access_key", signer::redact_access_key_id(credentials->access_key_id)}});
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

Result<void> run_sign_string(const SignStringOptions& options, std::FILE* out, Logger& log) {
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
    auto key = sign_string_key(options.identity);
    if (!key) {
        return key.error();
    }
    log.debug("key", {{"key", key->description()}});
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
                                       Logger& log) {
    const std::string& path = options.identity.certificate.native();
    if (path.empty()) {
        return make_error(Errc::usage, "--certificate is required");
    }
    if (auto r = upstream::refuse_hardware_reference(path, "--certificate"); !r) {
        return r.error();
    }
    if (pki::is_pkcs11_uri(path)) {
        return list_token_certificates(options, out);
    }
    // A PKCS#12 bundle is opened as credential-process opens it: same passphrase sources, same file rules.
    auto source = upstream::resolve_identity(options.identity, false);
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
    log.debug("certificate", {{"subject", certificate->subject()}, {"issuer", certificate->issuer()}});
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

}  // namespace rad::cli
