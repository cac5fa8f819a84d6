#pragma once
// The agent's runtime, shared by the files that implement it (agent*.cpp): one Profile per configured
// identity and the Agent that wires the surfaces, the refresh scheduling, reloads and the handover to the
// event loop. Private to daemon/: run_agent() (agent.hpp) is the way in. Every member of Agent runs on the
// event loop's thread; refreshes run on workers and post their outcome back (agent_refresh.cpp).

#include "daemon/agent/agent.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <csignal>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "common/encoding.hpp"
#include "common/file_read.hpp"
#include "common/time_format.hpp"
#include "common/unique_fd.hpp"
#include "daemon/control/control_protocol.hpp"
#include "daemon/policy/credential_cache.hpp"
#include "daemon/policy/credentials_answer.hpp"
#include "daemon/policy/reload_plan.hpp"
#include "daemon/policy/snapshot.hpp"
#include "daemon/surfaces/control_server.hpp"
#include "daemon/surfaces/credentials_file.hpp"
#include "daemon/surfaces/ecs.hpp"
#include "daemon/surfaces/health.hpp"
#include "daemon/surfaces/http_server.hpp"
#include "daemon/surfaces/imds.hpp"
#include "daemon/surfaces/router.hpp"
#include "daemon/systemd/handover.hpp"
#include "daemon/systemd/systemd.hpp"
#include "pki/hmac.hpp"
#include "signer/credentials.hpp"

namespace rad::daemon::agent_detail {

namespace net = boost::asio;

using SteadyClock = std::chrono::steady_clock;
using WallClock = std::chrono::system_clock;

// RefreshReason says why a refresh ran (the refresh_ok / refresh_failed lines carry it).
enum class RefreshReason {
    startup,     // the first refresh of a profile
    timer,       // the scheduled refresh point of the credentials held
    retry,       // the scheduled retry after a failure
    fast_path,   // a credential-process client needed more lifetime than the cache held
    reload,      // a reload changed the profile's identity or CreateSession settings, or added it
    rotation,    // the certificate, key or a secret file changed on disk
    wall_clock,  // the wall clock says the credentials held have expired (suspend, clock set forward)
    command,     // an operator ran `rolesanywhere-agent refresh`
    client,      // a client waits for the first credentials (e.g. the one that socket-activated the agent)
};

const char* refresh_reason_name(RefreshReason reason) noexcept;

// FileStamp identifies one version of a file: a rotation (rename over, or rewrite in place) changes it.
struct FileStamp {
    dev_t device = 0;
    ino_t inode = 0;
    off_t size = 0;
    std::int64_t mtime_ns = 0;
    std::int64_t ctime_ns = 0;
    bool exists = false;
    bool operator==(const FileStamp&) const = default;
};

FileStamp stamp_of(const std::string& path);

// identity_stamps are the stamps of every file an identity is loaded from, in a fixed order.
std::vector<FileStamp> identity_stamps(const config::IdentitySpec& identity);

// socket_local_address is the address a listening TCP socket is bound to (getsockname), or nullopt.
std::optional<config::ListenAddress> socket_local_address(int fd);

signer::Credentials clone_credentials(const signer::Credentials& c);

// whole_seconds is a duration as a log field's number of seconds.
std::int64_t whole_seconds(std::chrono::steady_clock::duration d);

// role_name_and_account extracts what IMDS and ECS show of the role: its name (last path segment) and
// account.
std::pair<std::string, std::string> role_name_and_account(const std::string& role_arn);

// ensure_token_file returns the ECS token: the file's content, or a new random token written 0400 (no
// trailing newline: every SDK refuses a token containing CR or LF); `created` says which.
Result<Secret> ensure_token_file(const std::filesystem::path& path, bool* created = nullptr);

// random_secret draws `size` bytes from the kernel's random generator (getrandom): the IMDS token key and the
// ECS token. Error internal when the kernel refuses.
Result<Secret> random_secret(std::size_t size);

// Profile is one identity's runtime state; owned by shared_ptr so that a refresh running on a worker thread
// keeps it alive across a SIGHUP that removes it.
struct Profile {
    Profile(net::io_context& io,
            config::ProfileConfig cfg,
            const config::AgentSettings& agent,
            SteadyClock::time_point first_refresh)
        : config(std::move(cfg)),
          worker_config(std::make_shared<const config::ProfileConfig>(config)),
          cache(settings_from(agent), first_refresh),
          timer(io),
          surface_retry(io) {
        std::tie(imds.role_name, account_id) = role_name_and_account(config.role_arn);
        imds.allow_imdsv1 = agent.allow_imdsv1;
    }

