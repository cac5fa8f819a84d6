#include "signer/create_session.hpp"

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "common/secret.hpp"
#include "common/time_format.hpp"

namespace rad::signer {
namespace {

using nlohmann::json;

// wipe_json clears every string of a parsed document before it is freed: the success answer holds the secret
// access key and the session token. Iterative, because a hostile answer may nest deeply.
void wipe_json(json& root) noexcept {
    std::vector<json*> pending{&root};
    while (!pending.empty()) {
        json* node = pending.back();
        pending.pop_back();
        if (node->is_string()) {
            wipe_string(node->get_ref<std::string&>());
        } else if (node->is_object()) {
            for (auto it = node->begin(); it != node->end(); ++it) {
                // Keys are field names chosen by the service, not secrets; only values are wiped.
                pending.push_back(&it.value());
            }
        } else if (node->is_array()) {
            for (auto& element : *node) {
                pending.push_back(&element);
            }
        }
    }
}

// WipedJson owns a parsed document and wipes it however the parse function returns.
struct WipedJson {
    json doc;
    WipedJson() = default;
    WipedJson(const WipedJson&) = delete;
    WipedJson& operator=(const WipedJson&) = delete;
    ~WipedJson() { wipe_json(doc); }
};

// clean_text keeps a service-provided string safe for a one-line log message: printable ASCII only, bounded.
std::string clean_text(std::string_view text, std::size_t max_size) {
    std::string out;
    for (const char ch : text) {
        if (out.size() >= max_size) {
            out += "...";
            break;
        }
        const auto c = static_cast<unsigned char>(ch);
        out += (c < 0x20 || c >= 0x7F) ? '?' : ch;
    }
    return out;
}

std::string trim(std::string_view s) {
    const auto space = [](char c) { return c == ' ' || c == '\t'; };
    while (!s.empty() && space(s.front())) {
        s.remove_prefix(1);
    }
    while (!s.empty() && space(s.back())) {
        s.remove_suffix(1);
    }
    return std::string(s);
}

const std::string* string_member(const json& object, const char* name) {
    if (!object.is_object()) {
        return nullptr;
    }
    const auto it = object.find(name);
    if (it == object.end() || !it->is_string()) {
        return nullptr;
    }
    return &it->get_ref<const std::string&>();
}

// retry_after_seconds reads Retry-After as delta-seconds. The HTTP-date form and anything malformed are
// ignored (zero): a wrong hint must not stall the caller, the usual backoff applies instead.
std::chrono::seconds retry_after_seconds(const HttpResponse& response) {
    const std::string* header = response.header("Retry-After");
    if (header == nullptr) {
        return std::chrono::seconds{0};
    }
    const std::string value = trim(*header);
    if (value.empty() || value.size() > 9 ||
        !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return std::chrono::seconds{0};
    }
    return std::chrono::seconds{std::stol(value)};
}

// parse_http_date reads an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", RFC 9110 §5.6.7), the only form a
// service sends in Date. Anything else is nullopt: the header is a hint, never a reason to fail.
std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view text) {
    static constexpr std::string_view kMonths = "JanFebMarAprMayJunJulAugSepOctNovDec";
    if (text.size() != 29 || text[3] != ',' || text[4] != ' ' || text[7] != ' ' || text[11] != ' ' ||
        text[16] != ' ' || text[19] != ':' || text[22] != ':' || text.substr(25) != " GMT") {
        return std::nullopt;
    }
    const auto number = [&](std::size_t at, std::size_t width) -> int {
        int value = 0;
        for (std::size_t i = at; i < at + width; ++i) {
            if (text[i] < '0' || text[i] > '9') {
                return -1;
            }
            value = value * 10 + (text[i] - '0');
        }
        return value;
    };
    const std::size_t month_index = kMonths.find(text.substr(8, 3));
    const int day = number(5, 2), year = number(12, 4), hour = number(17, 2), minute = number(20, 2),
              second = number(23, 2);
    if (month_index == std::string_view::npos || month_index % 3 != 0 || day < 1 || year < 0 || hour < 0 ||
        hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 60) {
        return std::nullopt;
    }
    const std::chrono::year_month_day date{std::chrono::year{year},
                                           std::chrono::month{static_cast<unsigned>(month_index / 3 + 1)},
                                           std::chrono::day{static_cast<unsigned>(day)}};
    if (!date.ok()) {
        return std::nullopt;
    }
    return std::chrono::sys_days{date} + std::chrono::hours{hour} + std::chrono::minutes{minute} +
           std::chrono::seconds{second};
}

// clock_skew_note says how far the local clock is from the service's when a rejection looks like a SigV4
// skew refusal ("Signature expired", "Signature not yet current") or the answer's Date header is more than
// kClockSkewSeconds away: a wrong clock is the usual cause, and nothing in a bare 403 says so.
std::string clock_skew_note(const HttpResponse& response,
                            std::string_view message,
                            std::chrono::system_clock::time_point now) {
    std::optional<long long> skew;
    if (const std::string* date = response.header("Date")) {
        if (const auto server = parse_http_date(trim(*date))) {
            skew = std::chrono::duration_cast<std::chrono::seconds>(now - *server).count();
        }
    }
    const bool says_skew = message.find("Signature expired") != std::string_view::npos ||
                           message.find("Signature not yet current") != std::string_view::npos;
    if (skew && (*skew > kClockSkewSeconds || *skew < -kClockSkewSeconds)) {
        return " (clock skew: the local clock is " + std::to_string(*skew > 0 ? *skew : -*skew) + " s " +
               (*skew > 0 ? "ahead of" : "behind") + " the service's Date)";
    }
    if (says_skew) {
        return " (clock skew? check that the local clock is right)";
    }
    return {};
}

Error malformed(int status, std::string_view problem) {
    return make_error(Errc::upstream_malformed,
                      "CreateSession answer (HTTP " + std::to_string(status) + ") " + std::string(problem));
}

Result<Credentials> parse_success(const HttpResponse& response, std::chrono::system_clock::time_point now) {
    WipedJson parsed;
    parsed.doc = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
    if (parsed.doc.is_discarded()) {
        return malformed(response.status, "is not valid JSON");
    }
    if (!parsed.doc.is_object()) {
        return malformed(response.status, "is not a JSON object");
    }
    const auto set = parsed.doc.find("credentialSet");
    if (set == parsed.doc.end() || !set->is_array() || set->empty()) {
        return malformed(response.status, "has no credentialSet[0]: unable to obtain temporary credentials");
    }
    json& first = (*set)[0];
    if (!first.is_object()) {
        return malformed(response.status, "credentialSet[0] is not an object");
    }
    const auto creds = first.find("credentials");
    if (creds == first.end() || !creds->is_object()) {
        return malformed(response.status, "credentialSet[0].credentials is missing or not an object");
    }
    for (const char* field : {"accessKeyId", "secretAccessKey", "sessionToken", "expiration"}) {
        const std::string* value = string_member(*creds, field);
        if (value == nullptr || value->empty()) {
            return malformed(response.status, std::string("credentialSet[0].credentials.") + field +
                                                  " is missing, empty or not a string");
        }
    }
    const std::string& expiration_text = (*creds)["expiration"].get_ref<const std::string&>();
    const auto expiration = parse_rfc3339(expiration_text);
    if (!expiration) {
        return malformed(response.status, "credentials.expiration '" + clean_text(expiration_text, 64) +
                                              "' is not an RFC 3339 timestamp");
    }
    if (*expiration <= now) {
        return malformed(response.status, "credentials.expiration " + format_iso8601(*expiration) +
                                              " is not in the future (is the local clock right?)");
    }
    // The service never issues more than kMaxSessionSeconds; a later expiration (beyond the skew the
    // service itself tolerates) is a broken or forged answer, and serving it would outlive the real session.
    if (*expiration > now + std::chrono::seconds(kMaxSessionSeconds + kClockSkewSeconds)) {
        return malformed(response.status, "credentials.expiration " + format_iso8601(*expiration) +
                                              " is more than 12 hours away (is the local clock right?)");
    }

    Credentials out;
    out.access_key_id = (*creds)["accessKeyId"].get_ref<const std::string&>();
    // Secret(std::string&&) takes the parsed buffers over; what is left in the document is wiped by
    // WipedJson.
    out.secret_access_key = Secret(std::move((*creds)["secretAccessKey"].get_ref<std::string&>()));
    out.session_token = Secret(std::move((*creds)["sessionToken"].get_ref<std::string&>()));
    out.expiration = *expiration;
    return out;
}

// error_code_of follows the smithy awsJson/restJson rules: X-Amzn-ErrorType (cut at ':'), else the body's
// __type (cut after the last '#' namespace separator) or code.
std::string error_code_of(const HttpResponse& response, const json& body) {
    std::string code;
    if (const std::string* header = response.header("X-Amzn-ErrorType")) {
        code = header->substr(0, header->find(':'));
    } else if (const std::string* type = string_member(body, "__type")) {
        const std::size_t hash = type->rfind('#');
        code = hash == std::string::npos ? *type : type->substr(hash + 1);
    } else if (const std::string* c = string_member(body, "code")) {
        code = *c;
    }
    return clean_text(trim(code), 100);
}

std::string error_message_of(const json& body) {
    const std::string* message = string_member(body, "message");
    if (message == nullptr) {
        message = string_member(body, "Message");
    }
    return message == nullptr ? std::string() : clean_text(trim(*message), 300);
}

Error classify_failure(const HttpResponse& response, std::chrono::system_clock::time_point now) {
    const json body = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
    const std::string code = error_code_of(response, body);
    const std::string message = error_message_of(body);

    Errc errc = Errc::upstream_rejected;
    if (response.status == 429 || code.find("Throttl") != std::string::npos) {
        errc = Errc::upstream_throttled;
    } else if (response.status >= 500 && response.status <= 599) {
        errc = Errc::upstream_server_error;
    }
    std::string text = "CreateSession failed: HTTP " + std::to_string(response.status);
    if (!code.empty()) {
        text += " " + code;
    }
    if (!message.empty()) {
        text += ": " + message;
    }
    if (errc == Errc::upstream_rejected) {
        text += clock_skew_note(response, message, now);
    }
    Error error = make_error(errc, std::move(text));
    if (errc == Errc::upstream_throttled || errc == Errc::upstream_server_error) {
        error.retry_after = retry_after_seconds(response);
    }
    return error;
}

}  // namespace

