#include "signer/endpoint.hpp"

#include <algorithm>
#include <array>

namespace rad::signer {
namespace {

std::string quoted(std::string_view s) {
    // Flag values end up in one-line messages: cut them short and keep control characters out.
    constexpr std::size_t kMax = 200;
    std::string out = "'";
    for (std::size_t i = 0; i < s.size() && i < kMax; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        out += (c < 0x20 || c == 0x7F) ? '?' : s[i];
    }
    if (s.size() > kMax) {
        out += "...";
    }
    out += "'";
    return out;
}

Error usage(std::string_view what, std::string_view value, std::string_view problem) {
    return make_error(Errc::usage, std::string(what) + " " + quoted(value) + ": " + std::string(problem));
}

std::string to_lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; });
    return out;
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
bool is_alnum(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// valid_region accepts what AWS region names look like (lowercase letters, digits, inner dashes); the value
// becomes part of a host name and of the signing scope, so anything else is refused rather than sent.
bool valid_region(std::string_view region) {
    if (region.empty() || region.size() > 64 || region.front() == '-' || region.back() == '-') {
        return false;
    }
    return std::all_of(region.begin(), region.end(),
                       [](char c) { return (c >= 'a' && c <= 'z') || is_digit(c) || c == '-'; });
}

bool is_fips_pseudo_region(std::string_view region) {
    return region.starts_with("fips-") || region.ends_with("-fips");
}

struct Partition {
    std::string_view name, dns_suffix;
    bool has_fips;
};

// kPartitions are the DNS suffixes of the SDK endpoint rules for rolesanywhere (docs/protocol.md §2.2).
constexpr std::array<Partition, 7> kPartitions{{
    {"aws", "amazonaws.com", true},
    {"aws-cn", "amazonaws.com.cn", false},
    {"aws-us-gov", "amazonaws.com", true},
    {"aws-iso", "c2s.ic.gov", true},
    {"aws-iso-b", "sc2s.sgov.gov", true},
    {"aws-iso-e", "cloud.adc-e.uk", true},
    {"aws-iso-f", "csp.hci.ic.gov", true},
}};

const Partition* find_partition(std::string_view name) {
    for (const auto& p : kPartitions) {
        if (p.name == name) {
            return &p;
        }
    }
    return nullptr;
}

// valid_partition accepts "aws" and "aws-<name>" (aws-cn, aws-us-gov, aws-iso-b, ...): the shape of every
// partition AWS has, without a list, so that a new partition works with --endpoint.
bool valid_partition(std::string_view partition) {
    if (partition == "aws") {
        return true;
    }
    if (!partition.starts_with("aws-") || partition.size() == 4 || partition.back() == '-' ||
        partition.size() > 32) {
        return false;
    }
    return std::all_of(partition.begin(), partition.end(),
                       [](char c) { return (c >= 'a' && c <= 'z') || is_digit(c) || c == '-'; });
}

bool valid_account(std::string_view account) {
    return account.size() == 12 && std::all_of(account.begin(), account.end(), is_digit);
}

// valid_uuid is the id pattern of trust anchors and profiles in the Roles Anywhere API reference:
// [a-f0-9]{8}-([a-z0-9]{4}-){3}[a-z0-9]{12}, 36 characters.
bool valid_uuid(std::string_view id) {
    if (id.size() != 36) {
        return false;
    }
    for (std::size_t i = 0; i < id.size(); ++i) {
        const char c = id[i];
        const bool dash_position = i == 8 || i == 13 || i == 18 || i == 23;
        const bool ok = dash_position ? c == '-'
                        : i < 8       ? (is_digit(c) || (c >= 'a' && c <= 'f'))
                                      : (is_digit(c) || (c >= 'a' && c <= 'z'));
        if (!ok) {
            return false;
        }
    }
    return true;
}

// valid_role_resource checks "role/[path/]name" against the IAM limits: the name is 1 to 64 of
// [A-Za-z0-9+=,.@_-], the path "/" or "/<printable ASCII>/" of at most 512 characters.
bool valid_role_resource(std::string_view resource) {
    constexpr std::string_view kPrefix = "role";
    if (!resource.starts_with("role/")) {
        return false;
    }
    const std::size_t last_slash = resource.rfind('/');
    const std::string_view path = resource.substr(kPrefix.size(), last_slash + 1 - kPrefix.size());
    const std::string_view name = resource.substr(last_slash + 1);
    const auto name_char = [](char c) {
        return is_alnum(c) || c == '+' || c == '=' || c == ',' || c == '.' || c == '@' || c == '_' ||
               c == '-';
    };
    if (name.empty() || name.size() > 64 || !std::all_of(name.begin(), name.end(), name_char)) {
        return false;
    }
    // The path runs from the '/' after "role" to the last '/': its inner characters are printable ASCII
    // (parse_arn already refused the rest), and "//" would be an empty segment IAM never creates.
    return path.size() <= 512 && path.find("//") == std::string_view::npos;
}

// check_arn requires the service, a valid partition and account, a region exactly where the service has one
// (Roles Anywhere ARNs do, IAM ARNs do not), and a resource "<prefix><id>" whose id AWS could have issued.
Result<void> check_arn(const Arn& arn,
                       std::string_view text,
                       std::string_view what,
                       std::string_view service,
                       std::string_view prefix) {
    if (arn.service != service) {
        return usage(what, text,
                     "expected an ARN of service '" + std::string(service) + "', got '" + arn.service + "'");
    }
    if (!valid_partition(arn.partition)) {
        return usage(what, text,
                     "unknown partition '" + arn.partition + "' (expected aws, aws-cn, aws-us-gov, ...)");
    }
    if (!valid_account(arn.account)) {
        return usage(what, text, "the account id must be 12 digits, got '" + arn.account + "'");
    }
    const bool regional = service != "iam";
    if (regional && !valid_region(arn.region)) {
        return usage(what, text, "the ARN has no valid region");
    }
    if (!regional && !arn.region.empty()) {
        return usage(what, text,
                     "an IAM role ARN has no region (arn:<partition>:iam::<account>:role/<name>)");
    }
    if (!arn.resource.starts_with(prefix) || arn.resource.size() == prefix.size()) {
        return usage(what, text, "expected a resource of the form '" + std::string(prefix) + "<id>'");
    }
    if (regional && !valid_uuid(std::string_view(arn.resource).substr(prefix.size()))) {
        return usage(what, text,
                     "expected '" + std::string(prefix) +
                         "<id>' with the 36-character lowercase id that AWS shows, e.g. "
                         "0a1b2c3d-0000-4000-8000-000000000001");
    }
    if (!regional && !valid_role_resource(arn.resource)) {
        return usage(what, text,
                     "expected 'role/[path/]name': a name of 1 to 64 letters, digits or +=,.@_- and a path "
                     "of at most 512 characters");
    }
    return {};
}

bool valid_reg_name(std::string_view host) {
    if (host.empty() || host.size() > 253 || host.front() == '.' || host.front() == '-') {
        return false;
    }
    return std::all_of(host.begin(), host.end(),
                       [](char c) { return is_alnum(c) || c == '-' || c == '.' || c == '_'; });
}

bool valid_ipv6_literal(std::string_view host) {
    if (host.size() < 2 || host.find(':') == std::string_view::npos) {
        return false;
    }
    return std::all_of(host.begin(), host.end(), [](char c) {
        return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
    });
}

}  // namespace

