#include "daemon/agent.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
#include "daemon/control_protocol.hpp"
#include "daemon/credential_cache.hpp"
#include "daemon/credentials_file.hpp"
#include "daemon/health.hpp"
#include "daemon/http_server.hpp"
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

signer::Credentials clone_credentials(const signer::Credentials& c) {
    return signer::Credentials{c.access_key_id, c.secret_access_key.clone(), c.session_token.clone(),
                               c.expiration};
}

std::string seconds_text(std::chrono::steady_clock::duration d) {
    return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count());
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
// trailing newline: every SDK refuses a token containing CR or LF).
Result<Secret> ensure_token_file(const std::filesystem::path& path) {
    if (std::filesystem::exists(path)) {
        auto token = read_secret_file(path, SecretFilePolicy{});
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
          timer(io) {
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
    // waiters are fast-path clients that asked for more lifetime than the cache holds; answered when the
    // refresh they triggered completes.
    std::vector<std::function<void()>> waiters;
    std::map<std::string, std::uint64_t> refresh_outcomes;  // "ok", "retryable", "rejected"
    LatencyHistogram create_session_seconds;
    // settings_changed: a SIGHUP changed the profile; the identity is prepared again at the next refresh.
    bool settings_changed = false;
    bool listeners_pending = false;
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
        auto key = pki::HmacKey::random();
        if (!key) {
            log_.error("startup_failed", {{"error", key.error().message}});
            return exit_code(key.error().code);
        }
        hmac_ = std::make_unique<pki::HmacKey>(std::move(*key));

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
            if (auto r = load_identity_now(*profile); !r) {
                log_.error("profile_invalid", {{"profile", cfg.name},
                                               {"code", errc_name(r.error().code)},
                                               {"error", r.error().message}});
                return startup_exit_code(r.error().code);
            }
            profiles_.push_back(std::move(profile));
        }
        activated_ = ActivatedSockets::from_environment();
        if (auto r = open_listeners(); !r) {
            log_.error("listen_failed", {{"error", r.error().message}});
            return exit_code(r.error().code);
        }
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
        log_.info("started", {{"profiles", std::to_string(profiles_.size())}, {"version", kVersion}});

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
        if (!profile.config.ecs_path.empty()) {
            auto token = ensure_token_file(profile.config.ecs_token_file);
            if (!token) {
                return token.error();
            }
            profile.ecs_token = std::move(*token);
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
                                                  {"days_left", std::to_string(days_left)},
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
            auto port = listen_or_adopt(*server, "imds-" + profile->config.name, address);
            if (!port) {
                return port.error();
            }
            log_.info("listening", {{"surface", "imds"},
                                    {"profile", profile->config.name},
                                    {"address", config::ListenAddress{address.host, *port}.to_string()}});
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
            auto port = listen_or_adopt(*ecs_server_, "ecs", *agent.ecs_listen);
            if (!port) {
                return port.error();
            }
            log_.info("listening",
                      {{"surface", "ecs"},
                       {"address", config::ListenAddress{agent.ecs_listen->host, *port}.to_string()}});
        }
        if (agent.health_listen) {
            health_server_ =
                std::make_unique<HttpServer>(io_, limits(false), [this](const SurfaceRequest& request) {
                    if (auto refusal = guard_request(request)) {
                        return std::move(*refusal);
                    }
                    return handle_health(request, health_snapshot());
                });
            auto port = listen_or_adopt(*health_server_, "health", *agent.health_listen);
            if (!port) {
                return port.error();
            }
            log_.info("listening",
                      {{"surface", "health"},
                       {"address", config::ListenAddress{agent.health_listen->host, *port}.to_string()}});
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

    // listen_or_adopt uses the socket systemd passed under `name` (FileDescriptorName=) when there is one,
    // else binds the configured address itself. A single-profile agent also accepts plain "imds".
    Result<std::uint16_t> listen_or_adopt(HttpServer& server,
                                          const std::string& name,
                                          const config::ListenAddress& address) {
        auto fd = activated_.take(name);
        if (!fd && name.starts_with("imds-") && options_.config.profiles.size() == 1) {
            fd = activated_.take("imds");
        }
        if (fd) {
            if (auto r = server.adopt(*fd); !r) {
                return r.error();
            }
            return address.port;
        }
        return server.listen(address.host, address.port);
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
            ::unlink(path.c_str());  // a stale socket of an earlier run
        }
        owns_socket_path_ = true;
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
        log_.info("listening", {{"surface", "socket"}, {"address", path}});
        accept_control();
        return {};
    }

    bool peer_allowed(int fd) const {
        ucred peer{};
        socklen_t len = sizeof peer;
        if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) {
            return false;
        }
        const auto& agent = options_.config.agent;
        if (peer.uid == 0 || peer.uid == ::geteuid()) {
            return true;
        }
        for (auto uid : agent.allowed_uids) {
            if (peer.uid == uid) {
                return true;
            }
        }
        for (auto gid : agent.allowed_gids) {
            if (peer.gid == gid) {
                return true;
            }
        }
        return false;
    }

    struct ControlConnection {
        explicit ControlConnection(net::io_context& io) : socket(io), timer(io) {}
        unix_stream::socket socket;
        net::steady_timer timer;
        net::streambuf input{kMaxControlLine};
        Secret reply;
    };

    void accept_control() {
        control_->async_accept([this](boost::system::error_code ec, unix_stream::socket socket) {
            if (ec || stopping_) {
                return;
            }
            accept_control();
            if (!peer_allowed(socket.native_handle())) {
                log_.warning("socket_peer_refused", {});
                return;  // closing without an answer
            }
            auto connection = std::make_shared<ControlConnection>(io_);
            connection->socket = std::move(socket);
            connection->timer.expires_after(std::chrono::seconds(30));
            connection->timer.async_wait([connection](boost::system::error_code timer_ec) {
                if (!timer_ec) {
                    boost::system::error_code ignored;
                    connection->socket.close(ignored);
                }
            });
            net::async_read_until(connection->socket, connection->input, '\n',
                                  [this, connection](boost::system::error_code read_ec, std::size_t n) {
                                      if (read_ec) {
                                          return;
                                      }
                                      std::string line(n, '\0');
                                      connection->input.sgetn(line.data(), static_cast<std::streamsize>(n));
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
        auto current = profile->cache.current(now, wall);
        // The default asks for 15 minutes (botocore re-runs credential_process on every call below that), but
        // never more than 40 % of the session duration: the background refresh keeps at least that much in
        // the cache, and a 15-minute session could otherwise never satisfy it and would sign on every call.
        // An explicit --min-lifetime is taken as asked.
        const int min_seconds = request->min_seconds == ControlRequest::kDefaultMinSeconds
                                    ? std::min(900, profile->config.session_duration * 2 / 5)
                                    : request->min_seconds;
        if (current && (*current)->deadline - now >= std::chrono::seconds(min_seconds) &&
            (*current)->credentials.expiration - wall >= std::chrono::seconds(min_seconds)) {
            reply_control(connection,
                          format_ok_reply(signer::credential_process_json((*current)->credentials).reveal()));
            return;
        }
        // A refresh that is backing off after failures is not hurried by clients: each fast-path call would
        // otherwise be one more CreateSession against a failing or throttling service (the reference helper's
        // PR #200 shape). The client gets what the cache holds now — the credentials still in service, or the
        // error that stopped the last refresh — and the scheduled retry stays where the policy put it.
        if (profile->cache.consecutive_failures() > 0 && !profile->cache.refresh_in_flight() &&
            profile->cache.next_refresh() > now) {
            reply_with(connection, current);
            return;
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
        refresh_now(profile);
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
        const auto now = SteadyClock::now();
        const auto wall = WallClock::now();
        nlohmann::ordered_json doc;
        doc["version"] = kVersion;
        doc["config"] = options_.config_path.string();
        auto& list = doc["profiles"] = nlohmann::json::array();
        for (const auto& profile : profiles_) {
            nlohmann::ordered_json p;
            p["name"] = profile->config.name;
            p["state"] = cache_state_name(profile->cache.state(now, wall));
            const auto& held = profile->cache.held();
            if (held) {
                p["access_key_id"] = signer::redact_access_key_id(held->credentials.access_key_id);
                p["expiration"] = format_iso8601(held->credentials.expiration);
                p["expires_in_seconds"] =
                    std::chrono::duration_cast<std::chrono::seconds>(held->deadline - now).count();
            }
            if (!profile->cache.refresh_in_flight()) {
                p["next_refresh_in_seconds"] = std::max<long long>(
                    0, std::chrono::duration_cast<std::chrono::seconds>(profile->cache.next_refresh() - now)
                           .count());
            } else {
                p["refreshing"] = true;
            }
            if (const auto& error = profile->cache.last_error()) {
                p["last_error"] = {{"code", errc_name(error->code)}, {"message", error->message}};
                p["consecutive_failures"] = profile->cache.consecutive_failures();
            }
            if (profile->session) {
                const auto& leaf = profile->session->identity.leaf;
                const auto days =
                    std::chrono::duration_cast<std::chrono::hours>(leaf.not_after() - wall).count() / 24;
                p["certificate"] = {{"subject", leaf.subject()},
                                    {"serial", leaf.serial_decimal()},
                                    {"not_after", format_iso8601(leaf.not_after())},
                                    {"days_left", days},
                                    {"expiring_soon", days < 14}};
            }
            nlohmann::ordered_json surfaces = nlohmann::json::array();
            for (const auto& address : profile->config.imds_listen) {
                surfaces.push_back("imds http://" + address.to_string());
            }
            if (!profile->config.ecs_path.empty() && options_.config.agent.ecs_listen) {
                surfaces.push_back("ecs http://" + options_.config.agent.ecs_listen->to_string() +
                                   profile->config.ecs_path);
            }
            if (!profile->config.credentials_file_profile.empty()) {
                surfaces.push_back("credentials-file " + credentials_path(*profile).string() + " [" +
                                   profile->config.credentials_file_profile + "]");
            }
            if (!options_.config.agent.socket_path.empty()) {
                surfaces.push_back("credential-process --profile " + profile->config.name);
            }
            p["surfaces"] = std::move(surfaces);
            list.push_back(std::move(p));
        }
        return doc.dump();
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
                start_refresh(p);
            }
        });
    }

    void refresh_now(const std::shared_ptr<Profile>& profile) {
        if (profile->cache.refresh_in_flight()) {
            return;  // single flight: the waiter is answered when the running refresh completes
        }
        profile->cache.request_refresh_by(SteadyClock::now());
        profile->timer.cancel();
        start_refresh(profile);
    }

    struct RefreshOutcome {
        std::optional<double> create_session_seconds;        // set when CreateSession was attempted
        std::shared_ptr<const PreparedSession> new_session;  // set when the identity was (re)loaded
        std::vector<FileStamp> stamps;
        Result<signer::Credentials> credentials = make_error(Errc::internal, "not run");
    };

    void start_refresh(const std::shared_ptr<Profile>& profile) {
        if (!profile->cache.begin_refresh()) {
            return;
        }
        auto stamps = identity_stamps(*profile->options);
        const bool reload = !profile->session || profile->settings_changed || stamps != profile->stamps;
        profile->settings_changed = false;
        auto session = profile->session;
        auto options = profile->options;
        net::post(workers_, [this, profile, reload, session, options, stamps = std::move(stamps),
                             name = profile->config.name]() mutable {
            auto outcome = std::make_shared<RefreshOutcome>();
            outcome->stamps = std::move(stamps);
            // Signing and the HTTPS exchange happen here, on a worker: the event loop keeps serving
            // meanwhile.
            if (reload) {
                auto prepared = prepare_session(*options, Diagnostics{false, stderr});
                if (!prepared) {
                    // A rotation that fails its checks (e.g. a key that does not match the new certificate)
                    // is an error of this refresh; signing on with the old key in memory would hide it.
                    outcome->credentials = prepared.error();
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
                log_.debug("create_session",
                           {{"profile", name},
                            {"ms", std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                      SteadyClock::now() - started)
                                                      .count())}});
            }
            net::post(io_, [this, profile, outcome] { finish_refresh(profile, *outcome); });
        });
    }

    void finish_refresh(const std::shared_ptr<Profile>& profile, RefreshOutcome& outcome) {
        if (stopping_) {
            return;
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
            if (!profile->config.credentials_file_profile.empty()) {
                write_credentials_file_async(profile, clone_credentials(*outcome.credentials));
            }
            profile->last_updated = WallClock::now();
            profile->cache.complete_success(std::move(*outcome.credentials), WallClock::now(), now, jitter);
            const auto& held = *profile->cache.held();
            log_.info("refresh_ok", {{"profile", profile->config.name},
                                     {"access_key", key},
                                     {"expiration", format_iso8601(held.credentials.expiration)},
                                     {"next_refresh_in", seconds_text(profile->cache.next_refresh() - now)}});
        } else {
            const Error error = outcome.credentials.error();
            const auto decision = profile->cache.complete_failure(error, now, jitter);
            ++profile->refresh_outcomes[decision.retryable ? "retryable" : "rejected"];
            const bool serving = static_cast<bool>(profile->cache.current(now, WallClock::now()));
            const std::initializer_list<LogField> fields{
                {"profile", profile->config.name},
                {"class", decision.retryable ? "retryable" : "rejected"},
                {"code", errc_name(error.code)},
                {"error", error.message},
                {"retry_in", seconds_text(decision.retry_at - now)},
                {"serving", serving ? "last-good" : "nothing"},
                {"failures", std::to_string(profile->cache.consecutive_failures())}};
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

    void write_credentials_file_async(const std::shared_ptr<Profile>& profile,
                                      signer::Credentials credentials) {
        auto shared = std::make_shared<signer::Credentials>(std::move(credentials));
        const auto path = credentials_path(*profile);
        const std::string section = profile->config.credentials_file_profile;
        net::post(workers_, [this, shared, path, section, name = profile->config.name] {
            if (auto r = write_credentials_file(path, section, *shared); !r) {
                log_.error("credentials_file_failed", {{"profile", name}, {"error", r.error().message}});
            } else {
                log_.debug("credentials_file_written", {{"profile", name}, {"file", path.string()}});
            }
        });
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

    // arm_clock_watch compares the wall clock with each profile's Expiration once a second. The refresh
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
                              {"monotonic_left", seconds_text(held->deadline - now)}});
                refresh_now(profile);
            }
            arm_clock_watch();
        });
    }

    void stop() {
        notify_systemd("STOPPING=1");
        log_.info("stopping");
        watchdog_.cancel();
        clock_watch_.cancel();
        if (health_server_) {
            health_server_->stop_accepting();
        }
        stopping_ = true;
        boost::system::error_code ignored;
        signals_.cancel(ignored);
        for (auto& profile : profiles_) {
            profile->timer.cancel();
            for (auto& server : profile->imds_servers) {
                server->stop_accepting();
            }
            profile->waiters.clear();
        }
        if (ecs_server_) {
            ecs_server_->stop_accepting();
        }
        if (control_) {
            control_->close(ignored);
            if (owns_socket_path_) {
                ::unlink(options_.config.agent.socket_path.c_str());
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
            for (auto& profile : profiles_) {
                profile->settings_changed = true;  // forces a reload of the identity files
                refresh_now(profile);
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
        const auto& old_agent = options_.config.agent;
        if (next.agent.socket_path != old_agent.socket_path ||
            (next.agent.ecs_listen ? next.agent.ecs_listen->to_string() : "") !=
                (old_agent.ecs_listen ? old_agent.ecs_listen->to_string() : "")) {
            log_.warning("reload_partial",
                         {{"reason", "socket_path and ecs_listen changes take effect on restart"}});
            next.agent.socket_path = old_agent.socket_path;
            next.agent.ecs_listen = old_agent.ecs_listen;
        }
        log_.set_level(next.agent.log_level);
        std::vector<std::shared_ptr<Profile>> kept;
        for (const auto& cfg : next.profiles) {
            std::shared_ptr<Profile> profile = find(cfg.name);
            if (profile) {
                // The runtime stays (its credentials remain in service until replaced); its settings change.
                const bool listeners_changed = [&] {
                    if (cfg.imds_listen.size() != profile->config.imds_listen.size()) {
                        return true;
                    }
                    for (std::size_t i = 0; i < cfg.imds_listen.size(); ++i) {
                        if (cfg.imds_listen[i].to_string() != profile->config.imds_listen[i].to_string()) {
                            return true;
                        }
                    }
                    return false;
                }();
                const bool token_changed = cfg.ecs_token_file != profile->config.ecs_token_file;
                profile->config = cfg;
                profile->options =
                    std::make_shared<const CredentialOptions>(credential_options_from_profile(cfg));
                std::tie(profile->imds.role_name, profile->account_id) = role_name_and_account(cfg.role_arn);
                profile->imds.allow_imdsv1 = next.agent.allow_imdsv1;
                profile->settings_changed = true;
                if (listeners_changed) {
                    for (auto& server : profile->imds_servers) {
                        server->stop_accepting();
                    }
                    profile->imds_servers.clear();
                    profile->listeners_pending = true;
                }
                if (token_changed) {
                    profile->ecs_token = Secret();
                }
            } else {
                profile = std::make_shared<Profile>(io_, cfg, next.agent, SteadyClock::now());
                profile->settings_changed = true;
                profile->listeners_pending = true;
            }
            if (!profile->config.ecs_path.empty() && profile->ecs_token.empty()) {
                auto token = ensure_token_file(profile->config.ecs_token_file);
                if (!token) {
                    log_.error("reload_failed", {{"profile", cfg.name}, {"error", token.error().message}});
                    continue;
                }
                profile->ecs_token = std::move(*token);
            }
            kept.push_back(std::move(profile));
        }
        for (auto& old : profiles_) {
            if (std::find(kept.begin(), kept.end(), old) == kept.end()) {
                old->timer.cancel();
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
                if (auto r = open_imds(profile); !r) {
                    log_.error("listen_failed",
                               {{"profile", profile->config.name}, {"error", r.error().message}});
                }
            }
            refresh_now(profile);
        }
        log_.info("reloaded", {{"profiles", std::to_string(profiles_.size())}});
    }

    AgentOptions options_;
    Logger& log_;
    net::io_context io_;
    net::thread_pool workers_{2};
    net::signal_set signals_;
    std::mt19937_64 rng_;
    std::unique_ptr<pki::HmacKey> hmac_;
    std::string refused_config_identity_;  // renew_config_identity's last "no"
    ImdsTokens tokens_;
    std::vector<std::shared_ptr<Profile>> profiles_;
    std::unique_ptr<HttpServer> ecs_server_;
    std::unique_ptr<HttpServer> health_server_;
    ActivatedSockets activated_;
    RequestCounts requests_;
    net::steady_timer watchdog_{io_};
    net::steady_timer clock_watch_{io_};
    std::map<std::string, ExpiryWarning> expiry_warned_;  // profile name → the last certificate_expiring
    std::chrono::milliseconds watchdog_period_{0};
    std::unique_ptr<unix_stream::acceptor> control_;
    bool stopping_ = false;
    bool owns_socket_path_ = false;  // we bound the Unix socket (not socket activation): remove it at stop
};

}  // namespace

int run_agent(AgentOptions options, Logger& log) {
    // Ignore SIGPIPE: a client that goes away mid-answer must not kill the agent.
    std::signal(SIGPIPE, SIG_IGN);
    Agent agent(std::move(options), log);
    return agent.run();
}

}  // namespace rad::daemon
