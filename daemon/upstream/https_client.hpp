#pragma once
// HttpsClient sends one signed request to the Roles Anywhere endpoint and returns the answer. It owns nothing
// between calls; each send() makes its own connection (CreateSession happens at most every few minutes).
// This header is free of Boost.Asio/Beast so that only https_client.cpp pays their compile time.

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include "common/error.hpp"
#include "daemon/upstream/proxy.hpp"
#include "signer/endpoint.hpp"
#include "signer/http_request.hpp"

namespace rad::daemon {

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

}  // namespace rad::daemon
