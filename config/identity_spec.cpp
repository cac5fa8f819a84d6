#include "config/identity_spec.hpp"

#include <tuple>

namespace rad::config {
namespace {

bool same_secret(const std::shared_ptr<const Secret>& a, const std::shared_ptr<const Secret>& b) {
    if (!a || !b) {
        return !a && !b;
    }
    return a->reveal() == b->reveal();
}

}  // namespace

bool IdentitySpec::same_as(const IdentitySpec& other) const {
    const auto fields = [](const IdentitySpec& s) {
        return std::tie(s.certificate, s.private_key, s.intermediates, s.passphrase_file,
                        s.allow_insecure_key_permissions, s.pkcs11_lib, s.pin_file, s.reuse_pin, s.tpm_tcti,
                        s.tpm_key_password_file, s.tpm_parent_password_file);
    };
    return fields(*this) == fields(other) && same_secret(passphrase, other.passphrase) &&
           same_secret(tpm_key_password, other.tpm_key_password);
}

}  // namespace rad::config
