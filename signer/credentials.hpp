#pragma once
// Credentials are temporary AWS credentials as CreateSession issues them, immutable once parsed.

#include <chrono>
#include <string>

#include "common/secret.hpp"

namespace rad::signer {

// Every field is UTF-8 text (keys and tokens are ASCII): CreateSession's answer is read by a JSON parser
// that refuses anything else, and the agent's handover checks it again.
struct Credentials {
    std::string access_key_id;  // logged only through redact_access_key_id()
    Secret secret_access_key;
    Secret session_token;
    std::chrono::system_clock::time_point expiration;  // as issued by the service
};

// redact_access_key_id shows only the last 4 characters: "…WXYZ".
std::string redact_access_key_id(const std::string& access_key_id);

// credential_process_json is the credential_process Version 1 document, one line, no trailing newline:
// {"Version":1,"AccessKeyId":…,"SecretAccessKey":…,"SessionToken":…,"Expiration":"YYYY-MM-DDTHH:MM:SSZ"}
// The returned buffer holds secrets and is wiped on destruction. It is empty when a field is not UTF-8, which
// cannot be written exactly (common/json_writer.hpp).
Secret credential_process_json(const Credentials& credentials);

}  // namespace rad::signer
