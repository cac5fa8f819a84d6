#pragma once
// Pkcs11Uri is a parsed RFC 7512 "pkcs11:" URI: which token (slot, token and library attributes) and which
// object (label, id, class) it names, and where the PIN comes from. Parsing is pure: no module is loaded.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "common/secret.hpp"

namespace rad::pki {

// Pkcs11ObjectType is the URI's "type" attribute (CKA_CLASS). Only cert and private are used by the agent;
// the others are parsed so that a URI copied from p11tool is understood and refused with a clear message.
enum class Pkcs11ObjectType { cert, private_key, public_key, secret_key, data };

struct Pkcs11Uri {
    // Path attributes. Absent means "any". Text values are percent-decoded UTF-8, compared with the token's
    // space-padded fields after trimming.
    std::optional<std::string> token;         // CK_TOKEN_INFO.label
    std::optional<std::string> manufacturer;  // CK_TOKEN_INFO.manufacturerID
    std::optional<std::string> serial;        // CK_TOKEN_INFO.serialNumber
    std::optional<std::string> model;         // CK_TOKEN_INFO.model
    std::optional<std::string> library_manufacturer;
    std::optional<std::string> library_description;
    std::optional<std::string> library_version;  // "M" or "M.m", kept as written
    std::optional<std::string> slot_manufacturer;
    std::optional<std::string> slot_description;
    std::optional<std::uint64_t> slot_id;  // decimal
    std::optional<std::string> object;     // CKA_LABEL
    std::optional<std::string> id;         // CKA_ID, raw bytes
    std::optional<Pkcs11ObjectType> type;  // CKA_CLASS
    // Query attributes.
    std::optional<Secret> pin_value;        // the PIN itself (argv shows it: pin-source is preferred)
    std::optional<std::string> pin_source;  // "file:/path" or an absolute path
    std::optional<std::string> module_name;
    std::optional<std::string> module_path;

    Pkcs11Uri() = default;
    Pkcs11Uri(Pkcs11Uri&&) = default;
    Pkcs11Uri& operator=(Pkcs11Uri&&) = default;
    // clone copies every attribute, the PIN included (Secret is not implicitly copyable).
    Pkcs11Uri clone() const;
};

// is_pkcs11_uri is true when `text` starts with the "pkcs11:" scheme (case-insensitive, as RFC 3986 says).
bool is_pkcs11_uri(std::string_view text) noexcept;

// parse_pkcs11_uri parses `text`. Errors are usage errors naming `origin` (a flag or config key) and the
// attribute: not a pkcs11: URI, an unknown or repeated attribute, a malformed percent escape, a path
// attribute in the query or the other way round, a slot-id that is not a decimal number, an unknown type.
// The PIN never appears in a message.
[[nodiscard]] Result<Pkcs11Uri> parse_pkcs11_uri(std::string_view text, std::string_view origin);

// format_pkcs11_uri writes the path attributes of `uri` back as a URI (attributes in RFC 7512 order, values
// percent-encoded where needed, id fully percent-encoded); the PIN and module attributes are left out.
std::string format_pkcs11_uri(const Pkcs11Uri& uri);

}  // namespace rad::pki