std::string Url::host_header() const {
    std::string out = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    if (explicit_port) {
        out += ':';
        out += port;
    }
    return out;
}

Result<Arn> parse_arn(std::string_view text, std::string_view what) {
    if (text.empty()) {
        return make_error(Errc::usage, std::string(what) + " is required");
    }
    // The resource is everything after the fifth ':' and may itself contain ':' (it does not for the ARNs
    // used here, but splitting further would misread valid ARNs).
    std::array<std::string_view, 5> parts;
    std::string_view rest = text;
    for (auto& part : parts) {
        const std::size_t colon = rest.find(':');
        if (colon == std::string_view::npos) {
            return usage(what, text,
                         "not an ARN (expected arn:<partition>:<service>:<region>:<account>:<resource>)");
        }
        part = rest.substr(0, colon);
        rest.remove_prefix(colon + 1);
    }
    if (parts[0] != "arn") {
        return usage(what, text, "not an ARN (it must start with 'arn:')");
    }
    Arn arn{std::string(parts[1]), std::string(parts[2]), std::string(parts[3]), std::string(parts[4]),
            std::string(rest)};
    if (arn.partition.empty() || arn.service.empty() || arn.resource.empty()) {
        return usage(what, text, "the ARN has an empty partition, service or resource");
    }
    const auto printable = [](char c) { return c > 0x20 && c < 0x7F; };
    if (!std::all_of(text.begin(), text.end(), printable)) {
        return usage(what, text, "the ARN contains spaces or control characters");
    }
    return arn;
}

