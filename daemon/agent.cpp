#include "daemon/agent.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/encoding.hpp"
#include "common/file_read.hpp"
#include "common/time_format.hpp"
#include "common/unique_fd.hpp"
#include "daemon/control_protocol.hpp"
#include "daemon/credential_cache.hpp"
#include "daemon/credentials_answer.hpp"
#include "daemon/credentials_file.hpp"
#include "daemon/handover.hpp"
#include "daemon/health.hpp"
#include "daemon/http_server.hpp"
#include "daemon/reload_plan.hpp"
#include "daemon/request_guard.hpp"
#include "daemon/surfaces.hpp"
#include "daemon/systemd.hpp"
#include "pki/hmac.hpp"
#include "signer/credentials.hpp"

namespace rad::daemon {

namespace net = boost::asio;
using unix_stream = net::local::stream_protocol;

CredentialOptions credential_options_from_profile(const config::ProfileConfig& profile) {
    CredentialOptions o;
    o.identity.certificate = profile.certificate.string();
    o.identity.private_key = profile.private_key.string();
    o.identity.intermediates = profile.intermediates.string();
    o.identity.pkcs8_password_file = profile.passphrase_file.string();
    if (profile.passphrase_value) {
        o.identity.pkcs8_password.emplace(profile.passphrase_value->clone());
    }
    o.identity.allow_insecure_key_permissions = profile.allow_insecure_key_permissions;
    o.identity.pkcs11_lib = profile.pkcs11_lib.string();
    o.identity.pin_file = profile.pin_file.string();
    o.identity.reuse_pin = profile.reuse_pin;
    o.identity.tpm_tcti = profile.tpm_tcti;
    o.identity.tpm_key_password_file = profile.tpm_key_password_file.string();
    o.identity.tpm_parent_password_file = profile.tpm_parent_password_file.string();
    if (profile.tpm_key_password_value) {
        o.identity.tpm_key_password.emplace(profile.tpm_key_password_value->clone());
    }
    o.trust_anchor_arn = profile.trust_anchor_arn;
    o.profile_arn = profile.profile_arn;
    o.role_arn = profile.role_arn;
    o.region = profile.region;
    o.endpoint = profile.endpoint;
    o.use_fips_endpoint = profile.use_fips_endpoint;
    o.ca_bundle = profile.ca_bundle.string();
    o.no_verify_ssl = profile.no_verify_ssl;
    o.session_duration = profile.session_duration;
    o.role_session_name = profile.role_session_name;
    o.connect_timeout_seconds = profile.connect_timeout_seconds;
    o.timeout_seconds = profile.timeout_seconds;
    return o;
}

Result<void> check_profile_settings(const config::ProfileConfig& profile) {
    auto resolved = signer::resolve_endpoint(endpoint_options(credential_options_from_profile(profile)));
    if (resolved) {
        return {};
    }
    // The signer names command-line flags; point at the key of the file instead.
    static constexpr std::pair<std::string_view, std::string_view> kFlagKeys[] = {
        {"--trust-anchor-arn", "trust_anchor_arn"},
        {"--profile-arn", "profile_arn"},
        {"--role-arn", "role_arn"},
        {"--region", "region"},
        {"--endpoint", "endpoint"},
        {"--use-fips-endpoint", "use_fips_endpoint"}};
    const std::string& message = resolved.error().message;
    std::string_view key;
    std::size_t first = std::string::npos;
    for (const auto& [flag, config_key] : kFlagKeys) {
        const auto at = message.find(flag);
        if (at < first) {
            first = at;
            key = config_key;
        }
    }
    const std::string where = profile.source.where(key);
    const std::string field = key.empty() ? "" : "." + std::string(key);
    return make_error(Errc::config_invalid, where + ": profiles." + profile.name + field + ": " + message);
}

namespace {

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

const char* refresh_reason_name(RefreshReason reason) noexcept {
    switch (reason) {
        case RefreshReason::startup:
            return "startup";
        case RefreshReason::timer:
            return "timer";
        case RefreshReason::retry:
            return "retry";
        case RefreshReason::fast_path:
            return "fast_path";
        case RefreshReason::reload:
            return "reload";
        case RefreshReason::rotation:
            return "rotation";
        case RefreshReason::wall_clock:
            return "wall_clock";
        case RefreshReason::command:
            return "command";
        case RefreshReason::client:
            return "client";
    }
    return "timer";
}

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

FileStamp stamp_of(const std::string& path) {
    FileStamp stamp;
    struct stat st {};
    if (path.empty() || ::stat(path.c_str(), &st) != 0) {
        return stamp;
    }
    stamp.device = st.st_dev;
    stamp.inode = st.st_ino;
    stamp.size = st.st_size;
    stamp.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    stamp.ctime_ns = static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
    stamp.exists = true;
    return stamp;
}

std::vector<FileStamp> identity_stamps(const CredentialOptions& o) {
    return {stamp_of(o.identity.certificate),
            stamp_of(o.identity.private_key),
            stamp_of(o.identity.intermediates),
            stamp_of(o.identity.pkcs8_password_file),
            stamp_of(o.identity.pin_file),
            stamp_of(o.identity.tpm_key_password_file),
            stamp_of(o.identity.tpm_parent_password_file)};
}

// socket_accepts_connections: something listens on the Unix socket at `path` (connect succeeds, or the
// listener's backlog is full). A connection refused means a stale file of an agent that is gone.
bool socket_accepts_connections(const std::string& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof(address.sun_path)) {
        return false;
    }
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return false;
    }
    const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
    const int err = errno;
    ::close(fd);
    return rc == 0 || err == EAGAIN || err == EINPROGRESS;
}

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

signer::Credentials clone_credentials(const signer::Credentials& c) {
    return signer::Credentials{c.access_key_id, c.secret_access_key.clone(), c.session_token.clone(),
                               c.expiration};
}

// whole_seconds is a duration as a log field's number of seconds.
std::int64_t whole_seconds(std::chrono::steady_clock::duration d) {
    return std::chrono::duration_cast<std::chrono::seconds>(d).count();
}

// role_name_and_account extracts what IMDS and ECS show of the role: its name (last path segment) and
// account.
std::pair<std::string, std::string> role_name_and_account(const std::string& role_arn) {
    auto arn = signer::parse_arn(role_arn, "role_arn");
    if (!arn) {
        return {"rolesanywhere-role", ""};
    }
    const auto slash = arn->resource.rfind('/');
    return {slash == std::string::npos ? arn->resource : arn->resource.substr(slash + 1), arn->account};
}

// ensure_token_file returns the ECS token: the file's content, or a new random token written 0400 (no
// trailing newline: every SDK refuses a token containing CR or LF); `created` says which.
Result<Secret> ensure_token_file(const std::filesystem::path& path, bool* created = nullptr) {
    if (std::filesystem::exists(path)) {
        // A token provisioned to be shared with a group of clients may be group-readable (0640 root:GROUP).
        auto token = read_secret_file(path, SecretFilePolicy{.allow_group_read = true});
        if (!token) {
            return token.error();
        }
        std::string& text = token->reveal_mutable();
        while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) {
            text.pop_back();
        }
        if (text.empty() || text.find_first_of("\r\n") != std::string::npos) {
            return make_error(Errc::config_invalid,
                              path.string() + ": the token must be one line, not empty");
        }
        return std::move(*token);
    }
    std::array<std::uint8_t, 32> random{};
    if (::getrandom(random.data(), random.size(), 0) != static_cast<ssize_t>(random.size())) {
        return make_error(Errc::internal, "getrandom failed");
    }
    std::string encoded = hex_lower(random);
    explicit_bzero(random.data(), random.size());
    Secret token(std::move(encoded));
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (auto r = replace_file_atomically(path, token.reveal(), 0400); !r) {
        return make_error(Errc::config_invalid,
                          path.string() + ": cannot write the token file: " + r.error().message);
    }
    if (created != nullptr) {
        *created = true;
    }
    return token;
}

