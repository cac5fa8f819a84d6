// Fuzz target: parse_create_session_response on arbitrary answers. The input is read as a tiny HTTP
// response: a first line with the status ("201"), header lines ("Retry-After: 3") up to an empty line, then
// the body; an input without that shape is taken as the body of a 200. Checked besides memory safety: a
// success only for 2xx, with every field non-empty and UTF-8 (its credential_process document can be
// written) and an expiration after `now`; every failure classified as create_session.hpp says, with a
// one-line message that does not quote the body.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "signer/create_session.hpp"
#include "signer/credentials.hpp"

namespace {

using namespace std::chrono_literals;
using rad::Errc;

// 2026-11-23T00:34:59Z, as in the unit tests; the seeds' expirations are later.
const std::chrono::system_clock::time_point kNow = std::chrono::system_clock::time_point{} + 1795394099s;

[[noreturn]] void fail(const char* what, int status) {
    std::fprintf(stderr, "invariant broken: %s (status %d)\n", what, status);
    std::abort();
}

rad::signer::HttpResponse read_response(std::string_view input) {
    rad::signer::HttpResponse response;
    response.status = 200;
    const std::size_t first_end = input.find('\n');
    if (first_end == std::string_view::npos || first_end == 0 || first_end > 3) {
        response.body = std::string(input);
        return response;
    }
    int status = 0;
    for (const char c : input.substr(0, first_end)) {
        if (c < '0' || c > '9') {
            response.body = std::string(input);
            return response;
        }
        status = status * 10 + (c - '0');
    }
    response.status = status;
    std::size_t pos = first_end + 1;
    while (pos < input.size()) {
        const std::size_t end = input.find('\n', pos);
        const std::string_view line = input.substr(pos, end == std::string_view::npos ? end : end - pos);
        pos = end == std::string_view::npos ? input.size() : end + 1;
        if (line.empty()) {
            break;
        }
        const std::size_t colon = line.find(':');
        if (colon == std::string_view::npos) {
            continue;
        }
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') {
            value.remove_prefix(1);
        }
        response.headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
    }
    response.body = std::string(input.substr(pos));
    return response;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > rad::signer::kMaxResponseBytes) {
        return 0;  // the transport never hands the parser more
    }
    const auto response = read_response(std::string_view(reinterpret_cast<const char*>(data), size));
    const int status = response.status;
    const bool success_status = status >= 200 && status <= 299;
    auto result = rad::signer::parse_create_session_response(response, kNow);
    if (result) {
        const rad::signer::Credentials& c = *result;
        if (!success_status) {
            fail("credentials out of a non-2xx answer", status);
        }
        if (c.access_key_id.empty() || c.secret_access_key.empty() || c.session_token.empty()) {
            fail("success with an empty access key id, secret or session token", status);
        }
        if (c.expiration <= kNow) {
            fail("success with an expiration that is not in the future", status);
        }
        if (rad::signer::credential_process_json(c).empty()) {
            fail("success with credentials that are not UTF-8 text", status);
        }
        return 0;
    }
    const rad::Error& error = result.error();
    if (error.message.empty() || error.message.size() > 1024) {
        fail("an error message that is empty or unbounded", status);
    }
    for (const char ch : error.message) {
        if (ch == '\n' || ch == '\r' || ch == '\0') {
            fail("an error message that is not one line", status);
        }
    }
    // Only JSON documents are checked: a short plain-text body can coincide with the message's own words
    // ("answer (HTTP 200) is not valid J" did).
    if (response.body.size() >= 32 && response.body.front() == '{' &&
        error.message.find(response.body) != std::string::npos) {
        fail("an error message that quotes the whole body", status);
    }
    if (success_status && error.code != Errc::upstream_malformed) {
        fail("a 2xx failure that is not upstream_malformed", status);
    }
    if (!success_status) {
        const bool throttled = error.code == Errc::upstream_throttled;
        if (status == 429 && !throttled) {
            fail("429 not classified as throttled", status);
        }
        if (status >= 500 && status <= 599 && !throttled && error.code != Errc::upstream_server_error) {
            fail("5xx not classified as a server error", status);
        }
        if ((status < 500 || status > 599) && status != 429 && !throttled &&
            error.code != Errc::upstream_rejected) {
            fail("another status not classified as rejected", status);
        }
        if (!throttled && error.code != Errc::upstream_server_error && error.retry_after.count() != 0) {
            fail("a Retry-After hint on a failure that is not retried", status);
        }
        if (error.retry_after.count() < 0) {
            fail("a negative Retry-After", status);
        }
    }
    return 0;
}