Result<Url> parse_url(std::string_view text, std::string_view what) {
    Url url;
    const std::size_t scheme_end = text.find("://");
    if (scheme_end == std::string_view::npos) {
        return usage(what, text, "expected an http:// or https:// URL");
    }
    url.scheme = to_lower(text.substr(0, scheme_end));
    if (url.scheme != "https" && url.scheme != "http") {
        return usage(what, text, "only http:// and https:// URLs are supported");
    }
    std::string_view rest = text.substr(scheme_end + 3);
    if (rest.find_first_of("?#") != std::string_view::npos) {
        return usage(what, text, "a query or fragment is not allowed");
    }
    const std::size_t path_start = rest.find('/');
    std::string_view authority = rest.substr(0, path_start);
    std::string_view path =
        path_start == std::string_view::npos ? std::string_view{} : rest.substr(path_start);
    if (authority.find('@') != std::string_view::npos) {
        return usage(what, text, "user information (user@host) is not allowed");
    }

    std::string_view port;
    if (authority.starts_with("[")) {
        const std::size_t close = authority.find(']');
        if (close == std::string_view::npos) {
            return usage(what, text, "unterminated IPv6 literal");
        }
        const std::string_view literal = authority.substr(1, close - 1);
        if (!valid_ipv6_literal(literal)) {
            return usage(what, text, "invalid IPv6 literal");
        }
        url.host = to_lower(literal);
        const std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') {
                return usage(what, text, "unexpected characters after the IPv6 literal");
            }
            port = after.substr(1);
            url.explicit_port = true;
        }
    } else {
        const std::size_t colon = authority.find(':');
        const std::string_view host = authority.substr(0, colon);
        if (!valid_reg_name(host)) {
            return usage(what, text, host.empty() ? "the host is missing" : "invalid host name");
        }
        url.host = to_lower(host);
        if (colon != std::string_view::npos) {
            port = authority.substr(colon + 1);
            url.explicit_port = true;
        }
    }

    if (url.explicit_port) {
        if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), is_digit)) {
            return usage(what, text, "the port must be a number from 1 to 65535");
        }
        int value = 0;
        for (const char c : port) {
            value = value * 10 + (c - '0');
        }
        if (value < 1 || value > 65535) {
            return usage(what, text, "the port must be a number from 1 to 65535");
        }
        url.port = std::to_string(value);
    } else {
        url.port = url.scheme == "https" ? "443" : "80";
    }

    const auto path_char = [](char c) { return c > 0x20 && c < 0x7F && c != '\\'; };
    if (!std::all_of(path.begin(), path.end(), path_char)) {
        return usage(what, text, "the path contains spaces or control characters");
    }
    while (path.ends_with("/")) {
        path.remove_suffix(1);
    }
    url.path = std::string(path);
    return url;
}

namespace {

// checked_arn parses an ARN and checks every part of it (check_arn).
Result<Arn> checked_arn(std::string_view text,
                        std::string_view what,
                        std::string_view service,
                        std::string_view prefix) {
    auto arn = parse_arn(text, what);
    if (!arn) {
        return arn.error();
    }
    if (auto r = check_arn(*arn, text, what, service, prefix); !r) {
        return r.error();
    }
    return arn;
}

}  // namespace

