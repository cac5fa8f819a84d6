#include "daemon/agent/profile_runtime.hpp"

#include <boost/asio/post.hpp>
#include <cstdio>
#include <fstream>

#include "daemon/agent/agent.hpp"
#include "daemon/agent/ecs_token.hpp"
#include "daemon/surfaces/credentials_file.hpp"
#include "signer/create_session.hpp"
#include "signer/endpoint.hpp"
#include "signer/sigv4x509.hpp"

namespace rad::agent {

namespace net = boost::asio;

namespace {

engine::Instant now() {
    return engine::Instant{std::chrono::steady_clock::now(), std::chrono::system_clock::now()};
}

// starts_with_tss2_key: a TSS2 PRIVATE KEY file is a key that lives in a TPM.
bool starts_with_tss2_key(const std::filesystem::path& path) {
    std::ifstream file(path, std::ios::binary);
    char head[40] = {};
    file.read(head, sizeof head);
    return std::string_view(head, static_cast<std::size_t>(file.gcount())).starts_with("-----BEGIN TSS2");
}

template <class... F>
struct Overloaded : F... {
    using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

}  // namespace

std::pair<std::string, std::string> role_name_and_account(const std::string& role_arn) {
    auto arn = signer::parse_arn(role_arn, "role_arn");
    if (!arn) {
        return {"rolesanywhere-role", ""};
    }
    const auto slash = arn->resource.rfind('/');
    return {slash == std::string::npos ? arn->resource : arn->resource.substr(slash + 1), arn->account};
}

engine::IdentityInfo identity_info(const pki::Identity& identity) {
    return engine::IdentityInfo{identity.leaf.sha1_fingerprint_hex(),
                                identity.leaf.not_before(),
                                identity.leaf.not_after(),
                                identity.leaf.subject(),
                                identity.leaf.serial_decimal(),
                                identity.key.description()};
}

bool loading_may_block(const config::IdentitySpec& identity) {
    const std::string certificate = identity.certificate.string();
    const std::string key = identity.private_key.string();
    return certificate.starts_with("pkcs11:") || key.starts_with("pkcs11:") || key.starts_with("handle:") ||
           (!key.empty() && starts_with_tss2_key(identity.private_key));
}

ProfileRuntime::ProfileRuntime(net::io_context& io,
                               net::thread_pool& key_pool,
                               Logger& log,
                               config::ProfileConfig config,
                               engine::EngineSettings settings,
                               std::uint64_t seed,
                               Hooks hooks)
    : io_(io),
      key_pool_(key_pool),
      log_(log),
      config_(std::move(config)),
      engine_(config_.name, settings, seed),
      hooks_(std::move(hooks)),
      timer_(io),
      driver_(
          engine_, [this](engine::Command& command) { execute(command); }, now) {
    std::tie(role_name_, account_id_) = role_name_and_account(config_.role_arn);
}

void ProfileRuntime::start(std::optional<engine::HandedOver> handed_over) {
    seen_stamps_ = identity_stamps(config_.identity);
    load_in_place_ = true;
    dispatch(engine::Started{std::move(handed_over)});
    load_in_place_ = false;
}

void ProfileRuntime::stop() {
    dispatch(engine::Stopped{});
    timer_.cancel();
    if (exchange_) {
        exchange_->cancel();
    }
    waiters_.clear();
}

void ProfileRuntime::reconfigure(config::ProfileConfig config,
                                 engine::EngineSettings settings,
                                 bool credentials_changed) {
    config_ = std::move(config);
    std::tie(role_name_, account_id_) = role_name_and_account(config_.role_arn);
    if (credentials_changed) {
        seen_stamps_ = identity_stamps(config_.identity);
    }
    dispatch(engine::Reconfigured{settings, credentials_changed});
}

void ProfileRuntime::look() {
    if (!notice_file_changes()) {
        dispatch(engine::Tick{});
    }
}

// notice_file_changes tells the engine when the identity files changed since they were last seen. It runs
// once a second, and before anything that may lead to a CreateSession at once (a timer, a client's or an
// operator's request), so that a renewal is never missed by a refresh that happens to come first.
bool ProfileRuntime::notice_file_changes() {
    auto stamps = identity_stamps(config_.identity);
    if (stamps == seen_stamps_) {
        return false;
    }
    seen_stamps_ = std::move(stamps);
    dispatch(engine::IdentityFilesChanged{});
    return true;
}

surfaces::ServedCredentials ProfileRuntime::served() const {
    auto current = engine_.servable(now());
    if (!current) {
        return surfaces::ServedCredentials{nullptr, current.error(), {}};
    }
    return surfaces::ServedCredentials{&(*current)->credentials, {}, (*current)->received_wall};
}

void ProfileRuntime::client_waiting() {
    // Posted: the HTTP server calls its handler on the loop, and the engine's commands may load files.
    net::post(io_, [weak = weak_from_this()] {
        if (auto self = weak.lock()) {
            self->dispatch(engine::ClientWaiting{});
        }
    });
}

void ProfileRuntime::ask(int min_seconds, std::function<void()> answer) {
    if (engine_.answer(min_seconds, now()) != policy::CredentialsAnswer::refresh_first) {
        answer();
        return;
    }
    waiters_.push_back(std::move(answer));
    notice_file_changes();
    dispatch(engine::RefreshRequested{engine::RefreshReason::fast_path});
}

void ProfileRuntime::refresh(std::function<void()> done) {
    waiters_.push_back(std::move(done));
    notice_file_changes();
    dispatch(engine::RefreshRequested{engine::RefreshReason::command});
}

void ProfileRuntime::surface_failed(const std::string& surface, const Error& error) {
    dispatch(engine::SurfaceFailed{surface, error});
}

void ProfileRuntime::surface_recovered(const std::string& surface) {
    dispatch(engine::SurfaceRecovered{surface});
}

bool ProfileRuntime::load_ecs_token() {
    auto token = ensure_token_file(config_.ecs_token_file);
    if (!token) {
        surface_failed("ecs_token", token.error());
        return false;
    }
    ecs_token_ = std::move(*token);
    surface_recovered("ecs_token");
    return true;
}

std::filesystem::path ProfileRuntime::credentials_path() const {
    return config_.credentials_file.empty() ? surfaces::default_credentials_file() : config_.credentials_file;
}

std::optional<engine::HandedOver> ProfileRuntime::handed_over() const {
    const auto& held = engine_.held();
    if (!held || !engine_.servable(now())) {
        return std::nullopt;
    }
    return engine::HandedOver{
        signer::Credentials{held->credentials.access_key_id, held->credentials.secret_access_key.clone(),
                            held->credentials.session_token.clone(), held->credentials.expiration},
        held->received_wall, engine_.credentials_fingerprint()};
}

void ProfileRuntime::fill_snapshot(policy::ProfileSnapshot& snapshot) const {
    engine_.fill_snapshot(snapshot, now());
}

// --- The engine's steps ----------------------------------------------------------------------------------

void ProfileRuntime::dispatch(engine::Event event) {
    if (!driver_.dispatch(std::move(event))) {
        return;  // queued behind the step in progress, which re-arms the timer and reports when it ends
    }
    arm_timer();
    if (hooks_.changed) {
        hooks_.changed(std::exchange(refreshed_, false));
    }
}

void ProfileRuntime::execute(engine::Command& command) {
    std::visit(Overloaded{
                   [this](engine::LoadIdentity&) { load_identity(); },
                   [this](engine::SendCreateSession&) { send_create_session(); },
                   [this](engine::WriteCredentialsFile&) { write_credentials_file(); },
                   [this](engine::RetrySurface& retry) {
                       if (retry.surface == "ecs_token") {
                           load_ecs_token();
                       } else if (hooks_.retry_surface) {
                           hooks_.retry_surface(*this, retry.surface);
                       }
                   },
                   [this](engine::CredentialsChanged&) {
                       if (hooks_.credentials_changed) {
                           hooks_.credentials_changed(*this);
                       }
                   },
                   [this](engine::RefreshDone&) { answer_waiters(); },
                   [this](engine::Log& line) {
                       refreshed_ =
                           refreshed_ || line.event == "refresh_ok" || line.event == "refresh_failed";
                       log_.log(line.level, line.event, line.fields);
                   },
               },
               command);
}

void ProfileRuntime::arm_timer() {
    const auto at = engine_.wake_at();
    if (at == engine::SteadyTime::max()) {
        timer_.cancel();
        return;
    }
    timer_.expires_at(at);
    timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
        if (auto self = weak.lock(); self && !ec) {
            self->look();
        }
    });
}

