#include "daemon/agent/http_listeners.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "daemon/surfaces/router.hpp"

namespace rad::agent {

namespace {

// kHoldCap bounds how long a listener leaves clients in the backlog waiting for a profile's first refresh.
constexpr std::chrono::seconds kHoldCap{30};

// kKeptPrefix names the copies of self-bound listeners kept in systemd's store ("kept-imds-web-0").
constexpr std::string_view kKeptPrefix = "kept-";

// socket_local_address is the address a listening TCP socket is bound to (getsockname), or nullopt.
std::optional<config::ListenAddress> socket_local_address(int fd) {
    sockaddr_storage storage{};
    socklen_t length = sizeof storage;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) {
        return std::nullopt;
    }
    char text[INET6_ADDRSTRLEN] = {};
    if (storage.ss_family == AF_INET) {
        const auto& in = reinterpret_cast<const sockaddr_in&>(storage);
        ::inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
        return config::ListenAddress{text, ntohs(in.sin_port)};
    }
    if (storage.ss_family == AF_INET6) {
        const auto& in6 = reinterpret_cast<const sockaddr_in6&>(storage);
        ::inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
        return config::ListenAddress{text, ntohs(in6.sin6_port)};
    }
    return std::nullopt;
}

// A socket passed for another purpose than an HTTP surface: the handover and the Unix socket.
bool http_candidate(const std::string& name) {
    return name != "handover" && name != "socket";
}

surfaces::SurfaceResponse answer_imds(SurfaceContext& context,
                                      const surfaces::SurfaceRequest& request,
                                      ProfileRuntime* profile) {
    const surfaces::ServedCredentials served = profile->served();
    const surfaces::ImdsSettings settings{profile->role_name(), context.configuration().agent.allow_imdsv1};
    auto response = surfaces::route_imds(request, settings, context.imds_tokens(),
                                         std::chrono::steady_clock::now(), served);
    if (response.status == 503) {
        profile->client_waiting();
    }
    return response;
}

surfaces::SurfaceResponse answer_ecs(SurfaceContext& context,
                                     const surfaces::SurfaceRequest& request,
                                     ProfileRuntime*) {
    ProfileRuntime* asked = nullptr;
    auto response =
        surfaces::route_ecs(request, [&](std::string_view path) -> std::optional<surfaces::EcsProfile> {
            for (const auto& profile : context.profiles()) {
                if (!profile->config().ecs_path.empty() && profile->config().ecs_path == path) {
                    asked = profile.get();
                    return surfaces::EcsProfile{
                        surfaces::EcsSettings{profile->config().ecs_path, &profile->ecs_token(),
                                              profile->account_id()},
                        profile->served()};
                }
            }
            return std::nullopt;
        });
    if (response.status == 503 && asked != nullptr) {
        asked->client_waiting();
    }
    return response;
}

surfaces::SurfaceResponse answer_health(SurfaceContext& context,
                                        const surfaces::SurfaceRequest& request,
                                        ProfileRuntime*) {
    return surfaces::route_health(request, context.snapshot());
}

}  // namespace

// HttpSurface is one HTTP surface of the agent, as the agent serves it.
struct HttpSurface {
    std::string_view name;
    bool per_profile;         // one listener set per profile (its name is NAME-PROFILE)
    bool serves_credentials;  // peers on this host only; clients held until there is something to say
    // addresses: where the configuration says it listens (for `profile` when per_profile).
    std::vector<config::ListenAddress> (*addresses)(const config::AgentConfig& config,
                                                    const config::ProfileConfig* profile);
    surfaces::SurfaceResponse (*answer)(SurfaceContext& context,
                                        const surfaces::SurfaceRequest& request,
                                        ProfileRuntime* profile);
    // served_line: how a client of `profile` reaches it at `address` ("" when it does not serve the profile).
    std::string (*served_line)(const std::string& address, const config::ProfileConfig& profile);
};

namespace {

const HttpSurface kHttpSurfaces[] = {
    {"imds", true, true,
     [](const config::AgentConfig&, const config::ProfileConfig* profile) { return profile->imds_listen; },
     answer_imds,
     [](const std::string& address, const config::ProfileConfig&) { return "imds http://" + address + "/"; }},
    {"ecs", false, true,
     [](const config::AgentConfig& config, const config::ProfileConfig*) {
         return config.agent.ecs_listen ? std::vector{*config.agent.ecs_listen}
                                        : std::vector<config::ListenAddress>{};
     },
     answer_ecs,
     [](const std::string& address, const config::ProfileConfig& profile) {
         return profile.ecs_path.empty() ? std::string() : "ecs http://" + address + profile.ecs_path;
     }},
    {"health", false, false,
     [](const config::AgentConfig& config, const config::ProfileConfig*) {
         return config.agent.health_listen ? std::vector{*config.agent.health_listen}
                                           : std::vector<config::ListenAddress>{};
     },
     answer_health, [](const std::string&, const config::ProfileConfig&) { return std::string(); }},
};

}  // namespace