Result<ResolvedEndpoint> resolve_endpoint(const EndpointOptions& options,
                                          const EndpointNames& names,
                                          std::string_view* name_at_fault) {
    const auto blame = [&](std::string_view name, Error error) -> Result<ResolvedEndpoint> {
        if (name_at_fault != nullptr) {
            *name_at_fault = name;
        }
        return error;
    };
    auto trust_anchor_result =
        checked_arn(options.trust_anchor_arn, names.trust_anchor_arn, "rolesanywhere", "trust-anchor/");
    if (!trust_anchor_result) {
        return blame(names.trust_anchor_arn, trust_anchor_result.error());
    }
    auto profile_result = checked_arn(options.profile_arn, names.profile_arn, "rolesanywhere", "profile/");
    if (!profile_result) {
        return blame(names.profile_arn, profile_result.error());
    }
    auto role_result = checked_arn(options.role_arn, names.role_arn, "iam", "role/");
    if (!role_result) {
        return blame(names.role_arn, role_result.error());
    }
    // value() after the checks above cannot throw; it also spares the optimiser's null-dereference guesses.
    const Arn trust_anchor = std::move(trust_anchor_result).value();
    const Arn profile = std::move(profile_result).value();
    const Arn role = std::move(role_result).value();
    const std::string trust_anchor_name(names.trust_anchor_arn);
    if (profile.region != trust_anchor.region) {
        return blame(
            names.trust_anchor_arn,
            make_error(Errc::usage, trust_anchor_name + " and " + std::string(names.profile_arn) +
                                        " are in different regions ('" + trust_anchor.region + "' and '" +
                                        profile.region +
                                        "'); the trust anchor and the profile must be in the same region"));
    }
    if (profile.partition != trust_anchor.partition || role.partition != trust_anchor.partition) {
        return blame(
            names.trust_anchor_arn,
            make_error(Errc::usage, trust_anchor_name + ", " + std::string(names.profile_arn) + " and " +
                                        std::string(names.role_arn) + " must be in the same partition ('" +
                                        trust_anchor.partition + "', '" + profile.partition + "', '" +
                                        role.partition + "')"));
    }

    ResolvedEndpoint resolved;
    resolved.region = options.region.empty() ? trust_anchor.region : options.region;
    if (!valid_region(resolved.region)) {
        return blame(names.region, usage(names.region, options.region, "not a valid region name"));
    }
    // A "-fips" pseudo-region would reach the signing scope verbatim and break the signature (the reference
    // helper's trap, docs/protocol.md §2.3); FIPS is a separate switch here.
    if (is_fips_pseudo_region(resolved.region)) {
        const bool from_flag = !options.region.empty();
        return blame(from_flag ? names.region : names.trust_anchor_arn,
                     usage(from_flag ? names.region : names.trust_anchor_arn, resolved.region,
                           "FIPS pseudo-regions are not signing regions; give the plain region and " +
                               std::string(names.use_fips_endpoint)));
    }
    // A trust anchor and its profile live in one region, and only that region's service knows them: a
    // request signed for another region is refused with 403 after a round trip (the credential scope names
    // the wrong region). That holds for the FIPS and China endpoints, and for an explicit endpoint too — a
    // private (VPC) endpoint or a proxy in front of Roles Anywhere still verifies the signature for the trust
    // anchor's region —, so the region can only repeat the trust anchor's (docs/protocol.md §2.2).
    if (resolved.region != trust_anchor.region) {
        return blame(names.region,
                     usage(names.region, options.region,
                           "the trust anchor and the profile are in '" + trust_anchor.region +
                               "', and Roles Anywhere answers for them only there (leave " +
                               std::string(names.region) + " out, or give '" + trust_anchor.region + "')"));
    }

    if (!options.endpoint.empty()) {
        auto url = parse_url(options.endpoint, names.endpoint);
        if (!url) {
            return blame(names.endpoint, url.error());
        }
        resolved.url = std::move(*url);
        return resolved;
    }

    const Partition* partition = find_partition(trust_anchor.partition);
    if (partition == nullptr) {
        return blame(names.trust_anchor_arn,
                     usage(names.trust_anchor_arn, options.trust_anchor_arn,
                           "unknown partition '" + trust_anchor.partition + "'; give the service URL with " +
                               std::string(names.endpoint)));
    }
    if (options.use_fips && !partition->has_fips) {
        return blame(names.use_fips_endpoint,
                     make_error(Errc::usage, std::string(names.use_fips_endpoint) + ": the partition '" +
                                                 trust_anchor.partition +
                                                 "' has no FIPS endpoint for Roles Anywhere"));
    }
    resolved.url.scheme = "https";
    resolved.url.host = std::string(options.use_fips ? "rolesanywhere-fips." : "rolesanywhere.") +
                        resolved.region + "." + std::string(partition->dns_suffix);
    resolved.url.port = "443";
    resolved.url.explicit_port = false;
    return resolved;
}

}  // namespace rad::signer