Result<void> check_session_duration(int seconds) {
    if (seconds < kMinSessionSeconds || seconds > kMaxSessionSeconds) {
        return make_error(Errc::usage, "--session-duration " + std::to_string(seconds) + ": must be from " +
                                           std::to_string(kMinSessionSeconds) + " to " +
                                           std::to_string(kMaxSessionSeconds) + " seconds");
    }
    return {};
}

HttpRequest make_create_session_request(const CreateSessionParams& params, const Url& url) {
    HttpRequest request;
    request.method = "POST";
    request.host = url.host_header();
    request.path = "/sessions";
    request.query = {{"profileArn", params.profile_arn},
                     {"roleArn", params.role_arn},
                     {"trustAnchorArn", params.trust_anchor_arn}};
    request.set_header("Host", request.host);
    request.set_header("Content-Type", "application/json");
    // The smithy serializer writes the members in this fixed order; the body is hashed into the signature, so
    // it is built by hand rather than from a JSON object whose key order is the library's choice.
    request.body = "{\"durationSeconds\":" + std::to_string(params.duration_seconds);
    if (!params.role_session_name.empty()) {
        // dump() escapes the name; invalid UTF-8 is replaced rather than thrown on (the service refuses it).
        request.body += ",\"roleSessionName\":" +
                        json(params.role_session_name).dump(-1, ' ', false, json::error_handler_t::replace);
    }
    request.body += "}";
    return request;
}

Result<Credentials> parse_create_session_response(const HttpResponse& response,
                                                  std::chrono::system_clock::time_point now) {
    if (response.status >= 200 && response.status <= 299) {
        return parse_success(response, now);
    }
    return classify_failure(response, now);
}

}  // namespace rad::signer
