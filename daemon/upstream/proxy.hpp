#pragma once
// Proxy selection from the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY and their lowercase forms), as curl
// and the AWS SDKs read it. Pure: the environment comes in as a lookup function.

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "common/secret.hpp"
#include "signer/endpoint.hpp"

namespace rad::upstream {

// ProxySettings is one HTTP proxy reached with CONNECT.
struct ProxySettings {
    std::string host;  // without brackets for IPv6
    std::string port;  // default "80" (also for https:// proxy URLs: the tunnel itself is plain HTTP here)
    // authorization is the Proxy-Authorization value ("Basic …") when the URL had user:password.
    std::optional<Secret> authorization;
};

// EnvLookup returns an environment variable's value, or nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const char*)>;

// parse_proxy_url accepts "http://[user[:password]@]host[:port][/]" or "host:port"; `what` names the
// variable in errors (Errc::usage).
[[nodiscard]] Result<ProxySettings> parse_proxy_url(std::string_view text, std::string_view what);

// no_proxy_matches says whether `host` is exempt under a NO_PROXY list: comma/space-separated entries; "*"
// matches everything; "example.com" and ".example.com" match the domain and its subdomains; an entry with
// ":port" must match the port too; IP literals match exactly (IPv6 with or without brackets).
bool no_proxy_matches(std::string_view no_proxy, std::string_view host, std::string_view port);

// proxy_for picks the proxy for a request to `target`: HTTPS_PROXY/https_proxy for https URLs,
// HTTP_PROXY/http_proxy for http URLs, unless NO_PROXY/no_proxy exempts the host. nullopt: connect directly.
[[nodiscard]] Result<std::optional<ProxySettings>> proxy_for(const signer::Url& target, const EnvLookup& env);

}  // namespace rad::upstream
