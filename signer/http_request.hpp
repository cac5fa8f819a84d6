#pragma once
// HttpRequest and HttpResponse are plain data: what the signer produces and the transport (daemon/) sends.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rad::signer {

using Header = std::pair<std::string, std::string>;

struct HttpRequest {
    std::string method;  // "POST"
    std::string host;    // Host header value: the URL host, with ":port" when the URL names one
    std::string path;    // "/sessions" (the canonical URI; a base-URL path prefix is not signed)
    // query holds the parameters unencoded, in any order; encoding and sorting happen at canonicalisation.
    std::vector<std::pair<std::string, std::string>> query;
    // headers in insertion order; names keep the case they were set with.
    std::vector<Header> headers;
    std::string body;

    // header returns the value of the first header named `name` (case-insensitive), or nullptr.
    const std::string* header(std::string_view name) const;
    // set_header replaces every header named `name` (case-insensitive) with one `name: value`.
    void set_header(std::string name, std::string value);
};

struct HttpResponse {
    int status = 0;
    std::vector<Header> headers;
    std::string body;

    const std::string* header(std::string_view name) const;
};

// encoded_query is the query string as sent and as canonicalised: keys sorted, RFC 3986 unreserved
// characters kept, everything else %XX (uppercase), '&' between pairs.
std::string encoded_query(const HttpRequest& request);

}  // namespace rad::signer
