// The agent's Unix socket: the fast path's credentials answer, status and refresh requests.

#include "daemon/agent/agent_runtime.hpp"

namespace rad::daemon::agent_detail {

// --- The Unix socket (credential_process fast path, status) -------------------------------------------
Result<void> Agent::open_control_socket() {
    const auto& agent = options_.config.agent;
    control_ = std::make_unique<ControlServer>(
        io_, [this](std::string_view line, ControlReply reply) { handle_control(line, std::move(reply)); });
    // A socket passed by systemd stays systemd's: its path is neither replaced now nor removed at stop.
    if (auto fd = activated_.take("socket")) {
        if (auto r = control_->adopt(*fd); !r) {
            return r;
        }
        log_.info("listening",
                  {{"surface", "socket"}, {"address", agent.socket_path.string()}, {"activated", "yes"}});
        return {};
    }
    if (auto r = control_->listen({agent.socket_path, agent.socket_mode, agent.socket_group}); !r) {
        return r;
    }
    log_.info("listening", {{"surface", "socket"}, {"address", agent.socket_path.string()}});
    return {};
}

// peer_refusal is what a refused peer is told (one line; it names no secret).
std::string Agent::peer_refusal(const PeerCredentials& peer) const {
    const std::string who = "uid " + std::to_string(peer.uid) + " (gid " + std::to_string(peer.gid) + ")";
    if (options_.config_path.empty()) {
        return who + " may not use this agent: it serves only root and its own user";
    }
    return who + " may not use this agent: add the uid to allowed_uids, or the group to allowed_gids, in " +
           options_.config_path.string();
}

// credentials_reply answers a credentials request with what the cache holds: the credentials, or why
// none.
Secret Agent::credentials_reply(const Result<const CachedCredentials*>& current) {
    if (!current) {
        return Secret(format_error_reply(current.error()));
    }
    const Secret json = signer::credential_process_json((*current)->credentials);
    if (json.empty()) {  // a value JSON cannot carry exactly (json_writer.hpp): never an altered secret
        return Secret(
            format_error_reply(make_error(Errc::internal, "the credentials held cannot be written as JSON")));
    }
    return format_ok_reply(json.reveal());
}

// handle_control answers one line of the Unix socket (control_protocol.hpp).
void Agent::handle_control(std::string_view line, ControlReply reply) {
    const PeerCredentials& peer = reply.peer();
    const auto& agent = options_.config.agent;
    if (!peer_allowed(peer, ::geteuid(), AccessList{agent.allowed_uids, agent.allowed_gids})) {
        log_.warning("socket_peer_refused", {{"uid", peer.uid}, {"gid", peer.gid}, {"pid", peer.pid}});
        reply.send(Secret(format_error_reply(make_error(Errc::peer_refused, peer_refusal(peer)))));
        return;
    }
    auto request = parse_control_request(line);
    if (!request) {
        reply.send(Secret(format_error_reply(request.error())));
        return;
    }
    if (request->kind == ControlRequest::Kind::status) {
        reply.send(format_ok_reply(status_json(snapshot())));
        return;
    }
    if (request->kind == ControlRequest::Kind::refresh) {
        handle_refresh_request(std::move(reply), request->profile);
        return;
    }
    auto profile = find(request->profile);
    if (!profile) {
        reply.send(Secret(
            format_error_reply(make_error(Errc::usage, "no profile named \"" + request->profile + "\" in " +
                                                           options_.config.path.string()))));
        return;
    }
    const auto now = SteadyClock::now();
    const auto wall = WallClock::now();
    switch (answer_credentials(profile->cache, request->min_seconds, now, wall)) {
        case CredentialsAnswer::serve:
        case CredentialsAnswer::what_cache_holds:
            reply.send(credentials_reply(profile->cache.current(now, wall)));
            return;
        case CredentialsAnswer::refresh_first:
            break;
    }
    // Not enough life left (or none at all): refresh now and answer when it completes, with whatever the
    // cache then holds — fresh credentials are as good as it gets, even for a short session duration.
    auto waiting = std::make_shared<ControlReply>(std::move(reply));
    std::weak_ptr<Profile> weak = profile;
    profile->waiters.push_back([waiting, weak] {
        if (auto p = weak.lock()) {
            waiting->send(credentials_reply(p->cache.current(SteadyClock::now(), WallClock::now())));
        }
    });
    refresh_now(profile, RefreshReason::fast_path);
}

// handle_refresh_request: an operator's `refresh` runs the profile's refresh now (or joins the one
// running) and answers when it completes. Clients admitted only by allowed_uids/allowed_gids may not: a
// refresh is a CreateSession call, and those are the host's to spend, not every local user's.
void Agent::handle_refresh_request(ControlReply reply, const std::string& name) {
    if (!may_ask_for_refresh(reply.peer(), ::geteuid())) {
        reply.send(Secret(format_error_reply(
            make_error(Errc::peer_refused, "uid " + std::to_string(reply.peer().uid) +
                                               " may not ask for refreshes: only root and the agent's own "
                                               "user may"))));
        return;
    }
    auto profile = find(name);
    if (!profile) {
        reply.send(Secret(format_error_reply(make_error(Errc::usage, "no profile named \"" + name + "\""))));
        return;
    }
    auto waiting = std::make_shared<ControlReply>(std::move(reply));
    std::weak_ptr<Profile> weak = profile;
    profile->waiters.push_back([this, waiting, weak] {
        auto p = weak.lock();
        if (!p) {
            return;
        }
        if (const auto& error = p->cache.last_error()) {
            waiting->send(Secret(format_error_reply(*error)));
        } else {
            waiting->send(format_ok_reply(profile_status_json(snapshot_of(*p))));
        }
    });
    refresh_now(profile, RefreshReason::command);
}

}  // namespace rad::daemon::agent_detail