    static RefreshSettings settings_from(const config::AgentSettings& agent) {
        RefreshSettings s;
        s.refresh_at_min = agent.refresh_window_min;
        s.refresh_at_max = agent.refresh_window_max;
        s.retry_cap = std::chrono::seconds(agent.retry_cap_seconds);
        return s;
    }

    config::ProfileConfig config;
    // worker_config is what a refresh on a worker thread prepares its session from: a copy of `config`,
    // which a reload replaces on the event loop meanwhile.
    std::shared_ptr<const config::ProfileConfig> worker_config;
    std::shared_ptr<const PreparedSession> session;  // the identity in use; replaced when the files change
    std::vector<FileStamp> stamps;                   // of the files `session` was loaded from
    ProfileCache cache;
    net::steady_timer timer;
    WallClock::time_point last_updated{};
    SteadyClock::time_point wall_clock_refresh_for{};  // `received` of the set the clock watch refreshed
    ImdsSettings imds;
    std::string account_id;
    Secret ecs_token;
    std::vector<std::unique_ptr<HttpServer>> imds_servers;
    std::vector<std::string> imds_addresses;  // where imds_servers actually listen (status)
    // waiters are fast-path clients that asked for more lifetime than the cache holds; answered when the
    // refresh they triggered completes.
    std::vector<std::function<void()>> waiters;
    std::map<std::string, std::uint64_t> refresh_outcomes;  // "ok", "retryable", "rejected"
    LatencyHistogram create_session_seconds;
    // settings_changed: a SIGHUP changed the profile; the identity is prepared again at the next refresh.
    bool settings_changed = false;
    bool listeners_pending = false;
    // identity_failed_stamps: the last refresh could not load the identity from files with these stamps. Any
    // change to them (the matching key of a renewal arriving after its certificate, a corrected PIN file) is
    // tried at once instead of after the failure's backoff: loading local files costs no CreateSession.
    std::optional<std::vector<FileStamp>> identity_failed_stamps;
    // surfaces that can fail on their own ("credentials_file", "ecs_token", "imds"): the failure shows in
    // status, /healthz and /metrics and is retried by surface_retry with a backoff.
    struct SurfaceState {
        std::optional<Error> error;
        std::uint64_t failures = 0;
    };
    std::map<std::string, SurfaceState> surfaces;
    net::steady_timer surface_retry;
    int surface_retry_attempts = 0;
    // The credentials file is written by one worker job at a time, always with the credentials held then.
    bool file_write_in_flight = false;
    bool file_write_again = false;
    // first_refresh_done: a refresh of this process has completed (or credentials were handed over). Until
    // then the profile's IMDS listeners, and the ECS listener, hold new connections (see hold_listeners()).
    bool first_refresh_done = false;
};

class Agent {
public:
    Agent(AgentOptions options, Logger& log)
        : options_(std::move(options)),
          log_(log),
          signals_(io_, SIGTERM, SIGINT, SIGHUP),
          rng_(std::random_device{}()),
          tokens_([this](std::string_view message) { return hmac_->sign(message); }) {}

    int run();

private:
    // startup_exit_code is the exit status for a profile that cannot start. The one-shot commands exit with
    // the failure's own code (65 for an expired certificate, 77 for a refused PIN, ...); for the service
    // every such failure is the operator's to fix in what the configuration points at, so it exits 78
    // (EX_CONFIG), which the unit's RestartPreventExitStatus keeps from a restart loop that would, with a
    // refused PIN, walk the token into lock-out. A device that cannot be reached yet (69) or a failure of
    // our own (70) may pass, so those are left to Restart=on-failure.
    static int startup_exit_code(Errc code) noexcept;

    // --- Holding clients until there is something to serve
    // ---------------------------------------------------

    // hold_listeners makes the IMDS listeners of profiles that hold no credentials yet, and the ECS listener
    // while any of its profiles holds none, leave new clients in the listen backlog until that first refresh
    // completes (release_listeners), rather than answer 503 "the first CreateSession is in progress": the
    // client that socket-activated the agent, and those of a boot, get credentials after a short wait. A
    // client seen waiting hurries a refresh the startup jitter would delay, like the fast path does. kHoldCap
    // bounds the hold whatever happens to the refresh.
    static constexpr std::chrono::seconds kHoldCap{30};

