#pragma once
// What the HTTP surfaces (IMDS and the container endpoint) hand out: the credentials servable at this
// instant, and the JSON documents they and their errors are written as.

#include <chrono>
#include <initializer_list>
#include <optional>
#include <string_view>
#include <utility>

#include "common/error.hpp"
#include "common/secret.hpp"
#include "signer/credentials.hpp"

namespace rad::surfaces {

// ServedCredentials is what a surface may hand out at this instant, as the agent's engine decided it
// (engine::ProfileEngine::servable(), the one place that decides): the credentials, or the reason there are
// none. The surfaces do not decide again.
struct ServedCredentials {
    const signer::Credentials* credentials = nullptr;  // null: see `error`
    Error error;
    std::chrono::system_clock::time_point last_updated;  // when these credentials were received (wall clock)
};

// credentials_or_reason returns the credentials to hand out, or null with the reason in `why` (never an
// empty reason).
const signer::Credentials* credentials_or_reason(const ServedCredentials& served, Error& why);

using JsonField = std::pair<std::string_view, std::string_view>;

// json_object renders string fields in order, compact or in IMDS's pretty style; nullopt when a value is not
// UTF-8 and so cannot be written exactly.
std::optional<Secret> json_object(std::initializer_list<JsonField> fields, bool pretty);

// error_json is {"Code":…,"Message":…}, with what is not UTF-8 replaced by U+FFFD.
Secret error_json(std::string_view code, std::string_view message);

// kNotUtf8 is the error of credentials that cannot be written exactly (signer::Credentials says they always
// can).
inline constexpr std::string_view kNotUtf8 = "the cached credentials are not UTF-8 text";

// constant_time_equals compares two byte strings without an early exit on the first difference.
bool constant_time_equals(std::string_view a, std::string_view b) noexcept;

}  // namespace rad::surfaces