struct HttpListeners::Listener {
    const HttpSurface* surface = nullptr;
    std::string profile;  // "" for a surface of the agent
    std::unique_ptr<surfaces::HttpServer> server;
    std::vector<std::string> addresses;  // where it actually listens
    std::vector<std::string> kept;       // the names of its copies in systemd's store
    bool held = false;
};

HttpListeners::HttpListeners(boost::asio::io_context& io, Logger& log, SurfaceContext& context)
    : io_(io), log_(log), context_(context), hold_cap_(io) {}

HttpListeners::~HttpListeners() = default;

Result<void> HttpListeners::open(systemd::ActivatedSockets& activated) {
    for (const auto& surface : kHttpSurfaces) {
        if (surface.per_profile) {
            for (const auto& profile : context_.profiles()) {
                if (auto r = open_surface(surface, profile, activated); !r) {
                    return r;
                }
            }
        } else if (auto r = open_surface(surface, nullptr, activated); !r) {
            return r;
        }
    }
    for (const auto& name : activated.names()) {
        if (name.starts_with(kKeptPrefix)) {
            // A copy an earlier process kept of a listener this configuration no longer has.
            systemd::forget_in_systemd(name);
            if (auto fd = activated.take(name)) {
                ::close(*fd);
            }
        } else if (http_candidate(name)) {
            log_.warning("activated_socket_unused", {{"name", name}});
        }
    }
    return {};
}

void HttpListeners::open_profile(ProfileRuntime& profile) {
    systemd::ActivatedSockets none;
    const auto shared = context_.profile(profile.name());
    for (const auto& surface : kHttpSurfaces) {
        if (!surface.per_profile || !shared) {
            continue;
        }
        if (auto r = open_surface(surface, shared, none); !r) {
            close_profile(profile.name());
            profile.surface_failed(std::string(surface.name), r.error());
            return;
        }
        profile.surface_recovered(std::string(surface.name));
    }
}

void HttpListeners::close_profile(const std::string& name) {
    std::erase_if(listeners_, [&](const std::unique_ptr<Listener>& listener) {
        if (listener->profile != name) {
            return false;
        }
        listener->server->stop_accepting();
        for (const auto& kept : listener->kept) {
            systemd::forget_in_systemd(kept);
        }
        return true;
    });
}

Result<void> HttpListeners::open_surface(const HttpSurface& surface,
                                         const std::shared_ptr<ProfileRuntime>& profile,
                                         systemd::ActivatedSockets& activated) {
    const auto addresses =
        surface.addresses(context_.configuration(), profile ? &profile->config() : nullptr);
    if (addresses.empty()) {
        return {};
    }
    auto listener = std::make_unique<Listener>();
    listener->surface = &surface;
    listener->profile = profile ? profile->name() : "";
    std::weak_ptr<ProfileRuntime> weak = profile;
    SurfaceContext& context = context_;
    listener->server = std::make_unique<surfaces::HttpServer>(
        io_, limits(surface), [&context, &surface, weak](const surfaces::SurfaceRequest& request) {
            surfaces::SurfaceResponse response;
            if (surface.per_profile) {
                auto p = weak.lock();
                if (p) {
                    response = surface.answer(context, request, p.get());
                } else {
                    response.status = 404;  // the profile was removed by a reload
                }
            } else {
                response = surface.answer(context, request, nullptr);
            }
            context.count(surface.name, response.status);
            return response;
        });
    const std::string name =
        profile ? std::string(surface.name) + "-" + profile->name() : std::string(surface.name);
    for (std::size_t i = 0; i < addresses.size(); ++i) {
        auto served = listen_or_adopt(*listener->server, name, addresses[i], i, activated, listener->kept);
        if (!served) {
            listener->server->stop_accepting();
            for (const auto& kept : listener->kept) {
                systemd::forget_in_systemd(kept);
            }
            return served.error();
        }
        log_.info("listening",
                  {{"surface", surface.name}, {"profile", listener->profile}, {"address", *served}});
        listener->addresses.push_back(std::move(*served));
    }
    listeners_.push_back(std::move(listener));
    return {};
}