void ProfileRuntime::answer_waiters() {
    auto waiters = std::move(waiters_);
    waiters_.clear();
    for (auto& waiter : waiters) {
        waiter();
    }
}

// load_identity prepares the session from the profile's files: on the loop for key files (a few
// milliseconds of parsing), on the key pool for tokens and TPMs, whose logins and loads block.
void ProfileRuntime::load_identity() {
    seen_stamps_ = identity_stamps(config_.identity);
    // A profile of the configuration file is checked as the file's (FILE:LINE and the key's name) first.
    if (!config_.source.file.empty()) {
        if (auto r = check_profile_settings(config_); !r) {
            identity_prepared(r.error());
            return;
        }
    }
    auto settings = std::make_shared<const config::ProfileConfig>(config_);
    if (load_in_place_ || !loading_may_block(config_.identity)) {
        identity_prepared(upstream::prepare_session(*settings, log_, false));
        return;
    }
    net::post(key_pool_, [&io = io_, &log = log_, weak = weak_from_this(), settings] {
        auto prepared = std::make_shared<Result<upstream::PreparedSession>>(
            upstream::prepare_session(*settings, log, false));
        net::post(io, [weak, prepared] {
            if (auto self = weak.lock()) {
                self->identity_prepared(std::move(*prepared));
            }
        });
    });
}

