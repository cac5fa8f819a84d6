#include "pki/identity.hpp"

#include "pki/ossl.hpp"

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

}  // namespace

Result<Identity> load_identity(const IdentitySource& source, SystemTime now) {
    if (source.certificate.empty()) {
        return make_error(Errc::usage, "no certificate file given (--certificate)");
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
        key = PrivateKey::from_pem(combined->reveal(), passphrase_of(source), cert_origin);
    } else {
        key = PrivateKey::load(source.private_key, passphrase_of(source), source.key_file_policy);
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

    std::vector<Certificate> chain;
    if (!source.intermediates.empty()) {
        auto bundle = load_certificate_bundle(source.intermediates);
        if (!bundle) {
            return bundle.error();
        }
        if (auto r = check_chain_order(*leaf, *bundle, source.intermediates.string()); !r) {
            return r.error();
        }
        chain = ossl::take(bundle);
    }
    return Identity{ossl::take(leaf), std::move(chain), ossl::take(key)};
}

}  // namespace rad::pki