    void hold_listeners();

    void release_listeners(Profile& profile);

    // --- Handover across restarts (systemd's file-descriptor store)
    // -----------------------------------------

    static constexpr std::size_t kMaxHandover = 1024 * 1024;

    // take_handover reads what the previous process stored; an unreadable or foreign one is logged and
    // ignored (the agent then starts as on a fresh boot).
    Handover take_handover();

    // set_token_key keys the IMDS tokens with the handed-over key (tokens clients hold stay valid across a
    // restart), or with 32 new random bytes.
    Result<void> set_token_key(Secret handed_over);

    // adopt_handed_over gives the profile the credentials the previous process held for it, if they were
    // issued for the same role and settings and are not expired; true when it did.
    bool adopt_handed_over(Profile& profile, Handover& handover);

    // store_handover replaces what systemd keeps for the next process with what this one holds now. A no-op
    // outside systemd.
    void store_handover();

    // load_identity_now prepares the session synchronously at startup, so that a broken key or certificate
    // is reported before the agent says it is ready.
    Result<void> load_identity_now(Profile& profile);

    // prepare_files checks at start what the surfaces write: each credentials file can be written, and each
    // ECS token file is read or created. It runs once the listeners are open, so that a start failing there
    // leaves no token file behind; the token files a failing start created are removed again.
    Result<void> prepare_files();

    void log_identity(const Profile& profile);

    struct ExpiryWarning {
        std::string serial;
        WallClock::time_point at;
    };

    // limits of the credential surfaces (IMDS, ECS): loopback peers only. A listener may be bound to another
    // address (or reached through route_localnet + DNAT), but credentials never leave the host; the health
    // endpoint (no secrets) may be scraped from elsewhere.
    HttpServerLimits limits(bool credentials = true) const;

    Result<void> open_imds(const std::shared_ptr<Profile>& profile);

    Result<void> open_listeners();

    // listen_or_adopt serves `surface` (of `profile`, for IMDS) on the socket systemd passed under its
    // FileDescriptorName= ("imds-PROFILE", "ecs", "health"; a single-profile agent also takes plain "imds")
    // when there is one, else binds the configured address itself. It logs and returns the address actually
    // served. An activated socket is used whatever its address, since the socket unit decides where clients
    // connect; one that differs from the configuration is reported as a warning, naming both.
    Result<std::string> listen_or_adopt(HttpServer& server,
                                        const std::string& surface,
                                        const std::string& profile,
                                        const config::ListenAddress& address);

    SurfaceResponse count(const char* surface, SurfaceResponse response);

    // snapshot is what `status`, /healthz and /metrics report, taken now.
    AgentSnapshot snapshot() const;

    ProfileSnapshot snapshot_of(const Profile& profile) const;

    // ecs_profile is what the container endpoint serves at `path`.
    std::optional<EcsProfile> ecs_profile(std::string_view path) const;

    ServedCredentials serve(const Profile& profile) const;

    // --- The Unix socket (credential_process fast path, status) -------------------------------------------

    Result<void> open_control_socket();

    // peer_refusal is what a refused peer is told (one line; it names no secret).
    std::string peer_refusal(const PeerCredentials& peer) const;

    // credentials_reply answers a credentials request with what the cache holds: the credentials, or why
    // none.
    static Secret credentials_reply(const Result<const CachedCredentials*>& current);

    // handle_control answers one line of the Unix socket (control_protocol.hpp).
    void handle_control(std::string_view line, ControlReply reply);

    // handle_refresh_request: an operator's `refresh` runs the profile's refresh now (or joins the one
    // running) and answers when it completes. Clients admitted only by allowed_uids/allowed_gids may not: a
    // refresh is a CreateSession call, and those are the host's to spend, not every local user's.
    void handle_refresh_request(ControlReply reply, const std::string& name);

    std::shared_ptr<Profile> find(std::string_view name) const;

    std::filesystem::path credentials_path(const Profile& profile) const;

    // --- Refresh -------------------------------------------------------------------------------------------

    void schedule(const std::shared_ptr<Profile>& profile);

    void refresh_now(const std::shared_ptr<Profile>& profile, RefreshReason reason);

    struct RefreshOutcome {
        RefreshReason reason = RefreshReason::timer;
        std::optional<double> create_session_seconds;        // set when CreateSession was attempted
        std::shared_ptr<const PreparedSession> new_session;  // set when the identity was (re)loaded
        bool identity_failed = false;                        // the identity could not be loaded
        std::vector<FileStamp> stamps;
        Result<signer::Credentials> credentials = make_error(Errc::internal, "not run");
    };

