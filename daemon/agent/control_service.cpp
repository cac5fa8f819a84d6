#include "daemon/agent/control_service.hpp"

#include <unistd.h>

#include "daemon/control/control_protocol.hpp"

namespace rad::agent {

namespace {

// credentials_reply answers a credentials request with what the profile serves: the credentials, or why
// none.
Secret credentials_reply(const surfaces::ServedCredentials& served) {
    if (served.credentials == nullptr) {
        return Secret(control::format_error_reply(served.error));
    }
    const Secret json = signer::credential_process_json(*served.credentials);
    if (json.empty()) {  // a value JSON cannot carry exactly (json_writer.hpp): never an altered secret
        return Secret(control::format_error_reply(
            make_error(Errc::internal, "the credentials held cannot be written as JSON")));
    }
    return control::format_ok_reply(json.reveal());
}

Secret error_reply(Errc code, std::string message) {
    return Secret(control::format_error_reply(make_error(code, std::move(message))));
}

}  // namespace

ControlService::ControlService(boost::asio::io_context& io, Logger& log, ControlContext& context)
    : io_(io), log_(log), context_(context) {}

ControlService::~ControlService() = default;

Result<void> ControlService::open(systemd::ActivatedSockets& activated) {
    const auto& agent = context_.configuration().agent;
    server_ = std::make_unique<surfaces::ControlServer>(
        io_, [this](std::string_view line, surfaces::ControlReply reply) { handle(line, std::move(reply)); });
    // A socket passed by systemd stays systemd's: its path is neither replaced now nor removed at stop.
    if (auto fd = activated.take("socket")) {
        if (auto r = server_->adopt(*fd); !r) {
            return r;
        }
        log_.info("listening",
                  {{"surface", "socket"}, {"address", agent.socket_path.string()}, {"activated", "yes"}});
        return {};
    }
    if (auto r = server_->listen({agent.socket_path, agent.socket_mode, agent.socket_group}); !r) {
        return r;
    }
    log_.info("listening", {{"surface", "socket"}, {"address", agent.socket_path.string()}});
    return {};
}

void ControlService::stop() {
    if (server_) {
        server_->stop();
    }
}

std::string ControlService::refusal(const surfaces::PeerCredentials& peer) const {
    const std::string who = "uid " + std::to_string(peer.uid) + " (gid " + std::to_string(peer.gid) + ")";
    if (context_.config_path().empty()) {
        return who + " may not use this agent: it serves only root and its own user";
    }
    return who + " may not use this agent: add the uid to allowed_uids, or the group to allowed_gids, in " +
           context_.config_path().string();
}

void ControlService::handle(std::string_view line, surfaces::ControlReply reply) {
    const surfaces::PeerCredentials& peer = reply.peer();
    const auto& agent = context_.configuration().agent;
    if (!surfaces::peer_allowed(peer, ::geteuid(),
                                surfaces::AccessList{agent.allowed_uids, agent.allowed_gids})) {
        log_.warning("socket_peer_refused", {{"uid", peer.uid}, {"gid", peer.gid}, {"pid", peer.pid}});
        reply.send(error_reply(Errc::peer_refused, refusal(peer)));
        return;
    }
    auto request = control::parse_control_request(line);
    if (!request) {
        reply.send(Secret(control::format_error_reply(request.error())));
        return;
    }
    switch (request->kind) {
        case control::ControlRequest::Kind::status:
            reply.send(control::format_ok_reply(policy::status_json(context_.snapshot())));
            return;
        case control::ControlRequest::Kind::refresh:
            answer_refresh(std::move(reply), request->profile);
            return;
        case control::ControlRequest::Kind::reload:
            answer_reload(std::move(reply));
            return;
        case control::ControlRequest::Kind::credentials:
            answer_credentials(std::move(reply), request->profile, request->min_seconds);
            return;
    }
}

void ControlService::answer_credentials(surfaces::ControlReply reply,
                                        const std::string& name,
                                        int min_seconds) {
    auto profile = context_.profile(name);
    if (!profile) {
        reply.send(error_reply(
            Errc::usage, "no profile named \"" + name + "\" in " + context_.configuration().path.string()));
        return;
    }
    // Answered now, or when the refresh the client needs completes, with whatever is then served: fresh
    // credentials are as good as it gets, even for a short session.
    auto waiting = std::make_shared<surfaces::ControlReply>(std::move(reply));
    std::weak_ptr<ProfileRuntime> weak = profile;
    profile->ask(min_seconds, [waiting, weak] {
        if (auto p = weak.lock()) {
            waiting->send(credentials_reply(p->served()));
        }
    });
}

// answer_refresh: an operator's `refresh` runs the profile's refresh now (or joins the one running) and
// answers when it completes. Clients admitted only by allowed_uids/allowed_gids may not: a refresh is a
// CreateSession call, and those are the host's to spend, not every local user's.
void ControlService::answer_refresh(surfaces::ControlReply reply, const std::string& name) {
    if (!surfaces::may_ask_for_refresh(reply.peer(), ::geteuid())) {
        reply.send(
            error_reply(Errc::peer_refused, "uid " + std::to_string(reply.peer().uid) +
                                                " may not ask for refreshes: only root and the agent's "
                                                "own user may"));
        return;
    }
    auto profile = context_.profile(name);
    if (!profile) {
        reply.send(error_reply(Errc::usage, "no profile named \"" + name + "\""));
        return;
    }
    auto waiting = std::make_shared<surfaces::ControlReply>(std::move(reply));
    std::weak_ptr<ProfileRuntime> weak = profile;
    ControlContext& context = context_;
    profile->refresh([waiting, weak, &context] {
        auto p = weak.lock();
        if (!p) {
            return;
        }
        if (const auto& error = p->engine().last_error()) {
            waiting->send(Secret(control::format_error_reply(*error)));
        } else {
            waiting->send(control::format_ok_reply(policy::profile_status_json(context.snapshot_of(*p))));
        }
    });
}

void ControlService::answer_reload(surfaces::ControlReply reply) {
    if (!surfaces::may_ask_for_refresh(reply.peer(), ::geteuid())) {
        reply.send(error_reply(Errc::peer_refused, "uid " + std::to_string(reply.peer().uid) +
                                                       " may not reload the agent: only root and the agent's "
                                                       "own user may"));
        return;
    }
    auto summary = context_.reload();
    if (!summary) {
        reply.send(Secret(control::format_error_reply(summary.error())));
        return;
    }
    reply.send(control::format_ok_reply(*summary));
}

}  // namespace rad::agent
