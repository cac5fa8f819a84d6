#pragma once
// The agent's HTTP surfaces and their listeners. Each surface is declared once, in kHttpSurfaces
// (http_listeners.cpp): its name (the log's surface=, and the FileDescriptorName of its systemd socket, with
// "-PROFILE" for a surface of one profile), whether it serves credentials (then it answers peers on this host
// only and holds clients until the profile has something to say), where the configuration says it listens,
// how it answers a request, and how `status` shows a client reaches it. Adding a surface is a row there, its
// route in surfaces/, and its listen setting in config/.
//
// HttpListeners opens the surfaces: a socket systemd passed is adopted (by its name, or by the address it is
// bound to), anything else is bound, and a copy of every socket bound here is kept in systemd's
// file-descriptor store, so that across a restart clients wait in the backlog instead of being refused. It
// holds and releases them, reopens a profile's on a reload, applies new limits, and stops them. Loop thread
// only.

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.hpp"
#include "config/config.hpp"
#include "daemon/agent/profile_runtime.hpp"
#include "daemon/policy/snapshot.hpp"
#include "daemon/surfaces/http_server.hpp"
#include "daemon/surfaces/imds_tokens.hpp"
#include "daemon/systemd/systemd.hpp"

namespace rad::agent {

// SurfaceContext is what the surfaces' routes read of the running agent.
class SurfaceContext {
public:
    virtual ~SurfaceContext() = default;
    virtual const config::AgentConfig& configuration() const = 0;
    virtual const surfaces::ImdsTokens& imds_tokens() const = 0;
    virtual std::shared_ptr<ProfileRuntime> profile(std::string_view name) const = 0;
    virtual const std::vector<std::shared_ptr<ProfileRuntime>>& profiles() const = 0;
    virtual policy::AgentSnapshot snapshot() const = 0;
    // count records an answered request (the metrics' requests by surface and status).
    virtual void count(std::string_view surface, int status) = 0;
};

struct HttpSurface;

class HttpListeners {
public:
    HttpListeners(boost::asio::io_context& io, Logger& log, SurfaceContext& context);
    ~HttpListeners();
    HttpListeners(const HttpListeners&) = delete;
    HttpListeners& operator=(const HttpListeners&) = delete;

    // open opens every surface of every profile and of the agent; the first listener that cannot be opened
    // is the error (naming its address). `activated` are the sockets systemd passed; what is left of them
    // after is reported (an unused socket unit) or, for copies this agent kept, dropped from the store.
    [[nodiscard]] Result<void> open(systemd::ActivatedSockets& activated);
    // open_profile opens the surfaces of one profile (added, or its listeners changed, by a reload); a
    // failure is that profile's surface "imds", retried by its engine.
    void open_profile(ProfileRuntime& profile);
    void close_profile(const std::string& name);
    // hold leaves the clients of profiles that have nothing to say yet in the backlog (at most 30 s);
    // update_holds releases each listener once its profiles have (call it whenever a profile changed).
    void hold();
    void update_holds();
    // apply_limits takes reloaded agent settings (hop_limit, max_connections) for every listener.
    void apply_limits();
    void stop();

    // served_lines are how `status` shows the ways a client reaches `profile` over HTTP.
    std::vector<std::string> served_lines(const ProfileRuntime& profile) const;

private:
    struct Listener;

    [[nodiscard]] Result<void> open_surface(const HttpSurface& surface,
                                            const std::shared_ptr<ProfileRuntime>& profile,
                                            systemd::ActivatedSockets& activated);
    [[nodiscard]] Result<std::string> listen_or_adopt(surfaces::HttpServer& server,
                                                      const std::string& name,
                                                      const config::ListenAddress& address,
                                                      std::size_t index,
                                                      systemd::ActivatedSockets& activated,
                                                      std::vector<std::string>& kept);
    surfaces::HttpServerLimits limits(const HttpSurface& surface) const;
    bool has_something_to_say(const Listener& listener) const;

    boost::asio::io_context& io_;
    Logger& log_;
    SurfaceContext& context_;
    std::vector<std::unique_ptr<Listener>> listeners_;
    boost::asio::steady_timer hold_cap_;
};

}  // namespace rad::agent
