// The agent's HTTP listeners (IMDS, ECS, health): opening or adopting them, holding clients until the first
// credentials, routing, and the snapshot that status, /healthz and /metrics report.

#include "daemon/agent/agent_runtime.hpp"

#include "common/version.hpp"

namespace rad::daemon::agent_detail {

void Agent::hold_listeners() {
    bool ecs_waits = false;
    for (auto& profile : profiles_) {
        if (profile->first_refresh_done) {
            continue;
        }
        std::weak_ptr<Profile> weak = profile;
        for (auto& server : profile->imds_servers) {
            server->hold([this, weak] {
                if (auto p = weak.lock(); p && !p->first_refresh_done) {
                    refresh_now(p, RefreshReason::client);
                }
            });
        }
        ecs_waits = ecs_waits || !profile->config.ecs_path.empty();
    }
    if (ecs_server_ && ecs_waits) {
        ecs_server_->hold([this] {
            for (auto& p : profiles_) {
                if (!p->first_refresh_done && !p->config.ecs_path.empty()) {
                    refresh_now(p, RefreshReason::client);
                }
            }
        });
    }
    hold_cap_.expires_after(kHoldCap);
    hold_cap_.async_wait([this](boost::system::error_code ec) {
        if (!ec && !stopping_) {
            for (auto& profile : profiles_) {
                release_listeners(*profile);
            }
        }
    });
}

void Agent::release_listeners(Profile& profile) {
    for (auto& server : profile.imds_servers) {
        server->release();
    }
    if (ecs_server_ && std::all_of(profiles_.begin(), profiles_.end(), [](const auto& p) {
            return p->first_refresh_done || p->config.ecs_path.empty();
        })) {
        ecs_server_->release();
    }
}

// limits of the credential surfaces (IMDS, ECS): loopback peers only. A listener may be bound to another
// address (or reached through route_localnet + DNAT), but credentials never leave the host; the health
// endpoint (no secrets) may be scraped from elsewhere.
HttpServerLimits Agent::limits(bool credentials) const {
    HttpServerLimits l;
    l.max_connections = options_.config.agent.max_connections;
    l.hop_limit = options_.config.agent.hop_limit;
    l.loopback_peers_only = credentials;
    return l;
}

Result<void> Agent::open_imds(const std::shared_ptr<Profile>& profile) {
    for (const auto& address : profile->config.imds_listen) {
        std::weak_ptr<Profile> weak = profile;
        auto server =
            std::make_unique<HttpServer>(io_, limits(), [this, weak](const SurfaceRequest& request) {
                auto p = weak.lock();
                if (!p) {
                    SurfaceResponse gone;
                    gone.status = 404;
                    return count("imds", std::move(gone));
                }
                return count("imds", route_imds(request, p->imds, tokens_, SteadyClock::now(),
                                                WallClock::now(), serve(*p)));
            });
        auto served = listen_or_adopt(*server, "imds", profile->config.name, address);
        if (!served) {
            return served.error();
        }
        profile->imds_addresses.push_back(std::move(*served));
        profile->imds_servers.push_back(std::move(server));
    }
    return {};
}

Result<void> Agent::open_listeners() {
    for (auto& profile : profiles_) {
        if (auto r = open_imds(profile); !r) {
            return r;
        }
    }
    const auto& agent = options_.config.agent;
    if (agent.ecs_listen) {
        ecs_server_ = std::make_unique<HttpServer>(io_, limits(), [this](const SurfaceRequest& request) {
            return count("ecs", route_ecs(
                                    request, [this](std::string_view path) { return ecs_profile(path); },
                                    WallClock::now()));
        });
        auto served = listen_or_adopt(*ecs_server_, "ecs", "", *agent.ecs_listen);
        if (!served) {
            return served.error();
        }
        ecs_address_ = std::move(*served);
    }
    if (agent.health_listen) {
        health_server_ = std::make_unique<HttpServer>(
            io_, limits(false),
            [this](const SurfaceRequest& request) { return route_health(request, snapshot()); });
        if (auto served = listen_or_adopt(*health_server_, "health", "", *agent.health_listen); !served) {
            return served.error();
        }
    }
    if (!agent.socket_path.empty()) {
        if (auto r = open_control_socket(); !r) {
            return r;
        }
    }
    for (const auto& name : activated_.names()) {
        log_.warning("activated_socket_unused", {{"name", name}});
    }
    return {};
}

// listen_or_adopt serves `surface` (of `profile`, for IMDS) on the socket systemd passed under its
// FileDescriptorName= ("imds-PROFILE", "ecs", "health"; a single-profile agent also takes plain "imds")
// when there is one, else binds the configured address itself. It logs and returns the address actually
// served. An activated socket is used whatever its address, since the socket unit decides where clients
// connect; one that differs from the configuration is reported as a warning, naming both.
Result<std::string> Agent::listen_or_adopt(HttpServer& server,
                                           const std::string& surface,
                                           const std::string& profile,
                                           const config::ListenAddress& address) {
    const std::string name = profile.empty() ? surface : surface + "-" + profile;
    auto fd = activated_.take(name);
    if (!fd && surface == "imds" && options_.config.profiles.size() == 1) {
        fd = activated_.take("imds");
    }
    std::string served;
    if (fd) {
        const auto bound = socket_local_address(*fd);
        if (auto r = server.adopt(*fd); !r) {
            return r.error();
        }
        served = bound ? bound->to_string() : "unknown";
        if (!bound || !same_listen_address(address, *bound)) {
            log_.warning("activated_socket_mismatch", {{"surface", surface},
                                                       {"profile", profile},
                                                       {"configured", address.to_string()},
                                                       {"served", served}});
        }
    } else {
        auto port = server.listen(address.host, address.port);
        if (!port) {
            return port.error();
        }
        served = config::ListenAddress{address.host, *port}.to_string();
    }
    log_.info(
        "listening",
        {{"surface", surface}, {"profile", profile}, {"address", served}, {"activated", fd ? "yes" : "no"}});
    return served;
}

SurfaceResponse Agent::count(const char* surface, SurfaceResponse response) {
    ++requests_[{surface, response.status}];
    return response;
}

// snapshot is what `status`, /healthz and /metrics report, taken now.
AgentSnapshot Agent::snapshot() const {
    AgentSnapshot snapshot;
    snapshot.version = kVersion;
    snapshot.config = options_.config_path.string();
    for (const auto& profile : profiles_) {
        snapshot.profiles.push_back(snapshot_of(*profile));
    }
    snapshot.requests = requests_;
    return snapshot;
}

ProfileSnapshot Agent::snapshot_of(const Profile& profile) const {
    const auto now = SteadyClock::now();
    const auto wall = WallClock::now();
    ProfileSnapshot p;
    p.name = profile.config.name;
    p.state = cache_state_name(profile.cache.state(now, wall));
    p.servable = static_cast<bool>(profile.cache.current(now, wall));
    if (const auto& held = profile.cache.held()) {
        p.access_key_id = signer::redact_access_key_id(held->credentials.access_key_id);
        p.expiration = format_iso8601(held->credentials.expiration);
        p.credentials_seconds_left = std::chrono::duration<double>(held->deadline - now).count();
    }
    p.refreshing = profile.cache.refresh_in_flight();
    p.next_refresh_in_seconds = std::max<long long>(0, whole_seconds(profile.cache.next_refresh() - now));
    if (const auto& error = profile.cache.last_error()) {
        p.last_error_code = errc_name(error->code);
        p.last_error_message = error->message;
        p.consecutive_failures = profile.cache.consecutive_failures();
    }
    if (profile.session) {
        const auto& leaf = profile.session->identity.leaf;
        p.certificate = CertificateSnapshot{
            leaf.subject(), leaf.serial_decimal(), format_iso8601(leaf.not_after()),
            std::chrono::duration_cast<std::chrono::hours>(leaf.not_after() - wall).count() / 24};
        p.certificate_seconds_left = std::chrono::duration<double>(leaf.not_after() - wall).count();
    }
    for (const auto& address : profile.imds_addresses) {
        p.served.push_back("imds http://" + address + "/");
    }
    if (!profile.config.ecs_path.empty() && !ecs_address_.empty()) {
        p.served.push_back("ecs http://" + ecs_address_ + profile.config.ecs_path);
    }
    if (!profile.config.credentials_file_profile.empty()) {
        p.served.push_back("credentials-file " + credentials_path(profile).string() + " [" +
                           profile.config.credentials_file_profile + "]");
    }
    if (!options_.config.agent.socket_path.empty()) {
        p.served.push_back("credential-process --profile " + profile.config.name);
    }
    for (const auto& [surface, state] : profile.surfaces) {
        p.surfaces.push_back(SurfaceHealth{surface, !state.error,
                                           state.error ? errc_name(state.error->code) : "", state.failures,
                                           state.error ? state.error->message : ""});
    }
    p.refreshes = profile.refresh_outcomes;
    p.create_session_seconds = profile.create_session_seconds;
    return p;
}

// ecs_profile is what the container endpoint serves at `path`.
std::optional<EcsProfile> Agent::ecs_profile(std::string_view path) const {
    for (const auto& profile : profiles_) {
        if (!profile->config.ecs_path.empty() && profile->config.ecs_path == path) {
            return EcsProfile{EcsSettings{profile->config.ecs_path, &profile->ecs_token, profile->account_id},
                              serve(*profile)};
        }
    }
    return std::nullopt;
}

ServedCredentials Agent::serve(const Profile& profile) const {
    auto current = profile.cache.current(SteadyClock::now(), WallClock::now());
    if (!current) {
        return ServedCredentials{nullptr, current.error(), {}};
    }
    return ServedCredentials{&(*current)->credentials, {}, profile.last_updated};
}

void Agent::open_imds_or_record(const std::shared_ptr<Profile>& profile) {
    if (auto r = open_imds(profile); !r) {
        for (auto& server : profile->imds_servers) {
            server->stop_accepting();
        }
        profile->imds_servers.clear();
        profile->imds_addresses.clear();
        surface_failed(profile, "imds", r.error());
    } else {
        surface_ok(profile, "imds");
    }
}

}  // namespace rad::daemon::agent_detail
