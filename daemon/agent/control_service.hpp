#pragma once
// ControlService answers the agent's Unix socket (control_protocol.hpp): a fast-path client's credentials,
// `status`, `refresh` and `reload`. Who may ask what is decided here: every peer the access list admits
// (root, the agent's own user, allowed_uids, allowed_gids) reads credentials and status; only root and the
// agent's own user spend CreateSession calls (refresh) or change what the agent runs (reload). A refused
// peer is told so in one line, and the refusal is logged with its uid, gid and pid. Loop thread only.

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "common/log.hpp"
#include "config/config.hpp"
#include "daemon/agent/profile_runtime.hpp"
#include "daemon/policy/snapshot.hpp"
#include "daemon/surfaces/control_server.hpp"
#include "daemon/systemd/systemd.hpp"

namespace rad::agent {

// ControlContext is what the Unix socket's requests read of, and ask of, the running agent.
class ControlContext {
public:
    virtual ~ControlContext() = default;
    virtual const config::AgentConfig& configuration() const = 0;
    // config_path is the file the agent reloads from ("" when it runs from command-line flags).
    virtual const std::filesystem::path& config_path() const = 0;
    virtual std::shared_ptr<ProfileRuntime> profile(std::string_view name) const = 0;
    virtual policy::AgentSnapshot snapshot() const = 0;
    virtual policy::ProfileSnapshot snapshot_of(const ProfileRuntime& profile) const = 0;
    // reload re-reads the configuration; the summary of what changed (JSON), or why it was refused.
    [[nodiscard]] virtual Result<std::string> reload() = 0;
};

class ControlService {
public:
    ControlService(boost::asio::io_context& io, Logger& log, ControlContext& context);
    ~ControlService();
    ControlService(const ControlService&) = delete;
    ControlService& operator=(const ControlService&) = delete;

    // open serves the socket systemd passed as "socket", else binds the configured path.
    [[nodiscard]] Result<void> open(systemd::ActivatedSockets& activated);
    void stop();

private:
    void handle(std::string_view line, surfaces::ControlReply reply);
    void answer_credentials(surfaces::ControlReply reply, const std::string& profile, int min_seconds);
    void answer_refresh(surfaces::ControlReply reply, const std::string& profile);
    void answer_reload(surfaces::ControlReply reply);
    std::string refusal(const surfaces::PeerCredentials& peer) const;

    boost::asio::io_context& io_;
    Logger& log_;
    ControlContext& context_;
    std::unique_ptr<surfaces::ControlServer> server_;
};

}  // namespace rad::agent