// Profile is one identity's runtime state; owned by shared_ptr so that a refresh running on a worker thread
// keeps it alive across a SIGHUP that removes it.
struct Profile {
    Profile(net::io_context& io,
            config::ProfileConfig cfg,
            const config::AgentSettings& agent,
            SteadyClock::time_point first_refresh)
        : config(std::move(cfg)),
          options(std::make_shared<const CredentialOptions>(credential_options_from_profile(config))),
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
    std::shared_ptr<const CredentialOptions> options;
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

    int run() {
        // What systemd passes: the listening sockets, and what the previous process of this service left in
        // its file-descriptor store (read, then closed: systemd keeps its own copy until replaced).
        activated_ = ActivatedSockets::from_environment();
        Handover handover = take_handover();
        if (auto r = set_token_key(std::move(handover.token_key)); !r) {
            log_.error("startup_failed", {{"error", r.error().message}});
            return exit_code(r.error().code);
        }

        for (const auto& cfg : options_.config.profiles) {
            if (auto r = check_profile_settings(cfg); !r) {
                log_.error("profile_invalid", {{"profile", cfg.name}, {"error", r.error().message}});
                return exit_code(r.error().code);
            }
            // A fleet restarting together (power event, mass deploy) would otherwise call CreateSession in
            // the same second everywhere; startup_jitter_seconds spreads the first calls.
            const auto jitter = std::chrono::milliseconds(
                static_cast<long long>(std::uniform_real_distribution<double>(0.0, 1.0)(rng_) *
                                       options_.config.agent.startup_jitter_seconds * 1000.0));
            auto profile =
                std::make_shared<Profile>(io_, cfg, options_.config.agent, SteadyClock::now() + jitter);
            const bool adopted = adopt_handed_over(*profile, handover);
            if (auto r = load_identity_now(*profile); !r) {
                log_.error("profile_invalid", {{"profile", cfg.name},
                                               {"code", errc_name(r.error().code)},
                                               {"error", r.error().message}});
                // Credentials handed over by the previous process stay in service (e.g. a restart for a
                // renewal whose key has not arrived yet: the next restart brings it); the failure shows in
                // status and STATUS=, and the refresh that fails again records it. Without them there is
                // nothing to serve, and the configuration is the operator's to fix.
                if (!adopted) {
                    return startup_exit_code(r.error().code);
                }
                profile->cache.request_refresh_by(SteadyClock::now());
            }
            profiles_.push_back(std::move(profile));
        }
        if (auto r = open_listeners(); !r) {
            log_.error("listen_failed", {{"error", r.error().message}});
            return exit_code(r.error().code);
        }
        if (auto r = prepare_files(); !r) {
            log_.error("startup_failed", {{"code", errc_name(r.error().code)}, {"error", r.error().message}});
            return startup_exit_code(r.error().code);
        }
        hold_listeners();
        wait_for_signal();
        for (auto& profile : profiles_) {
            schedule(profile);
        }
        // Ready means listening with keys loaded; the first CreateSession is not awaited (the surfaces say
        // why there are no credentials yet, and systemd must not kill a host that is merely offline).
        notify_systemd("READY=1");
        notify_status();
        start_watchdog();
        arm_clock_watch();
        log_.info("started", {{"profiles", profiles_.size()}, {"version", kVersion}});

        io_.run();

        // A refresh still running on a worker posts its completion to io_; let it finish, then run those
        // completions (they see stopping_ and do nothing) before the profiles and their timers go away.
        workers_.join();
        io_.restart();
        io_.poll();
        profiles_.clear();
        log_.info("stopped");
        return 0;
    }

private:
    // startup_exit_code is the exit status for a profile that cannot start. The one-shot commands exit with
    // the failure's own code (65 for an expired certificate, 77 for a refused PIN, ...); for the service
    // every such failure is the operator's to fix in what the configuration points at, so it exits 78
    // (EX_CONFIG), which the unit's RestartPreventExitStatus keeps from a restart loop that would, with a
    // refused PIN, walk the token into lock-out. A device that cannot be reached yet (69) or a failure of
    // our own (70) may pass, so those are left to Restart=on-failure.
    static int startup_exit_code(Errc code) noexcept {
        const bool may_pass = is_retryable(code) || code == Errc::crypto_failure || code == Errc::internal;
        return may_pass ? exit_code(code) : exit_code(Errc::config_invalid);
    }

    // --- Holding clients until there is something to serve
    // ---------------------------------------------------

    // hold_listeners makes the IMDS listeners of profiles that hold no credentials yet, and the ECS listener
    // while any of its profiles holds none, leave new clients in the listen backlog until that first refresh
    // completes (release_listeners), rather than answer 503 "the first CreateSession is in progress": the
    // client that socket-activated the agent, and those of a boot, get credentials after a short wait. A
    // client seen waiting hurries a refresh the startup jitter would delay, like the fast path does. kHoldCap
    // bounds the hold whatever happens to the refresh.
    static constexpr std::chrono::seconds kHoldCap{30};

