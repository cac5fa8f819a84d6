#pragma once
// Handover is what a stopping agent leaves for the next one under systemd: the credentials each profile holds
// and the key of its IMDS session tokens. systemd keeps it across a restart in its file-descriptor store
// (FileDescriptorStoreMax=, a sealed memfd sent with FDSTORE=1) and drops it when the service is stopped.
// With it a restart — a certificate renewal under LoadCredential=, a package upgrade, the watchdog — costs
// no CreateSession, leaves no gap for clients, and keeps the tokens clients hold valid.
//
// encode_handover / decode_handover are pure. The text holds secrets, so it lives in Secrets: the secret
// values are hex-encoded straight into the output buffer and decoded straight into new Secrets.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/secret.hpp"
#include "config/config.hpp"
#include "signer/credentials.hpp"

namespace rad::systemd {

struct HandedOverProfile {
    std::string name;
    // settings identifies what the credentials were issued for (credentials_settings_key()): a profile of the
    // next configuration adopts them only if its own key is the same.
    std::string settings;
    signer::Credentials credentials;
    std::chrono::system_clock::time_point received;  // wall clock, when CreateSession answered
    // certificate: the fingerprint of the certificate the credentials were issued for, so that the next
    // process knows whether a renewal happened meanwhile ("" when not known: an older agent's handover).
    std::string certificate;
};

struct Handover {
    Secret token_key;  // the IMDS token HMAC key (empty: none handed over)
    std::vector<HandedOverProfile> profiles;
};

// credentials_settings_key names what a profile's credentials depend on besides the certificate and key (a
// renewed certificate still gets credentials of the same role): the settings marked credentials_key in
// config/settings.hpp (the ARNs, region, endpoint, session duration and role session name).
std::string credentials_settings_key(const config::ProfileConfig& profile);

// encode_handover renders the handover as text: a version line, the token key, one line per profile.
Secret encode_handover(const Handover& handover);

// decode_handover parses encode_handover's text. Anything else — another version, a malformed line, an
// unknown field, a profile twice — is Errc::input_invalid: the agent then starts without it.
[[nodiscard]] Result<Handover> decode_handover(std::string_view text);

}  // namespace rad::systemd
