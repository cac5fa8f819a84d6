#include "config/identity_spec.hpp"

#include "config/settings.hpp"

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
    // Every identity setting of the file (settings.cpp), and the secrets only the command line hands over.
    for (const auto& setting : profile_settings()) {
        if (is_identity(setting) && !same_identity_value(setting, *this, other)) {
            return false;
        }
    }
    return same_secret(passphrase, other.passphrase) && same_secret(tpm_key_password, other.tpm_key_password);
}

}  // namespace rad::config