    void hold_listeners() {
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

    void release_listeners(Profile& profile) {
        for (auto& server : profile.imds_servers) {
            server->release();
        }
        if (ecs_server_ && std::all_of(profiles_.begin(), profiles_.end(), [](const auto& p) {
                return p->first_refresh_done || p->config.ecs_path.empty();
            })) {
            ecs_server_->release();
        }
    }

    // --- Handover across restarts (systemd's file-descriptor store)
    // -----------------------------------------

    static constexpr std::size_t kMaxHandover = 1024 * 1024;

    // take_handover reads what the previous process stored; an unreadable or foreign one is logged and
    // ignored (the agent then starts as on a fresh boot).
    Handover take_handover() {
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
    Result<void> set_token_key(Secret handed_over) {
        if (handed_over.empty()) {
            std::string& bytes = handed_over.reveal_mutable();
            bytes.resize(pki::HmacKey::random_size);
            if (::getrandom(bytes.data(), bytes.size(), 0) != static_cast<ssize_t>(bytes.size())) {
                return make_error(Errc::internal, "getrandom failed");
            }
        }
        const std::string_view bytes = handed_over.reveal();
        hmac_ = std::make_unique<pki::HmacKey>(pki::HmacKey::from_bytes(
            std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size())));
        token_key_ = std::move(handed_over);
        return {};
    }

    // adopt_handed_over gives the profile the credentials the previous process held for it, if they were
    // issued for the same role and settings and are not expired; true when it did.
    bool adopt_handed_over(Profile& profile, Handover& handover) {
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
            log_.info(
                "credentials_adopted",
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
    void store_handover() {
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

    // load_identity_now prepares the session synchronously at startup, so that a broken key or certificate
    // is reported before the agent says it is ready.
    Result<void> load_identity_now(Profile& profile) {
        auto stamps = identity_stamps(*profile.options);
        auto session = prepare_session(*profile.options, Diagnostics{false, stderr});
        if (!session) {
            return session.error();
        }
        profile.session = std::make_shared<const PreparedSession>(std::move(*session));
        profile.stamps = std::move(stamps);
        log_identity(profile);
        return {};
    }

    // prepare_files checks at start what the surfaces write: each credentials file can be written, and each
    // ECS token file is read or created. It runs once the listeners are open, so that a start failing there
    // leaves no token file behind; the token files a failing start created are removed again.
    Result<void> prepare_files() {
        for (auto& profile : profiles_) {
            if (!profile->config.credentials_file_profile.empty()) {
                const auto path = credentials_path(*profile);
                if (auto r = check_credentials_file_writable(path); !r) {
                    return make_error(Errc::config_invalid, "profiles." + profile->config.name +
                                                                ": credentials file: " + r.error().message);
                }
            }
        }
        std::vector<std::filesystem::path> created;
        for (auto& profile : profiles_) {
            if (profile->config.ecs_path.empty()) {
                continue;
            }
            bool made = false;
            auto token = ensure_token_file(profile->config.ecs_token_file, &made);
            if (!token) {
                for (const auto& path : created) {
                    ::unlink(path.c_str());
                }
                return token.error();
            }
            if (made) {
                created.push_back(profile->config.ecs_token_file);
            }
            profile->ecs_token = std::move(*token);
        }
        return {};
    }

    void log_identity(const Profile& profile) {
        const auto& leaf = profile.session->identity.leaf;
        const auto days_left =
            std::chrono::duration_cast<std::chrono::hours>(leaf.not_after() - WallClock::now()).count() / 24;
        log_.info("identity_loaded", {{"profile", profile.config.name},
                                      {"subject", leaf.subject()},
                                      {"serial", leaf.serial_decimal()},
                                      {"not_after", format_iso8601(leaf.not_after())},
                                      {"key", profile.session->identity.key.description()}});
        // Once a day per profile and certificate: every reload and rotation check would otherwise repeat it.
        const auto now = WallClock::now();
        auto& warned = expiry_warned_[profile.config.name];
        const std::string serial = leaf.serial_decimal();
        if (days_left < 14 && (warned.serial != serial || now - warned.at >= std::chrono::hours(24))) {
            warned = ExpiryWarning{serial, now};
            log_.warning("certificate_expiring", {{"profile", profile.config.name},
                                                  {"days_left", days_left},
                                                  {"not_after", format_iso8601(leaf.not_after())}});
        }
    }

    struct ExpiryWarning {
        std::string serial;
        WallClock::time_point at;
    };

    // limits of the credential surfaces (IMDS, ECS): loopback peers only. A listener may be bound to another
    // address (or reached through route_localnet + DNAT), but credentials never leave the host; the health
    // endpoint (no secrets) may be scraped from elsewhere.
    HttpServerLimits limits(bool credentials = true) const {
        HttpServerLimits l;
        l.max_connections = options_.config.agent.max_connections;
        l.hop_limit = options_.config.agent.hop_limit;
        l.loopback_peers_only = credentials;
        return l;
    }

    Result<void> open_imds(const std::shared_ptr<Profile>& profile) {
        for (const auto& address : profile->config.imds_listen) {
            std::weak_ptr<Profile> weak = profile;
            auto server =
                std::make_unique<HttpServer>(io_, limits(), [this, weak](const SurfaceRequest& request) {
                    if (auto refusal = guard_request(request)) {
                        return count("imds", std::move(*refusal));
                    }
                    auto p = weak.lock();
                    if (!p) {
                        SurfaceResponse gone;
                        gone.status = 404;
                        return gone;
                    }
                    const auto served = serve(*p);
                    return count("imds", handle_imds(request, p->imds, tokens_, SteadyClock::now(),
                                                     WallClock::now(), served));
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

    Result<void> open_listeners() {
        for (auto& profile : profiles_) {
            if (auto r = open_imds(profile); !r) {
                return r;
            }
        }
        const auto& agent = options_.config.agent;
        if (agent.ecs_listen) {
            ecs_server_ = std::make_unique<HttpServer>(io_, limits(), [this](const SurfaceRequest& request) {
                return count("ecs", route_ecs(request));
            });
            auto served = listen_or_adopt(*ecs_server_, "ecs", "", *agent.ecs_listen);
            if (!served) {
                return served.error();
            }
            ecs_address_ = std::move(*served);
        }
        if (agent.health_listen) {
            health_server_ =
                std::make_unique<HttpServer>(io_, limits(false), [this](const SurfaceRequest& request) {
                    if (auto refusal = guard_request(request)) {
                        return std::move(*refusal);
                    }
                    return handle_health(request, health_snapshot());
                });
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
    Result<std::string> listen_or_adopt(HttpServer& server,
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
        log_.info("listening", {{"surface", surface},
                                {"profile", profile},
                                {"address", served},
                                {"activated", fd ? "yes" : "no"}});
        return served;
    }

    SurfaceResponse count(const char* surface, SurfaceResponse response) {
        ++requests_[{surface, response.status}];
        return response;
    }

    HealthSnapshot health_snapshot() const {
        HealthSnapshot snapshot;
        const auto now = SteadyClock::now();
        const auto wall = WallClock::now();
        for (const auto& profile : profiles_) {
            ProfileHealth h;
            h.name = profile->config.name;
            h.state = cache_state_name(profile->cache.state(now, wall));
            h.servable = static_cast<bool>(profile->cache.current(now, wall));
            if (const auto& error = profile->cache.last_error()) {
                h.last_error_code = errc_name(error->code);
            }
            if (const auto& held = profile->cache.held()) {
                h.credentials_seconds_left = std::chrono::duration<double>(held->deadline - now).count();
            }
            if (profile->session) {
                h.certificate_seconds_left =
                    std::chrono::duration<double>(profile->session->identity.leaf.not_after() - wall).count();
            }
            h.refreshes = profile->refresh_outcomes;
            h.create_session_seconds = profile->create_session_seconds;
            for (const auto& [surface, state] : profile->surfaces) {
                h.surfaces.push_back(SurfaceHealth{
                    surface, !state.error, state.error ? errc_name(state.error->code) : "", state.failures});
            }
            snapshot.profiles.push_back(std::move(h));
        }
        snapshot.requests = requests_;
        return snapshot;
    }

    SurfaceResponse route_ecs(const SurfaceRequest& request) {
        if (auto refusal = guard_request(request)) {
            return std::move(*refusal);
        }
        const std::string_view path = std::string_view(request.target).substr(0, request.target.find('?'));
        for (auto& profile : profiles_) {
            if (!profile->config.ecs_path.empty() && profile->config.ecs_path == path) {
                EcsSettings settings{profile->config.ecs_path, &profile->ecs_token, profile->account_id};
                return handle_ecs(request, settings, WallClock::now(), serve(*profile));
            }
        }
        EcsSettings none{"", nullptr, ""};
        return handle_ecs(request, none, WallClock::now(),
                          ServedCredentials{nullptr, make_error(Errc::usage, "unknown path"), {}});
    }

    ServedCredentials serve(const Profile& profile) const {
        auto current = profile.cache.current(SteadyClock::now(), WallClock::now());
        if (!current) {
            return ServedCredentials{nullptr, current.error(), {}};
        }
        return ServedCredentials{&(*current)->credentials, {}, profile.last_updated};
    }

    // --- The Unix socket (credential_process fast path, status) -------------------------------------------

    Result<void> open_control_socket() {
        const auto& agent = options_.config.agent;
        const std::string path = agent.socket_path.string();
        control_ = std::make_unique<unix_stream::acceptor>(io_);
        boost::system::error_code bec;
        // A socket passed by systemd stays systemd's: its path is neither replaced now nor removed at stop.
        if (auto fd = activated_.take("socket")) {
            control_->assign(unix_stream(), *fd, bec);
            if (bec) {
                return make_error(Errc::config_invalid, "activated socket \"socket\": " + bec.message());
            }
            log_.info("listening", {{"surface", "socket"}, {"address", path}, {"activated", "yes"}});
            accept_control();
            return {};
        }
        std::error_code ec;
        std::filesystem::create_directories(agent.socket_path.parent_path(), ec);
        struct stat st {};
        if (::lstat(path.c_str(), &st) == 0) {
            if (!S_ISSOCK(st.st_mode)) {
                return make_error(Errc::config_invalid, path + ": exists and is not a socket");
            }
            // A socket someone still accepts on belongs to a running agent: replacing it would cut that
            // agent's clients off until it restarts. Only a socket nobody listens on is stale.
            if (socket_accepts_connections(path)) {
                return make_error(Errc::config_invalid,
                                  path +
                                      ": another agent is listening on this socket; stop it, or give this "
                                      "agent another socket_path");
            }
            ::unlink(path.c_str());
        }
        control_->open(unix_stream(), bec);
        // Bind under a tight umask, then widen to the configured mode: no window where others can connect.
        const mode_t old_mask = ::umask(0177);
        if (!bec) {
            control_->bind(unix_stream::endpoint(path), bec);
        }
        ::umask(old_mask);
        if (!bec) {
            control_->listen(64, bec);
        }
        if (bec) {
            return make_error(Errc::config_invalid, "listen " + path + ": " + bec.message());
        }
        if (!agent.socket_group.empty()) {
            const group* g = ::getgrnam(agent.socket_group.c_str());
            if (g == nullptr || ::chown(path.c_str(), static_cast<uid_t>(-1), g->gr_gid) != 0) {
                return make_error(Errc::config_invalid,
                                  path + ": cannot give the socket to group " + agent.socket_group);
            }
        }
        if (::chmod(path.c_str(), agent.socket_mode) != 0) {
            return make_error(Errc::config_invalid, path + ": cannot chmod the socket");
        }
        if (::lstat(path.c_str(), &st) == 0) {
            bound_socket_ = BoundSocket{st.st_dev, st.st_ino};
        }
        log_.info("listening", {{"surface", "socket"}, {"address", path}});
        accept_control();
        return {};
    }

    // peer_allowed: root, the agent's own user, the configured allowed_uids, and members of allowed_gids —
    // by their primary group or any supplementary one (SO_PEERGROUPS: the groups the peer had when it
    // connected), since that is how a user is put in a group such as the socket's SocketGroup=.
    bool peer_allowed(int fd, const ucred& peer) const {
        const auto& agent = options_.config.agent;
        if (peer.uid == 0 || peer.uid == ::geteuid()) {
            return true;
        }
        const auto allowed_gid = [&](gid_t gid) {
            return std::find(agent.allowed_gids.begin(), agent.allowed_gids.end(), gid) !=
                   agent.allowed_gids.end();
        };
        if (std::find(agent.allowed_uids.begin(), agent.allowed_uids.end(), peer.uid) !=
                agent.allowed_uids.end() ||
            allowed_gid(peer.gid)) {
            return true;
        }
        if (agent.allowed_gids.empty()) {
            return false;
        }
        std::vector<gid_t> groups(64);
        for (int attempt = 0; attempt < 2; ++attempt) {
            socklen_t length = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
            if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &length) == 0) {
                groups.resize(length / sizeof(gid_t));
                return std::any_of(groups.begin(), groups.end(), allowed_gid);
            }
            if (errno != ERANGE) {
                return false;
            }
            groups.resize(length / sizeof(gid_t) + 1);
        }
        return false;
    }

    // peer_refusal is what a refused peer is told (one line; it names no secret).
    std::string peer_refusal(const ucred& peer) const {
        const std::string who = "uid " + std::to_string(peer.uid) + " (gid " + std::to_string(peer.gid) + ")";
        if (options_.config_path.empty()) {
            return who + " may not use this agent: it serves only root and its own user";
        }
        return who +
               " may not use this agent: add the uid to allowed_uids, or the group to allowed_gids, in " +
               options_.config_path.string();
    }

    struct ControlConnection {
        explicit ControlConnection(net::io_context& io) : socket(io), timer(io) {}
        unix_stream::socket socket;
        net::steady_timer timer;
        net::streambuf input{kMaxControlLine};
        Secret reply;
        ucred peer{};
        std::optional<std::string> refusal;  // set for a peer the allow-list refuses: the answer it gets
    };

    void accept_control() {
        control_->async_accept([this](boost::system::error_code ec, unix_stream::socket socket) {
            if (ec || stopping_) {
                return;
            }
            accept_control();
            ucred peer{};
            socklen_t length = sizeof peer;
            if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &peer, &length) != 0) {
                return;  // closing: a peer we cannot identify gets nothing
            }
            auto connection = std::make_shared<ControlConnection>(io_);
            connection->socket = std::move(socket);
            connection->peer = peer;
            std::erase_if(control_connections_, [](const auto& weak) { return weak.expired(); });
            control_connections_.push_back(connection);
            if (!peer_allowed(connection->socket.native_handle(), peer)) {
                log_.warning("socket_peer_refused",
                             {{"uid", peer.uid}, {"gid", peer.gid}, {"pid", peer.pid}});
                // Answered after its request line is read, so that the client reads the reason rather than
                // a connection reset.
                connection->refusal = peer_refusal(peer);
            }
            connection->timer.expires_after(std::chrono::seconds(30));
            connection->timer.async_wait([connection](boost::system::error_code timer_ec) {
                if (!timer_ec) {
                    boost::system::error_code ignored;
                    connection->socket.close(ignored);
                }
            });
            net::async_read_until(
                connection->socket, connection->input, '\n',
                [this, connection](boost::system::error_code read_ec, std::size_t n) {
                    if (read_ec) {
                        connection->timer.cancel();
                        return;
                    }
                    std::string line(n, '\0');
                    connection->input.sgetn(line.data(), static_cast<std::streamsize>(n));
                    if (connection->refusal) {
                        reply_control(
                            connection,
                            Secret(format_error_reply(make_error(Errc::peer_refused, *connection->refusal))));
                        return;
                    }
                    handle_control(connection, line);
                });
        });
    }

    void reply_control(const std::shared_ptr<ControlConnection>& connection, Secret reply) {
        connection->reply = std::move(reply);
        net::async_write(connection->socket, net::buffer(connection->reply.reveal()),
                         [connection](boost::system::error_code, std::size_t) {
                             connection->reply = Secret();
                             boost::system::error_code ignored;
                             connection->socket.shutdown(unix_stream::socket::shutdown_both, ignored);
                             connection->socket.close(ignored);
                             connection->timer.cancel();
                         });
    }

    // reply_with answers a credentials request with what the cache holds: the credentials, or why none.
    void reply_with(const std::shared_ptr<ControlConnection>& connection,
                    const Result<const CachedCredentials*>& current) {
        if (current) {
            reply_control(connection,
                          format_ok_reply(signer::credential_process_json((*current)->credentials).reveal()));
        } else {
            reply_control(connection, Secret(format_error_reply(current.error())));
        }
    }

    // renew_config_identity: a client's configuration identity is not the one this agent loaded, but the
    // file may hold the same bytes under a new identity (touch, chmod, a tool rewriting it unchanged). If the
    // identity is that of the file at the agent's own path now, the file is read once and compared with the
    // bytes the agent runs with; equal, the new identity is the agent's. An identity that is not the file's
    // costs one statx; one that was refused is remembered and costs nothing.
    bool renew_config_identity(const std::string& identity) {
        if (options_.config.path.empty() || options_.config.source_text.empty() ||
            identity == refused_config_identity_) {
            return false;
        }
        if (!config_file_holds_own_bytes(identity)) {
            refused_config_identity_ = identity;
            return false;
        }
        options_.config.source_identity = identity;
        log_.info("config_identity_renewed", {{"config", options_.config.path.string()}});
        return true;
    }

    // config_file_holds_own_bytes: the file at the configuration path has `identity` now and, read as
    // load_config reads it, holds the bytes this agent runs with.
    bool config_file_holds_own_bytes(const std::string& identity) const {
        const auto& path = options_.config.path;
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) {
            return false;
        }
        const std::string now = config::file_identity(fd);
        ::close(fd);
        if (now != identity) {
            return false;  // one statx for an identity that is not this file's
        }
        const auto file = config::read_config_file(path);
        return file && file->identity == identity && file->text == options_.config.source_text;
    }

    void handle_control(const std::shared_ptr<ControlConnection>& connection, const std::string& line) {
        auto request = parse_control_request(line);
        if (!request) {
            reply_control(connection, Secret(format_error_reply(request.error())));
            return;
        }
        if (request->kind == ControlRequest::Kind::status) {
            reply_control(connection, format_ok_reply(status_json()));
            return;
        }
        if (request->kind == ControlRequest::Kind::refresh) {
            handle_refresh_request(connection, request->profile);
            return;
        }
        // A fast-path client that found this socket by scanning its configuration file is answered only if
        // that file is the one this agent runs with; otherwise it loads (and checks) the file itself.
        if (!request->config_identity.empty() &&
            request->config_identity != options_.config.source_identity &&
            !renew_config_identity(request->config_identity)) {
            reply_control(connection, Secret(kOtherConfigReply));
            return;
        }
        auto profile = find(request->profile);
        if (!profile) {
            reply_control(connection, Secret(format_error_reply(make_error(
                                          Errc::usage, "no profile named \"" + request->profile + "\" in " +
                                                           options_.config.path.string()))));
            return;
        }
        const auto now = SteadyClock::now();
        const auto wall = WallClock::now();
        switch (answer_credentials(profile->cache, request->min_seconds, now, wall)) {
            case CredentialsAnswer::serve:
            case CredentialsAnswer::what_cache_holds:
                reply_with(connection, profile->cache.current(now, wall));
                return;
            case CredentialsAnswer::refresh_first:
                break;
        }
        // Not enough life left (or none at all): refresh now and answer when it completes, with whatever the
        // cache then holds — fresh credentials are as good as it gets, even for a short session duration.
        std::weak_ptr<Profile> weak = profile;
        profile->waiters.push_back([this, connection, weak] {
            auto p = weak.lock();
            if (!p) {
                return;
            }
            reply_with(connection, p->cache.current(SteadyClock::now(), WallClock::now()));
        });
        refresh_now(profile, RefreshReason::fast_path);
    }

    // handle_refresh_request: an operator's `refresh` runs the profile's refresh now (or joins the one
    // running) and answers when it completes. Clients admitted only by allowed_uids/allowed_gids may not: a
    // refresh is a CreateSession call, and those are the host's to spend, not every local user's.
    void handle_refresh_request(const std::shared_ptr<ControlConnection>& connection,
                                const std::string& name) {
        if (connection->peer.uid != 0 && connection->peer.uid != ::geteuid()) {
            reply_control(connection, Secret(format_error_reply(make_error(
                                          Errc::peer_refused, "uid " + std::to_string(connection->peer.uid) +
                                                                  " may not ask for refreshes: only root and "
                                                                  "the agent's own user may"))));
            return;
        }
        auto profile = find(name);
        if (!profile) {
            reply_control(
                connection,
                Secret(format_error_reply(make_error(Errc::usage, "no profile named \"" + name + "\""))));
            return;
        }
        std::weak_ptr<Profile> weak = profile;
        profile->waiters.push_back([this, connection, weak] {
            auto p = weak.lock();
            if (!p) {
                return;
            }
            if (const auto& error = p->cache.last_error()) {
                reply_control(connection, Secret(format_error_reply(*error)));
            } else {
                reply_control(connection, format_ok_reply(profile_status(*p).dump()));
            }
        });
        refresh_now(profile, RefreshReason::command);
    }

    std::shared_ptr<Profile> find(std::string_view name) const {
        for (const auto& profile : profiles_) {
            if (profile->config.name == name) {
                return profile;
            }
        }
        return nullptr;
    }

    std::string status_json() const {
        nlohmann::ordered_json doc;
        doc["version"] = kVersion;
        doc["config"] = options_.config_path.string();
        auto& list = doc["profiles"] = nlohmann::json::array();
        for (const auto& profile : profiles_) {
            list.push_back(profile_status(*profile));
        }
        return doc.dump();
    }

    // profile_status is one profile's entry of `status` (no secrets: the access key id is redacted).
    nlohmann::ordered_json profile_status(const Profile& profile) const {
        const auto now = SteadyClock::now();
        const auto wall = WallClock::now();
        nlohmann::ordered_json p;
        p["name"] = profile.config.name;
        p["state"] = cache_state_name(profile.cache.state(now, wall));
        const auto& held = profile.cache.held();
        if (held) {
            p["access_key_id"] = signer::redact_access_key_id(held->credentials.access_key_id);
            p["expiration"] = format_iso8601(held->credentials.expiration);
            p["expires_in_seconds"] =
                std::chrono::duration_cast<std::chrono::seconds>(held->deadline - now).count();
        }
        if (!profile.cache.refresh_in_flight()) {
            p["next_refresh_in_seconds"] = std::max<long long>(
                0,
                std::chrono::duration_cast<std::chrono::seconds>(profile.cache.next_refresh() - now).count());
        } else {
            p["refreshing"] = true;
        }
        if (const auto& error = profile.cache.last_error()) {
            p["last_error"] = {{"code", errc_name(error->code)}, {"message", error->message}};
            p["consecutive_failures"] = profile.cache.consecutive_failures();
        }
        if (profile.session) {
            const auto& leaf = profile.session->identity.leaf;
            const auto days =
                std::chrono::duration_cast<std::chrono::hours>(leaf.not_after() - wall).count() / 24;
            p["certificate"] = {{"subject", leaf.subject()},
                                {"serial", leaf.serial_decimal()},
                                {"not_after", format_iso8601(leaf.not_after())},
                                {"days_left", days},
                                {"expiring_soon", days < 14}};
        }
        nlohmann::ordered_json surfaces = nlohmann::json::array();
        for (const auto& address : profile.imds_addresses) {
            surfaces.push_back("imds http://" + address + "/");
        }
        if (!profile.config.ecs_path.empty() && !ecs_address_.empty()) {
            surfaces.push_back("ecs http://" + ecs_address_ + profile.config.ecs_path);
        }
        if (!profile.config.credentials_file_profile.empty()) {
            surfaces.push_back("credentials-file " + credentials_path(profile).string() + " [" +
                               profile.config.credentials_file_profile + "]");
        }
        if (!options_.config.agent.socket_path.empty()) {
            surfaces.push_back("credential-process --profile " + profile.config.name);
        }
        p["surfaces"] = std::move(surfaces);
        nlohmann::ordered_json failing = nlohmann::json::array();
        for (const auto& [surface, state] : profile.surfaces) {
            if (state.error) {
                failing.push_back({{"surface", surface},
                                   {"code", errc_name(state.error->code)},
                                   {"message", state.error->message},
                                   {"failures", state.failures}});
            }
        }
        if (!failing.empty()) {
            p["surface_errors"] = std::move(failing);
        }
        return p;
    }

    std::filesystem::path credentials_path(const Profile& profile) const {
        return profile.config.credentials_file.empty() ? default_credentials_file()
                                                       : profile.config.credentials_file;
    }

    // --- Refresh -------------------------------------------------------------------------------------------

    void schedule(const std::shared_ptr<Profile>& profile) {
        if (stopping_ || profile->cache.refresh_in_flight()) {
            return;
        }
        profile->timer.expires_at(profile->cache.next_refresh());
        std::weak_ptr<Profile> weak = profile;
        profile->timer.async_wait([this, weak](boost::system::error_code ec) {
            auto p = weak.lock();
            if (!ec && p && !stopping_) {
                const auto reason = p->cache.consecutive_failures() > 0 ? RefreshReason::retry
                                    : p->cache.held()                   ? RefreshReason::timer
                                                                        : RefreshReason::startup;
                start_refresh(p, reason);
            }
        });
    }

    void refresh_now(const std::shared_ptr<Profile>& profile, RefreshReason reason) {
        if (profile->cache.refresh_in_flight()) {
            return;  // single flight: the waiter is answered when the running refresh completes
        }
        profile->cache.request_refresh_by(SteadyClock::now());
        profile->timer.cancel();
        start_refresh(profile, reason);
    }

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
    void start_refresh(const std::shared_ptr<Profile>& profile, RefreshReason reason) {
        if (!profile->cache.begin_refresh()) {
            return;
        }
        auto stamps = identity_stamps(*profile->options);
        const bool reload = !profile->session || profile->settings_changed || stamps != profile->stamps;
        profile->settings_changed = false;
        auto session = profile->session;
        auto options = profile->options;
        std::weak_ptr<Profile> weak = profile;
        net::post(workers_, [this, weak, reason, reload, session, options, stamps = std::move(stamps),
                             name = profile->config.name]() mutable {
            auto outcome = std::make_shared<RefreshOutcome>();
            outcome->reason = reason;
            outcome->stamps = std::move(stamps);
            // Signing and the HTTPS exchange happen here, on a worker: the event loop keeps serving
            // meanwhile.
            if (reload) {
                auto prepared = prepare_session(*options, Diagnostics{false, stderr});
                if (!prepared) {
                    // A rotation that fails its checks (e.g. a key that does not match the new certificate)
                    // is an error of this refresh; signing on with the old key in memory would hide it.
                    outcome->credentials = prepared.error();
                    outcome->identity_failed = true;
                    session = nullptr;
                } else {
                    session = std::make_shared<const PreparedSession>(std::move(*prepared));
                    outcome->new_session = session;
                }
            }
            if (session) {
                RetryOptions once;
                once.max_attempts = 1;  // the cache's own backoff decides when to try again
                const auto started = SteadyClock::now();
                outcome->credentials =
                    fetch_credentials(session->identity, session->params, session->endpoint, once,
                                      production_hooks(session->client, Diagnostics{}));
                outcome->create_session_seconds =
                    std::chrono::duration<double>(SteadyClock::now() - started).count();
                log_.debug("create_session", {{"profile", name},
                                              {"ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                                         SteadyClock::now() - started)
                                                         .count()}});
            }
            net::post(io_, [this, weak, outcome] {
                if (auto p = weak.lock()) {
                    finish_refresh(p, *outcome);
                }
            });
        });
    }

    void finish_refresh(const std::shared_ptr<Profile>& profile, RefreshOutcome& outcome) {
        if (stopping_) {
            return;
        }
        if (!std::exchange(profile->first_refresh_done, true)) {
            release_listeners(*profile);
        }
        if (outcome.identity_failed) {
            profile->identity_failed_stamps = outcome.stamps;
        } else {
            profile->identity_failed_stamps.reset();
        }
        if (outcome.new_session) {
            const bool rotated = profile->session != nullptr;
            profile->session = outcome.new_session;
            profile->stamps = std::move(outcome.stamps);
            if (rotated) {
                log_.info("identity_reloaded", {{"profile", profile->config.name}});
            }
            log_identity(*profile);
        }
        const auto now = SteadyClock::now();
        const double jitter = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
        if (outcome.create_session_seconds) {
            profile->create_session_seconds.observe(*outcome.create_session_seconds);
        }
        if (outcome.credentials) {
            ++profile->refresh_outcomes["ok"];
            const std::string key = signer::redact_access_key_id(outcome.credentials->access_key_id);
            profile->last_updated = WallClock::now();
            profile->cache.complete_success(std::move(*outcome.credentials), WallClock::now(), now, jitter);
            const auto& held = *profile->cache.held();
            write_credentials_file_soon(profile);
            store_handover();
            log_.info("refresh_ok",
                      {{"profile", profile->config.name},
                       {"reason", refresh_reason_name(outcome.reason)},
                       {"access_key", key},
                       {"expiration", format_iso8601(held.credentials.expiration)},
                       {"next_refresh_in", whole_seconds(profile->cache.next_refresh() - now)}});
        } else {
            const Error error = outcome.credentials.error();
            const auto decision = profile->cache.complete_failure(error, now, jitter);
            ++profile->refresh_outcomes[decision.retryable ? "retryable" : "rejected"];
            const bool serving = static_cast<bool>(profile->cache.current(now, WallClock::now()));
            const std::initializer_list<LogField> fields{
                {"profile", profile->config.name},
                {"reason", refresh_reason_name(outcome.reason)},
                {"class", decision.retryable ? "retryable" : "rejected"},
                {"code", errc_name(error.code)},
                {"error", error.message},
                {"retry_in", whole_seconds(decision.retry_at - now)},
                {"serving", serving ? "last-good" : "nothing"},
                {"failures", profile->cache.consecutive_failures()}};
            if (decision.retryable && serving) {
                log_.warning("refresh_failed", fields);
            } else {
                log_.error("refresh_failed", fields);
            }
        }
        if (profile->settings_changed) {
            // A SIGHUP arrived while this refresh ran with the old settings: go again with the new ones.
            profile->cache.request_refresh_by(now);
        }
        auto waiters = std::move(profile->waiters);
        profile->waiters.clear();
        for (auto& waiter : waiters) {
            waiter();
        }
        schedule(profile);
        notify_status();
    }

    // notify_status tells systemd one line about every profile (`systemctl status` shows it).
    void notify_status() {
        const auto now = SteadyClock::now();
        std::size_t ok = 0;
        std::string failing;
        for (const auto& profile : profiles_) {
            if (profile->cache.current(now, WallClock::now())) {
                ++ok;
            }
            if (const auto& error = profile->cache.last_error()) {
                failing +=
                    (failing.empty() ? "" : "; ") + profile->config.name + ": " + errc_name(error->code);
            }
        }
        std::string status = "STATUS=" + std::to_string(ok) + "/" + std::to_string(profiles_.size()) +
                             " profiles serving credentials";
        if (!failing.empty()) {
            status += "; failing: " + failing;
        }
        notify_systemd(status);
    }

    // write_credentials_file_soon writes the credentials held now to the profile's credentials file on a
    // worker; a write already running is followed by one more with whatever is held when it ends.
    void write_credentials_file_soon(const std::shared_ptr<Profile>& profile) {
        if (profile->file_write_in_flight) {
            profile->file_write_again = true;
            return;
        }
        const auto& held = profile->cache.held();
        if (!held || profile->config.credentials_file_profile.empty()) {
            return;
        }
        profile->file_write_in_flight = true;
        auto credentials = std::make_shared<const signer::Credentials>(clone_credentials(held->credentials));
        std::weak_ptr<Profile> weak = profile;
        net::post(workers_, [this, weak, credentials, path = credentials_path(*profile),
                             section = profile->config.credentials_file_profile]() mutable {
            auto result = std::make_shared<Result<void>>(write_credentials_file(path, section, *credentials));
            credentials.reset();
            net::post(io_, [this, weak, result, path] {
                if (auto p = weak.lock()) {
                    finish_credentials_file_write(p, *result, path);
                }
            });
        });
    }

    void finish_credentials_file_write(const std::shared_ptr<Profile>& profile,
                                       const Result<void>& result,
                                       const std::filesystem::path& path) {
        profile->file_write_in_flight = false;
        if (!result) {
            surface_failed(profile, "credentials_file", result.error());
            return;
        }
        log_.debug("credentials_file_written", {{"profile", profile->config.name}, {"file", path.string()}});
        surface_ok(profile, "credentials_file");
        if (std::exchange(profile->file_write_again, false)) {
            write_credentials_file_soon(profile);
        }
    }

    // --- Surfaces that fail on their own
    // ---------------------------------------------------------------------

    // surface_failed records the failure (status, /healthz, /metrics), logs it and retries the profile's
    // failing surfaces after 1, 2, 4 ... 60 s: local I/O costs no CreateSession.
    void surface_failed(const std::shared_ptr<Profile>& profile,
                        const std::string& surface,
                        const Error& error) {
        auto& state = profile->surfaces[surface];
        state.error = error;
        ++state.failures;
        const auto delay = std::chrono::seconds(1 << std::min(profile->surface_retry_attempts, 6));
        const auto retry = std::min(delay, std::chrono::seconds(60));
        log_.error("surface_failed", {{"profile", profile->config.name},
                                      {"surface", surface},
                                      {"code", errc_name(error.code)},
                                      {"error", error.message},
                                      {"retry_in", retry.count()}});
        if (stopping_) {
            return;
        }
        ++profile->surface_retry_attempts;
        profile->surface_retry.expires_after(retry);
        std::weak_ptr<Profile> weak = profile;
        profile->surface_retry.async_wait([this, weak](boost::system::error_code ec) {
            auto p = weak.lock();
            if (!ec && p && !stopping_) {
                retry_surfaces(p);
            }
        });
    }

    void surface_ok(const std::shared_ptr<Profile>& profile, const std::string& surface) {
        auto& state = profile->surfaces[surface];
        if (state.error) {
            log_.info("surface_recovered", {{"profile", profile->config.name}, {"surface", surface}});
        }
        state.error.reset();
        const bool all_ok = std::all_of(profile->surfaces.begin(), profile->surfaces.end(),
                                        [](const auto& entry) { return !entry.second.error; });
        if (all_ok) {
            profile->surface_retry_attempts = 0;
        }
    }

    void retry_surfaces(const std::shared_ptr<Profile>& profile) {
        const auto failing = [&](const char* surface) {
            const auto it = profile->surfaces.find(surface);
            return it != profile->surfaces.end() && it->second.error;
        };
        if (failing("credentials_file")) {
            write_credentials_file_soon(profile);
        }
        if (failing("ecs_token")) {
            load_ecs_token(profile);
        }
        if (failing("imds") && profile->imds_servers.empty()) {
            open_imds_or_record(profile);
        }
    }

    // load_ecs_token reads (or creates) the profile's ECS token file; a failure is the surface's.
    bool load_ecs_token(const std::shared_ptr<Profile>& profile) {
        auto token = ensure_token_file(profile->config.ecs_token_file);
        if (!token) {
            surface_failed(profile, "ecs_token", token.error());
            return false;
        }
        profile->ecs_token = std::move(*token);
        surface_ok(profile, "ecs_token");
        return true;
    }

    void open_imds_or_record(const std::shared_ptr<Profile>& profile) {
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

    // --- Signals -------------------------------------------------------------------------------------------

    void wait_for_signal() {
        signals_.async_wait([this](boost::system::error_code ec, int signal) {
            if (ec) {
                return;
            }
            if (signal == SIGHUP) {
                reload();
                wait_for_signal();
                return;
            }
            stop();
        });
    }

    // start_watchdog pings systemd from a timer on the event loop itself, at half of WatchdogSec=, so that a
    // wedged loop stops the pings and gets the agent restarted.
    void start_watchdog() {
        const auto interval = watchdog_interval();
        if (!interval) {
            return;
        }
        watchdog_period_ = std::chrono::duration_cast<std::chrono::milliseconds>(*interval / 2);
        arm_watchdog();
    }

    void arm_watchdog() {
        watchdog_.expires_after(watchdog_period_);
        watchdog_.async_wait([this](boost::system::error_code ec) {
            if (!ec && !stopping_) {
                notify_systemd("WATCHDOG=1");
                arm_watchdog();
            }
        });
    }

    // arm_clock_watch compares the wall clock with each profile's Expiration once a second, and looks at the
    // identity files of profiles whose identity did not load (identity_failed_stamps). The refresh
    // timers run on the monotonic clock, which stands still while the host sleeps and ignores a clock that is
    // set forward: after either, credentials that are really expired would wait for a timer that has not
    // fired. Each set held triggers at most one such refresh, so a wall clock that stays ahead cannot turn
    // this into a loop (CreateSession refuses a clock more than 5 minutes off anyway).
    void arm_clock_watch() {
        clock_watch_.expires_after(std::chrono::seconds(1));
        clock_watch_.async_wait([this](boost::system::error_code ec) {
            if (ec || stopping_) {
                return;
            }
            const auto now = SteadyClock::now();
            const auto wall = WallClock::now();
            for (const auto& profile : profiles_) {
                const auto& held = profile->cache.held();
                if (!profile->cache.expired_by_wall_clock(now, wall) || profile->cache.refresh_in_flight() ||
                    held->received == profile->wall_clock_refresh_for) {
                    continue;
                }
                profile->wall_clock_refresh_for = held->received;
                log_.warning("wall_clock_expired",
                             {{"profile", profile->config.name},
                              {"expiration", format_iso8601(held->credentials.expiration)},
                              {"monotonic_left", whole_seconds(held->deadline - now)}});
                refresh_now(profile, RefreshReason::wall_clock);
            }
            for (const auto& profile : profiles_) {
                if (profile->identity_failed_stamps && !profile->cache.refresh_in_flight() &&
                    identity_stamps(*profile->options) != *profile->identity_failed_stamps) {
                    refresh_now(profile, RefreshReason::rotation);
                }
            }
            arm_clock_watch();
        });
    }

    void stop() {
        notify_systemd("STOPPING=1");
        log_.info("stopping");
        watchdog_.cancel();
        clock_watch_.cancel();
        hold_cap_.cancel();
        if (health_server_) {
            health_server_->stop_accepting();
        }
        stopping_ = true;
        boost::system::error_code ignored;
        signals_.cancel(ignored);
        for (auto& profile : profiles_) {
            profile->timer.cancel();
            profile->surface_retry.cancel();
            for (auto& server : profile->imds_servers) {
                server->stop_accepting();
            }
            profile->waiters.clear();
        }
        if (ecs_server_) {
            ecs_server_->stop_accepting();
        }
        // Connections still waiting for their request line (or for a refresh, whose waiters are gone now)
        // are closed; a reply being written is finished by its own handler.
        for (const auto& weak : control_connections_) {
            if (auto connection = weak.lock(); connection && connection->reply.empty()) {
                connection->timer.cancel();
                connection->socket.close(ignored);
            }
        }
        if (control_) {
            control_->close(ignored);
            // Only the socket this agent bound (not one systemd passed, nor one that replaced it since).
            struct stat st {};
            const auto& path = options_.config.agent.socket_path;
            if (bound_socket_ && ::lstat(path.c_str(), &st) == 0 && st.st_dev == bound_socket_->device &&
                st.st_ino == bound_socket_->inode) {
                ::unlink(path.c_str());
            }
        }
    }

    // reload re-reads the configuration (or, for a flag-built agent, just re-checks the identity files).
    // Profiles that were added start; removed ones stop; changed ones pick up their new settings at a refresh
    // started now. Changes to the agent-wide listeners (ECS address, socket) need a restart and are reported
    // as such.
    void reload() {
        notify_systemd("RELOADING=1");
        do_reload();
        notify_systemd("READY=1");
        notify_status();
    }

    void do_reload() {
        log_.info("reloading");
        if (options_.config_path.empty()) {
            // Flags, not a file: only the identity files can have changed.
            for (auto& profile : profiles_) {
                refresh_if_rotated(profile);
            }
            return;
        }
        auto loaded = config::load_config(options_.config_path, options_.environment);
        if (!loaded) {
            log_.error("reload_failed", {{"error", loaded.error().message}});
            return;
        }
        config::AgentConfig next = std::move(*loaded);
        for (const auto& cfg : next.profiles) {
            if (auto r = check_profile_settings(cfg); !r) {
                log_.error("reload_failed", {{"error", r.error().message}});
                return;
            }
        }
        const ReloadPlan plan = plan_reload(options_.config, next);
        if (!plan.restart_needed.empty()) {
            std::string settings;
            for (const auto& name : plan.restart_needed) {
                settings += (settings.empty() ? "" : ",") + name;
            }
            log_.warning("reload_partial",
                         {{"settings", settings}, {"reason", "take effect at the next start"}});
            const auto& old_agent = options_.config.agent;
            next.agent.socket_path = old_agent.socket_path;
            next.agent.socket_mode = old_agent.socket_mode;
            next.agent.socket_group = old_agent.socket_group;
            next.agent.ecs_listen = old_agent.ecs_listen;
            next.agent.health_listen = old_agent.health_listen;
        }
        const auto listed = [](const std::vector<std::string>& names, const std::string& name) {
            return std::find(names.begin(), names.end(), name) != names.end();
        };
        log_.set_level(next.agent.log_level);
        std::vector<std::shared_ptr<Profile>> kept;
        std::vector<std::pair<std::shared_ptr<Profile>, std::optional<RefreshReason>>> refreshes;
        for (const auto& cfg : next.profiles) {
            std::shared_ptr<Profile> profile = find(cfg.name);
            std::optional<RefreshReason> refresh;
            if (profile) {
                // The runtime stays (its credentials remain in service until replaced); its settings change.
                const bool token_changed = cfg.ecs_token_file != profile->config.ecs_token_file;
                profile->config = cfg;
                profile->options =
                    std::make_shared<const CredentialOptions>(credential_options_from_profile(cfg));
                std::tie(profile->imds.role_name, profile->account_id) = role_name_and_account(cfg.role_arn);
                profile->imds.allow_imdsv1 = next.agent.allow_imdsv1;
                profile->cache.set_settings(Profile::settings_from(next.agent));
                if (listed(plan.credentials_changed, cfg.name)) {
                    profile->settings_changed = true;  // the identity is prepared again
                    refresh = RefreshReason::reload;
                }
                if (listed(plan.listeners_changed, cfg.name)) {
                    for (auto& server : profile->imds_servers) {
                        server->stop_accepting();
                    }
                    profile->imds_servers.clear();
                    profile->imds_addresses.clear();
                    profile->listeners_pending = true;
                }
                if (token_changed) {
                    profile->ecs_token = Secret();
                }
            } else {
                profile = std::make_shared<Profile>(io_, cfg, next.agent, SteadyClock::now());
                profile->settings_changed = true;
                profile->listeners_pending = true;
                refresh = RefreshReason::reload;
            }
            if (!profile->config.ecs_path.empty() && profile->ecs_token.empty()) {
                load_ecs_token(profile);  // a failure is the ECS surface's, retried; the profile stays
            }
            refreshes.emplace_back(profile, refresh);
            kept.push_back(std::move(profile));
        }
        for (auto& old : profiles_) {
            if (std::find(kept.begin(), kept.end(), old) == kept.end()) {
                old->timer.cancel();
                old->surface_retry.cancel();
                for (auto& server : old->imds_servers) {
                    server->stop_accepting();
                }
                old->waiters.clear();
                log_.info("profile_removed", {{"profile", old->config.name}});
            }
        }
        profiles_ = std::move(kept);
        options_.config = std::move(next);
        for (auto& profile : profiles_) {
            if (profile->listeners_pending) {
                profile->listeners_pending = false;
                open_imds_or_record(profile);
            }
        }
        // Only what the reload changed is refreshed; an unchanged profile is refreshed only if its identity
        // files changed on disk (a renewal that SIGHUP announces).
        std::size_t refreshed = 0;
        for (auto& [profile, reason] : refreshes) {
            if (reason) {
                refresh_now(profile, *reason);
                ++refreshed;
            } else if (refresh_if_rotated(profile)) {
                ++refreshed;
            }
        }
        store_handover();
        log_.info("reloaded", {{"profiles", profiles_.size()},
                               {"added", plan.added.size()},
                               {"removed", plan.removed.size()},
                               {"refreshed", refreshed}});
    }

    // refresh_if_rotated refreshes a profile whose certificate, key or secret files changed since its
    // identity was loaded (or since it last failed to load); true when it did.
    bool refresh_if_rotated(const std::shared_ptr<Profile>& profile) {
        const auto stamps = identity_stamps(*profile->options);
        const auto& reference =
            profile->identity_failed_stamps ? *profile->identity_failed_stamps : profile->stamps;
        if (stamps == reference) {
            return false;
        }
        refresh_now(profile, RefreshReason::rotation);
        return true;
    }

    AgentOptions options_;
    Logger& log_;
    net::io_context io_;
    net::thread_pool workers_{2};
    net::signal_set signals_;
    std::mt19937_64 rng_;
    std::unique_ptr<pki::HmacKey> hmac_;
    Secret token_key_;                     // hmac_'s bytes, handed over to the next process
    std::string refused_config_identity_;  // renew_config_identity's last "no"
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
    std::unique_ptr<unix_stream::acceptor> control_;
    bool stopping_ = false;
    // bound_socket_ is the Unix socket this agent bound itself (not socket activation): removed at stop.
    struct BoundSocket {
        dev_t device;
        ino_t inode;
    };
    std::optional<BoundSocket> bound_socket_;
    std::vector<std::weak_ptr<ControlConnection>> control_connections_;  // open ones, closed by stop()
};

}  // namespace

int run_agent(AgentOptions options, Logger& log) {
    // Ignore SIGPIPE: a client that goes away mid-answer must not kill the agent.
    std::signal(SIGPIPE, SIG_IGN);
    Agent agent(std::move(options), log);
    return agent.run();
}

}  // namespace rad::daemon
