#pragma once
// ProfileRuntime is one profile of the running agent: its engine (engine/profile_engine.hpp), which decides
// everything about the profile's life over time, and the I/O that engine asks for, done on the agent's event
// loop: loading the identity, signing and sending CreateSession, writing the credentials file, reading the
// ECS token file, a timer at the engine's wake time, and a look at the identity files once a second. Keys on
// a PKCS#11 token or in a TPM block while they load and sign, so those two steps run on the agent's key pool
// and come back to the loop. Every member runs on the loop's thread, and the runtime dies there: work on the
// key pool holds only immutable inputs and a weak_ptr.

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "config/config.hpp"
#include "daemon/agent/file_stamps.hpp"
#include "daemon/engine/engine_driver.hpp"
#include "daemon/engine/profile_engine.hpp"
#include "daemon/surfaces/served_credentials.hpp"
#include "daemon/upstream/https_client.hpp"
#include "daemon/upstream/prepared_session.hpp"

namespace rad::agent {

class ProfileRuntime : public std::enable_shared_from_this<ProfileRuntime> {
public:
    // Hooks are what the agent hears from a profile, on the loop.
    struct Hooks {
        // credentials_changed: new credentials are servable (clients held back may go; the handover changed).
        std::function<void(ProfileRuntime&)> credentials_changed;
        // retry_surface: the engine asks to try a failing surface of the agent's again ("imds").
        std::function<void(ProfileRuntime&, const std::string& surface)> retry_surface;
        // changed: something status reports may have changed; `refreshed` when a refresh ended in the step.
        std::function<void(bool refreshed)> changed;
    };

    ProfileRuntime(boost::asio::io_context& io,
                   boost::asio::thread_pool& key_pool,
                   Logger& log,
                   config::ProfileConfig config,
                   engine::EngineSettings settings,
                   std::uint64_t seed,
                   Hooks hooks);
    ProfileRuntime(const ProfileRuntime&) = delete;
    ProfileRuntime& operator=(const ProfileRuntime&) = delete;

    // start begins the engine's life, with credentials a previous process handed over, if any. The first
    // identity load runs before start() returns when the key is a file (the agent's start reports a profile
    // that cannot load before it says it is ready).
    void start(std::optional<engine::HandedOver> handed_over);
    // stop ends it: nothing more is sent, a CreateSession in flight is cancelled, waiting clients are
    // dropped.
    void stop();
    // reconfigure takes a reloaded configuration of this profile.
    void reconfigure(config::ProfileConfig config, engine::EngineSettings settings, bool credentials_changed);
    // look is the agent's once-a-second look: at the identity files (a change is a renewal to load now), and
    // at the clocks (a Tick).
    void look();

    // served is what a surface hands out now (the engine's decision).
    surfaces::ServedCredentials served() const;
    // client_waiting: an HTTP client found nothing to serve.
    void client_waiting();
    // ask is a fast-path client's request for `min_seconds` of lifetime (negative: the default): `answer` is
    // called, at once or when the refresh it needs completes, and then reads served().
    void ask(int min_seconds, std::function<void()> answer);
    // refresh is an operator's `refresh`: `done` is called when it completes.
    void refresh(std::function<void()> done);
    // surface_failed / surface_recovered report a surface of the agent's for this profile ("imds").
    void surface_failed(const std::string& surface, const Error& error);
    void surface_recovered(const std::string& surface);

    // The ECS token file: read (or created) at start and retried by the engine when it fails.
    bool load_ecs_token();
    void set_ecs_token(Secret token) { ecs_token_ = std::move(token); }
    const Secret& ecs_token() const noexcept { return ecs_token_; }

    const config::ProfileConfig& config() const noexcept { return config_; }
    // role_name and account_id are what IMDS and the container endpoint show of the role.
    const std::string& role_name() const noexcept { return role_name_; }
    const std::string& account_id() const noexcept { return account_id_; }
    const std::string& name() const noexcept { return config_.name; }
    const engine::ProfileEngine& engine() const noexcept { return engine_; }
    std::filesystem::path credentials_path() const;
    // handed_over is what the next process of the agent should get of this profile, if anything.
    std::optional<engine::HandedOver> handed_over() const;
    void fill_snapshot(policy::ProfileSnapshot& snapshot) const;

private:
    bool notice_file_changes();
    void dispatch(engine::Event event);
    void execute(engine::Command& command);
    void arm_timer();
    void load_identity();
    void identity_prepared(Result<upstream::PreparedSession> prepared);
    void send_create_session();
    void transmit(std::shared_ptr<const upstream::PreparedSession> session, signer::HttpRequest request);
    void write_credentials_file();
    void answer_waiters();

    boost::asio::io_context& io_;
    boost::asio::thread_pool& key_pool_;
    Logger& log_;
    config::ProfileConfig config_;
    engine::ProfileEngine engine_;
    Hooks hooks_;
    boost::asio::steady_timer timer_;
    // The identity the engine last loaded, and the stamps of its files as last seen.
    std::shared_ptr<const upstream::PreparedSession> session_;
    std::vector<FileStamp> seen_stamps_;
    std::shared_ptr<upstream::PendingExchange> exchange_;
    std::vector<std::function<void()>> waiters_;
    Secret ecs_token_;
    std::string role_name_;
    std::string account_id_;
    engine::EngineDriver driver_;
    // load_in_place: the agent's start waits for the first load, even of a device key.
    bool load_in_place_ = false;
    bool refreshed_ = false;  // a refresh ended in the step being run
};

// role_name_and_account are the role's name (the last segment of its ARN's resource) and account.
std::pair<std::string, std::string> role_name_and_account(const std::string& role_arn);

// identity_info is what the engine knows of a loaded identity.
engine::IdentityInfo identity_info(const pki::Identity& identity);

// loading_may_block: the identity lives on a PKCS#11 token or in a TPM, whose loads and signatures block.
bool loading_may_block(const config::IdentitySpec& identity);

}  // namespace rad::agent