void ProfileRuntime::identity_prepared(Result<upstream::PreparedSession> prepared) {
    if (!prepared) {
        dispatch(engine::IdentityLoaded{prepared.error()});
        return;
    }
    session_ = std::make_shared<const upstream::PreparedSession>(std::move(*prepared));
    dispatch(engine::IdentityLoaded{identity_info(session_->identity)});
}

// send_create_session signs the request with the identity loaded last, at this instant (the engine has just
// checked the certificate's dates), and sends it on the loop. A device key signs on the key pool.
void ProfileRuntime::send_create_session() {
    auto session = session_;
    if (!session) {
        dispatch(engine::SessionAnswered{make_error(Errc::internal, "no identity is loaded")});
        return;
    }
    signer::HttpRequest request = signer::make_create_session_request(session->params, session->endpoint.url);
    if (!session->identity.key.on_device()) {
        if (auto r = signer::sign_request(request, session->identity, session->endpoint.region,
                                          std::chrono::system_clock::now());
            !r) {
            dispatch(engine::SessionAnswered{r.error()});
            return;
        }
        transmit(std::move(session), std::move(request));
        return;
    }
    net::post(key_pool_,
              [&io = io_, weak = weak_from_this(), session, request = std::move(request)]() mutable {
                  auto signed_ok = signer::sign_request(request, session->identity, session->endpoint.region,
                                                        std::chrono::system_clock::now());
                  net::post(io, [weak, session, request = std::move(request),
                                 signed_ok = std::move(signed_ok)]() mutable {
                      auto self = weak.lock();
                      if (!self) {
                          return;
                      }
                      if (!signed_ok) {
                          self->dispatch(engine::SessionAnswered{signed_ok.error()});
                          return;
                      }
                      self->transmit(std::move(session), std::move(request));
                  });
              });
}

void ProfileRuntime::transmit(std::shared_ptr<const upstream::PreparedSession> session,
                              signer::HttpRequest request) {
    const std::shared_ptr<const upstream::HttpsClientOptions> client(session, &session->client);
    exchange_ = upstream::async_send_request(
        io_, session->endpoint.url, std::move(request), client,
        [weak = weak_from_this(),
         sent = std::chrono::steady_clock::now()](Result<signer::HttpResponse> response) {
            auto self = weak.lock();
            if (!self) {
                return;
            }
            self->exchange_.reset();
            self->log_.debug("create_session", {{"profile", self->name()},
                                                {"ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                                           std::chrono::steady_clock::now() - sent)
                                                           .count()}});
            Result<signer::Credentials> credentials =
                response ? signer::parse_create_session_response(*response, std::chrono::system_clock::now())
                         : Result<signer::Credentials>(response.error());
            self->dispatch(engine::SessionAnswered{std::move(credentials)});
        });
}

void ProfileRuntime::write_credentials_file() {
    const auto& held = engine_.held();
    if (!held || config_.credentials_file_profile.empty()) {
        return;
    }
    const auto path = credentials_path();
    if (auto r = surfaces::write_credentials_file(path, config_.credentials_file_profile, held->credentials);
        !r) {
        dispatch(engine::SurfaceFailed{"credentials_file", r.error()});
        return;
    }
    log_.debug("credentials_file_written", {{"profile", config_.name}, {"file", path.string()}});
    dispatch(engine::SurfaceRecovered{"credentials_file"});
}

}  // namespace rad::agent
