#include "pki/identity.hpp"

#include "pki/ossl.hpp"
#include "pki/pkcs11.hpp"

namespace rad::pki {
namespace {

const Secret* passphrase_of(const IdentitySource& source) {
    return source.passphrase ? &*source.passphrase : nullptr;
}

std::optional<SystemTime> validity_time(const IdentitySource& source, SystemTime now) {
    return source.check_validity_period ? std::optional<SystemTime>(now) : std::nullopt;
}

Result<Identity> load_pkcs12_identity(const IdentitySource& source, SystemTime now) {
    const std::string origin = source.certificate.string();
    if (!source.intermediates.empty()) {
        return make_error(Errc::usage, "--intermediates cannot be used with a PKCS#12 --certificate (" +
                                           origin + "); the bundle's own chain is used");
    }
    if (!source.private_key.empty()) {
        return make_error(Errc::usage, "--private-key cannot be used with a PKCS#12 --certificate (" +
                                           origin + "); the key is taken from the bundle");
    }
    // The bundle holds the private key, so it is read again under the secret-file rules.
    auto contents = read_secret_file(source.certificate, source.key_file_policy);
    if (!contents) {
        return contents.error();
    }
    auto bundle = ossl::load_pkcs12(contents->reveal(), passphrase_of(source), origin);
    if (!bundle) {
        return bundle.error();
    }
    if (auto r = ossl::check_leaf_rules(bundle->leaf, origin, validity_time(source, now)); !r) {
        return r.error();
    }
    if (auto r = check_chain_order(bundle->leaf, bundle->chain, origin); !r) {
        return r.error();
    }
    ossl::Pkcs12Contents opened = ossl::take(bundle);
    return Identity{std::move(opened.leaf), std::move(opened.chain), std::move(opened.key)};
}

Result<std::vector<Certificate>> load_chain(const IdentitySource& source, const Certificate& leaf) {
    if (source.intermediates.empty()) {
        return std::vector<Certificate>{};
    }
    auto bundle = load_certificate_bundle(source.intermediates);
    if (!bundle) {
        return bundle.error();
    }
    if (auto r = check_chain_order(leaf, *bundle, source.intermediates.string()); !r) {
        return r.error();
    }
    return bundle;
}

// load_token_identity serves the identities with a "pkcs11:" certificate or key. The certificate comes from
// the token or a file; the key from the token (the certificate's URI when no key is named) or a file.
Result<Identity> load_token_identity(const IdentitySource& source, SystemTime now) {
    Pkcs11Options options;
    options.module = source.pkcs11_module;
    if (source.pin) {
        options.pin.emplace(source.pin->clone());
    }
    options.reuse_pin = source.reuse_pin;
    options.pin_file_policy = source.key_file_policy;

    const std::string cert_text = source.certificate.string();
    const std::string key_text = source.private_key.string();
    std::optional<Pkcs11Uri> cert_uri;
    std::optional<std::string> id_hint;
    Result<Certificate> leaf = make_error(Errc::internal, "no certificate loaded");
    std::shared_ptr<const void> module_hold;  // one module initialisation for the certificate and the key
    std::string cert_origin = cert_text;
    if (is_pkcs11_uri(cert_text)) {
        auto uri = parse_pkcs11_uri(cert_text, "--certificate");
        if (!uri) {
            return uri.error();
        }
        auto found = load_pkcs11_certificate(*uri, options);
        if (!found) {
            return found.error();
        }
        cert_origin = format_pkcs11_uri(found->uri);
        id_hint = found->id;
        module_hold = found->module;
        leaf = std::move(found->certificate);
        cert_uri = std::move(*uri);
    } else {
        leaf = load_certificate(source.certificate);
    }
    if (!leaf) {
        return leaf.error();
    }
    if (auto r = ossl::check_leaf_rules(*leaf, cert_origin, validity_time(source, now)); !r) {
        return r.error();
    }

    Result<PrivateKey> key = make_error(Errc::internal, "no key loaded");
    if (is_pkcs11_uri(key_text) || (key_text.empty() && cert_uri)) {
        Pkcs11Uri key_uri;
        if (!key_text.empty()) {
            auto parsed = parse_pkcs11_uri(key_text, "--private-key");
            if (!parsed) {
                return parsed.error();
            }
            key_uri = std::move(*parsed);
        } else {
            // The certificate's URI names the key too: same token, same id or label, type private.
            key_uri = cert_uri->clone();
            key_uri.type = Pkcs11ObjectType::private_key;
        }
        key = load_pkcs11_key(key_uri, options, *leaf, id_hint);
    } else if (key_text.empty()) {
        return make_error(Errc::usage, cert_origin + ": a certificate file needs --private-key");
    } else {
        key = PrivateKey::load(source.private_key, passphrase_of(source), source.key_file_policy);
        if (key && !key->matches(*leaf)) {
            return make_error(
                Errc::key_cert_mismatch,
                key_text + ": the private key does not belong to the certificate " + cert_origin);
        }
    }
    if (!key) {
        return key.error();
    }
    auto chain = load_chain(source, *leaf);
    if (!chain) {
        return chain.error();
    }
    return Identity{ossl::take(leaf), ossl::take(chain), ossl::take(key)};
}

}  // namespace

Result<PrivateKey> load_private_key(const IdentitySource& source) {
    const std::string origin = source.private_key.string();
    if (is_tpm_handle_reference(origin)) {
        return load_tpm_handle_key(origin, source.tpm);
    }
    // A look at the contents decides between a TPM key file and a key file; the latter is read again under
    // the secret-file rules, so this copy is wiped right away.
    auto peek = read_public_file(source.private_key);
    if (!peek) {
        return peek.error();
    }
    std::string contents = ossl::take(peek);
    if (is_tss2_private_key(contents)) {
        auto key = load_tss2_key(contents, origin, source.tpm);
        wipe_string(contents);
        return key;
    }
    wipe_string(contents);
    return PrivateKey::load(source.private_key, passphrase_of(source), source.key_file_policy);
}

Result<Certificate> load_leaf_certificate(const IdentitySource& source) {
    auto read = read_public_file(source.certificate);
    if (!read) {
        return read.error();
    }
    std::string contents = ossl::take(read);
    const bool pkcs12 = is_pkcs12(contents);
    wipe_string(contents);
    if (!pkcs12) {
        return load_certificate(source.certificate);
    }
    auto secret = read_secret_file(source.certificate, source.key_file_policy);
    if (!secret) {
        return secret.error();
    }
    auto bundle = ossl::load_pkcs12(secret->reveal(), passphrase_of(source), source.certificate.string());
    if (!bundle) {
        return bundle.error();
    }
    return std::move(ossl::take(bundle).leaf);
}

Result<Identity> load_identity(const IdentitySource& source, SystemTime now) {
    if (source.certificate.empty()) {
        return make_error(Errc::usage, "no certificate file given (--certificate)");
    }
    if (is_pkcs11_uri(source.certificate.string()) || is_pkcs11_uri(source.private_key.string())) {
        return load_token_identity(source, now);
    }
    const std::string cert_origin = source.certificate.string();
    auto read = read_public_file(source.certificate);
    if (!read) {
        return read.error();
    }
    std::string contents = ossl::take(read);
    if (is_pkcs12(contents)) {
        wipe_string(contents);
        return load_pkcs12_identity(source, now);
    }
    auto leaf = ossl::certificate_from_bytes(contents, cert_origin);
    // Whether the certificate file also holds a key decides how it is read below; it is not parsed here.
    const bool has_key_block = contents.find("PRIVATE KEY-----") != std::string::npos;
    wipe_string(contents);
    if (!leaf) {
        return leaf.error();
    }

    Result<PrivateKey> key = make_error(Errc::internal, "no key loaded");
    if (source.private_key.empty()) {
        if (!has_key_block) {
            return make_error(
                Errc::input_invalid,
                cert_origin + ": no private key in the certificate file and no --private-key given");
        }
        // Combined PEM: the key sits next to the certificate, so the file is read again as a secret file.
        auto combined = read_secret_file(source.certificate, source.key_file_policy);
        if (!combined) {
            return combined.error();
        }
        key = is_tss2_private_key(combined->reveal())
                  ? load_tss2_key(combined->reveal(), cert_origin, source.tpm)
                  : PrivateKey::from_pem(combined->reveal(), passphrase_of(source), cert_origin);
    } else {
        key = load_private_key(source);
    }
    if (!key) {
        return key.error();
    }
    const std::string key_origin = source.private_key.empty() ? cert_origin : source.private_key.string();
    if (auto r = check_supported(*key, key_origin); !r) {
        return r.error();
    }
    if (auto r = ossl::check_leaf_rules(*leaf, cert_origin, validity_time(source, now)); !r) {
        return r.error();
    }
    if (!key->matches(*leaf)) {
        return make_error(Errc::key_cert_mismatch,
                          key_origin + ": the private key does not belong to the certificate " + cert_origin);
    }

    auto chain = load_chain(source, *leaf);
    if (!chain) {
        return chain.error();
    }
    return Identity{ossl::take(leaf), ossl::take(chain), ossl::take(key)};
}

}  // namespace rad::pki
