// What a restart under systemd hands over: the credentials held and the IMDS token key.

#include "daemon/agent/agent_runtime.hpp"

namespace rad::daemon::agent_detail {

// take_handover reads what the previous process stored; an unreadable or foreign one is logged and
// ignored (the agent then starts as on a fresh boot).
Handover Agent::take_handover() {
    auto fd = activated_.take("handover");
    if (!fd) {
        return {};
    }
    UniqueFd owned(*fd);
    auto text = read_stored(owned.get(), kMaxHandover);
    if (!text) {
        log_.warning("handover_ignored", {{"error", "cannot read it"}});
        return {};
    }
    auto handover = decode_handover(text->reveal());
    if (!handover) {
        log_.warning("handover_ignored", {{"error", handover.error().message}});
        return {};
    }
    return std::move(*handover);
}

// set_token_key keys the IMDS tokens with the handed-over key (tokens clients hold stay valid across a
// restart), or with 32 new random bytes.
Result<void> Agent::set_token_key(Secret handed_over) {
    if (handed_over.empty()) {
        auto fresh = random_secret(pki::HmacKey::random_size);
        if (!fresh) {
            return fresh.error();
        }
        handed_over = std::move(*fresh);
    }
    const std::string_view bytes = handed_over.reveal();
    hmac_ = std::make_unique<pki::HmacKey>(pki::HmacKey::from_bytes(
        std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size())));
    token_key_ = std::move(handed_over);
    return {};
}

// adopt_handed_over gives the profile the credentials the previous process held for it, if they were
// issued for the same role and settings and are not expired; true when it did.
bool Agent::adopt_handed_over(Profile& profile, Handover& handover) {
    for (auto& p : handover.profiles) {
        if (p.name != profile.config.name || p.settings != credentials_settings_key(profile.config) ||
            p.credentials.access_key_id.empty()) {
            continue;
        }
        const auto wall = WallClock::now();
        if (p.credentials.expiration <= wall) {
            return false;
        }
        const std::string key = signer::redact_access_key_id(p.credentials.access_key_id);
        profile.cache.adopt(std::move(p.credentials), p.received, wall, SteadyClock::now(),
                            std::uniform_real_distribution<double>(0.0, 1.0)(rng_));
        profile.last_updated = p.received;
        profile.first_refresh_done = true;
        log_.info("credentials_adopted",
                  {{"profile", profile.config.name},
                   {"access_key", key},
                   {"expiration", format_iso8601(profile.cache.held()->credentials.expiration)},
                   {"next_refresh_in", whole_seconds(profile.cache.next_refresh() - SteadyClock::now())}});
        return true;
    }
    return false;
}

// store_handover replaces what systemd keeps for the next process with what this one holds now. A no-op
// outside systemd.
void Agent::store_handover() {
    Handover handover;
    handover.token_key = token_key_.clone();
    const auto now = SteadyClock::now();
    const auto wall = WallClock::now();
    for (const auto& profile : profiles_) {
        const auto& held = profile->cache.held();
        if (!held || !profile->cache.current(now, wall)) {
            continue;
        }
        handover.profiles.push_back(
            HandedOverProfile{profile->config.name, credentials_settings_key(profile->config),
                              clone_credentials(held->credentials), wall - (now - held->received)});
    }
    const Secret text = encode_handover(handover);
    store_in_systemd("handover", text.reveal());
}

}  // namespace rad::daemon::agent_detail