    // start_refresh runs one refresh on a worker thread. The worker holds only values and shared immutable
    // state (the options and the prepared session), never the Profile: a profile that a reload removes
    // meanwhile is destroyed on the event loop, with its timers and servers, and its completion is dropped.
    void start_refresh(const std::shared_ptr<Profile>& profile, RefreshReason reason);

    void finish_refresh(const std::shared_ptr<Profile>& profile, RefreshOutcome& outcome);

    // notify_status tells systemd one line about every profile (`systemctl status` shows it).
    void notify_status();

    // write_credentials_file_soon writes the credentials held now to the profile's credentials file on a
    // worker; a write already running is followed by one more with whatever is held when it ends.
    void write_credentials_file_soon(const std::shared_ptr<Profile>& profile);

    void finish_credentials_file_write(const std::shared_ptr<Profile>& profile,
                                       const Result<void>& result,
                                       const std::filesystem::path& path);

    // --- Surfaces that fail on their own
    // ---------------------------------------------------------------------

    // surface_failed records the failure (status, /healthz, /metrics), logs it and retries the profile's
    // failing surfaces after 1, 2, 4 ... 60 s: local I/O costs no CreateSession.
    void surface_failed(const std::shared_ptr<Profile>& profile,
                        const std::string& surface,
                        const Error& error);

    void surface_ok(const std::shared_ptr<Profile>& profile, const std::string& surface);

    void retry_surfaces(const std::shared_ptr<Profile>& profile);

    // load_ecs_token reads (or creates) the profile's ECS token file; a failure is the surface's.
    bool load_ecs_token(const std::shared_ptr<Profile>& profile);

    void open_imds_or_record(const std::shared_ptr<Profile>& profile);

    // --- Signals -------------------------------------------------------------------------------------------

    void wait_for_signal();

    // start_watchdog pings systemd from a timer on the event loop itself, at half of WatchdogSec=, so that a
    // wedged loop stops the pings and gets the agent restarted.
    void start_watchdog();

    void arm_watchdog();

    // arm_clock_watch compares the wall clock with each profile's Expiration once a second, and looks at the
    // identity files of profiles whose identity did not load (identity_failed_stamps). The refresh
    // timers run on the monotonic clock, which stands still while the host sleeps and ignores a clock that is
    // set forward: after either, credentials that are really expired would wait for a timer that has not
    // fired. Each set held triggers at most one such refresh, so a wall clock that stays ahead cannot turn
    // this into a loop (CreateSession refuses a clock more than 5 minutes off anyway).
    void arm_clock_watch();

    void stop();

    // reload re-reads the configuration (or, for a flag-built agent, just re-checks the identity files).
    // Profiles that were added start; removed ones stop; changed ones pick up their new settings at a refresh
    // started now. Changes to the agent-wide listeners (ECS address, socket) need a restart and are reported
    // as such.
    void reload();

    void do_reload();

    // refresh_if_rotated refreshes a profile whose certificate, key or secret files changed since its
    // identity was loaded (or since it last failed to load); true when it did.
    bool refresh_if_rotated(const std::shared_ptr<Profile>& profile);

    AgentOptions options_;
    Logger& log_;
    net::io_context io_;
    net::thread_pool workers_{2};
    net::signal_set signals_;
    std::mt19937_64 rng_;
    std::unique_ptr<pki::HmacKey> hmac_;
    Secret token_key_;  // hmac_'s bytes, handed over to the next process
    ImdsTokens tokens_;
    std::vector<std::shared_ptr<Profile>> profiles_;
    std::unique_ptr<HttpServer> ecs_server_;
    std::string ecs_address_;  // where ecs_server_ actually listens (status)
    std::unique_ptr<HttpServer> health_server_;
    ActivatedSockets activated_;
    RequestCounts requests_;
    net::steady_timer watchdog_{io_};
    net::steady_timer clock_watch_{io_};
    net::steady_timer hold_cap_{io_};
    std::map<std::string, ExpiryWarning> expiry_warned_;  // profile name → the last certificate_expiring
    std::chrono::milliseconds watchdog_period_{0};
    std::unique_ptr<ControlServer> control_;
    bool stopping_ = false;
};

}  // namespace rad::daemon::agent_detail
