#pragma once
// ARNs and the Roles Anywhere endpoint: which region signs, which URL is called.

#include <optional>
#include <string>
#include <string_view>

#include "common/error.hpp"

namespace rad::signer {

// Arn is "arn:<partition>:<service>:<region>:<account>:<resource>".
struct Arn {
    std::string partition, service, region, account, resource;
};

// parse_arn splits an ARN. `what` names the flag or field in the usage error, e.g. "--trust-anchor-arn".
[[nodiscard]] Result<Arn> parse_arn(std::string_view text, std::string_view what);

// Url is a parsed http(s) base URL.
struct Url {
    std::string scheme;  // "https" or "http"
    std::string host;    // without brackets for IPv6 literals
    std::string port;    // always set: explicit, or 443/80 from the scheme
    bool explicit_port = false;
    std::string path;  // base path prefix without a trailing '/', usually empty
    // host_header is "host" or "host:port" (explicit port only), IPv6 in brackets.
    std::string host_header() const;
};

// parse_url accepts "https://host[:port][/prefix]" and "http://..." ; `what` names the flag in errors.
[[nodiscard]] Result<Url> parse_url(std::string_view text, std::string_view what);

// EndpointOptions are the inputs that choose the URL and signing region of CreateSession.
struct EndpointOptions {
    std::string trust_anchor_arn, profile_arn, role_arn;
    std::string region;     // --region; empty: the trust anchor's region
    std::string endpoint;   // --endpoint; empty: derived from region and partition
    bool use_fips = false;  // --use-fips-endpoint
};

struct ResolvedEndpoint {
    std::string region;  // the signing region
    Url url;             // where POST <url.path>/sessions goes
};

// EndpointNames spells each field in resolve_endpoint's messages: the command line's flags by default; the
// agent passes the configuration file's keys.
struct EndpointNames {
    std::string_view trust_anchor_arn = "--trust-anchor-arn";
    std::string_view profile_arn = "--profile-arn";
    std::string_view role_arn = "--role-arn";
    std::string_view region = "--region";
    std::string_view endpoint = "--endpoint";
    std::string_view use_fips_endpoint = "--use-fips-endpoint";
};

// resolve_endpoint validates the three ARNs in full before anything is signed: trust anchor and profile are
// rolesanywhere ARNs in the same region with UUID ids ("trust-anchor/<id>", "profile/<id>"), the role an iam
// ARN without region ("role/[path/]name" within IAM's limits); every account id is 12 digits and every
// partition "aws" or "aws-<name>", the same for all three. It then picks the region and builds
// https://rolesanywhere[-fips].<region>.<suffix> (amazonaws.com, amazonaws.com.cn for aws-cn) unless an
// endpoint is given. Errors are one-line Errc::usage messages that start with the name (`names`) of the field
// at fault, or name the fields involved; `name_at_fault`, when given, is set to the name (one of `names`) of
// the field to blame (the first one named), so that a caller can point at it in its own terms.
[[nodiscard]] Result<ResolvedEndpoint> resolve_endpoint(const EndpointOptions& options,
                                                        const EndpointNames& names = {},
                                                        std::string_view* name_at_fault = nullptr);

}  // namespace rad::signer