// listen_or_adopt serves `name` on a socket systemd passed when there is one for it, else binds the
// configured address. A socket is taken for a surface when its FileDescriptorName is the surface's
// ("imds-PROFILE", "ecs", "health"; a single IMDS profile also takes plain "imds") — used whatever its
// address, since the socket unit decides where clients connect, with a warning naming both when they differ —
// or when it is bound to the configured address, whatever its name (the shipped "imds" socket serves the
// profile configured at its address, and copies kept by an earlier process come back this way).
Result<std::string> HttpListeners::listen_or_adopt(surfaces::HttpServer& server,
                                                   const std::string& name,
                                                   const config::ListenAddress& address,
                                                   std::size_t index,
                                                   systemd::ActivatedSockets& activated,
                                                   std::vector<std::string>& kept) {
    auto fd = index == 0 ? activated.take(name) : std::nullopt;
    bool by_name = fd.has_value();
    if (!fd) {
        fd = activated.take_if([&](const std::string& passed, int candidate) {
            const auto bound = socket_local_address(candidate);
            if (!http_candidate(passed) || !bound || !same_listen_address(address, *bound)) {
                return false;
            }
            if (passed.starts_with(kKeptPrefix)) {
                kept.push_back(passed);  // still in the store: forgotten when this listener closes
            }
            return true;
        });
    }
    if (!fd && index == 0 && name.starts_with("imds-")) {
        const auto imds_profiles =
            std::count_if(context_.profiles().begin(), context_.profiles().end(),
                          [](const auto& p) { return !p->config().imds_listen.empty(); });
        if (imds_profiles == 1) {
            fd = activated.take("imds");
            by_name = fd.has_value();
        }
    }
    if (fd) {
        const auto bound = socket_local_address(*fd);
        if (auto r = server.adopt(*fd); !r) {
            ::close(*fd);
            return r.error();
        }
        const std::string served = bound ? bound->to_string() : "unknown";
        if (by_name && (!bound || !same_listen_address(address, *bound))) {
            log_.warning("activated_socket_mismatch",
                         {{"surface", name}, {"configured", address.to_string()}, {"served", served}});
        }
        return served;
    }
    auto port = server.listen(address.host, address.port);
    if (!port) {
        return port.error();
    }
    // Kept in systemd's store (a no-op outside systemd): the next process of a restart takes it back, and
    // meanwhile clients wait in its backlog.
    const auto fds = server.listening_fds();
    const std::string kept_name = std::string(kKeptPrefix) + name + "-" + std::to_string(index);
    if (!fds.empty() && systemd::keep_in_systemd(kept_name, fds.back())) {
        kept.push_back(kept_name);
    }
    return config::ListenAddress{address.host, *port}.to_string();
}

surfaces::HttpServerLimits HttpListeners::limits(const HttpSurface& surface) const {
    const auto& agent = context_.configuration().agent;
    surfaces::HttpServerLimits l;
    l.max_connections = agent.max_connections;
    l.hop_limit = agent.hop_limit;
    // Credentials never leave the host, whatever address a listener is bound to (or reached through
    // route_localnet + DNAT): a peer must be this host (http_server.hpp); the health endpoint (no secrets)
    // may be scraped from elsewhere.
    l.same_host_peers_only = surface.serves_credentials;
    return l;
}

void HttpListeners::apply_limits() {
    for (auto& listener : listeners_) {
        listener->server->set_limits(limits(*listener->surface));
    }
}

bool HttpListeners::has_something_to_say(const Listener& listener) const {
    // A profile has something to say once it holds credentials or its first refresh failed.
    const auto said = [](const ProfileRuntime& p) {
        return p.engine().ever_served() || p.engine().last_error().has_value();
    };
    if (!listener.profile.empty()) {
        const auto p = context_.profile(listener.profile);
        return !p || said(*p);
    }
    return std::all_of(context_.profiles().begin(), context_.profiles().end(),
                       [&](const auto& p) { return p->config().ecs_path.empty() || said(*p); });
}

// hold makes the credential listeners of profiles that hold nothing yet leave new clients in the listen
// backlog until the first refresh completes, rather than answer 503 "the first CreateSession is in
// progress": the client that socket-activated the agent, and those of a boot, get credentials after a short
// wait. A client seen waiting hurries a refresh the startup jitter would delay. kHoldCap bounds the hold.
void HttpListeners::hold() {
    for (auto& listener : listeners_) {
        if (!listener->surface->serves_credentials || has_something_to_say(*listener)) {
            continue;
        }
        listener->held = true;
        const std::string profile = listener->profile;
        SurfaceContext& context = context_;
        listener->server->hold([&context, profile] {
            for (const auto& p : context.profiles()) {
                if (profile.empty() ? !p->config().ecs_path.empty() : p->name() == profile) {
                    p->client_waiting();
                }
            }
        });
    }
    hold_cap_.expires_after(kHoldCap);
    hold_cap_.async_wait([this](boost::system::error_code ec) {
        if (ec) {
            return;
        }
        for (auto& listener : listeners_) {
            if (std::exchange(listener->held, false)) {
                listener->server->release();
            }
        }
    });
}

void HttpListeners::update_holds() {
    for (auto& listener : listeners_) {
        if (listener->held && has_something_to_say(*listener)) {
            listener->held = false;
            listener->server->release();
        }
    }
}

void HttpListeners::stop() {
    hold_cap_.cancel();
    for (auto& listener : listeners_) {
        listener->server->stop_accepting();
    }
}

std::vector<std::string> HttpListeners::served_lines(const ProfileRuntime& profile) const {
    std::vector<std::string> lines;
    for (const auto& listener : listeners_) {
        if (listener->surface->per_profile && listener->profile != profile.name()) {
            continue;
        }
        for (const auto& address : listener->addresses) {
            if (auto line = listener->surface->served_line(address, profile.config()); !line.empty()) {
                lines.push_back(std::move(line));
            }
        }
    }
    return lines;
}

}  // namespace rad::agent
