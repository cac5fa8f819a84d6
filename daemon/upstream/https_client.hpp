#pragma once
// The HTTPS client sends one signed request to the Roles Anywhere endpoint and returns the answer. It owns
// nothing between calls; each exchange makes its own connection (CreateSession happens at most every few
// minutes). The agent runs exchanges on its event loop (async_send_request); the one-shot commands wait for
// one (send_request). This header is free of Boost.Asio/Beast so that only https_client.cpp pays their
// compile time.

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/error.hpp"
#include "daemon/upstream/proxy.hpp"
#include "signer/endpoint.hpp"
#include "signer/http_request.hpp"

namespace boost::asio {
class io_context;
}

namespace rad::upstream {

struct HttpsClientOptions {
    // verify_peer: check the server certificate chain and host name (off only with --no-verify-ssl).
    bool verify_peer = true;
    // ca_bundle: PEM file of trusted CAs replacing the system store (--ca-bundle / AWS_CA_BUNDLE).
    std::filesystem::path ca_bundle;
    std::chrono::milliseconds connect_timeout{5000};
    std::chrono::milliseconds tls_timeout{5000};
    // total_timeout bounds one attempt from resolve to the last byte of the answer.
    std::chrono::milliseconds total_timeout{20000};
    std::size_t max_response_bytes = 64 * 1024;
    std::string user_agent;
    // proxy: the CONNECT proxy to tunnel through, chosen by proxy_for(); nullopt connects directly.
    std::optional<ProxySettings> proxy;
};

// send_request performs one HTTP/1.1 exchange with `base` (https or http): connect (through the proxy if
// any), TLS 1.2+ with SNI and host-name verification, write `request` to "<base.path><request.path>?<query>",
// read the answer up to max_response_bytes. Errors are classified: upstream_unreachable (resolve, connect,
// reset, closed early, proxy refused), upstream_timeout, upstream_tls (handshake or verification),
// upstream_malformed (unparsable or oversized answer), input_missing/input_invalid (the CA bundle cannot be
// used).
[[nodiscard]] Result<signer::HttpResponse> send_request(const signer::Url& base,
                                                        const signer::HttpRequest& request,
                                                        const HttpsClientOptions& options);

// PendingExchange is an exchange running on an event loop. cancel() ends it at once: its completion is still
// called, on the loop, with an error (upstream_unreachable "cancelled").
class PendingExchange {
public:
    virtual ~PendingExchange() = default;
    virtual void cancel() = 0;
};

using ExchangeDone = std::function<void(Result<signer::HttpResponse>)>;

// async_send_request runs the exchange of send_request on `io` and calls `done` there, once, with its
// outcome. The exchange keeps what it needs (the options shared, as they hold a proxy password); the returned
// handle may be dropped.
std::shared_ptr<PendingExchange> async_send_request(boost::asio::io_context& io,
                                                    signer::Url base,
                                                    signer::HttpRequest request,
                                                    std::shared_ptr<const HttpsClientOptions> options,
                                                    ExchangeDone done);

}  // namespace rad::upstream
