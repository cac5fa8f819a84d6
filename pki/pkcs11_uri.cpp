#include "pki/pkcs11_uri.hpp"

#include <array>
#include <charconv>

namespace rad::pki {
namespace {

constexpr std::string_view kScheme = "pkcs11:";

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

// percent_decode undoes %XX escapes. Raw spaces and control characters are refused: RFC 7512 has them
// percent-encoded, and a stray space usually means a quoting mistake in a shell or config file.
Result<std::string> percent_decode(std::string_view value, std::string_view origin, std::string_view name) {
    std::string out;
    out.reserve(value.size());
    for (std::size_t i = 0; i < value.size(); ++i) {
        const char c = value[i];
        if (c == '%') {
            const int hi = i + 2 < value.size() ? hex_value(value[i + 1]) : -1;
            const int lo = i + 2 < value.size() ? hex_value(value[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                return make_error(Errc::usage, std::string(origin) + ": pkcs11: URI attribute \"" +
                                                   std::string(name) +
                                                   "\" has a malformed percent escape (expected %XX)");
            }
            out.push_back(static_cast<char>(hi * 16 + lo));
            i += 2;
            continue;
        }
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
            return make_error(Errc::usage, std::string(origin) + ": pkcs11: URI attribute \"" +
                                               std::string(name) +
                                               "\" contains a space or control character; percent-encode it");
        }
        out.push_back(c);
    }
    return out;
}

Result<void> assign_once(std::optional<std::string>& field,
                         std::string value,
                         std::string_view origin,
                         std::string_view name) {
    if (field) {
        return make_error(Errc::usage, std::string(origin) + ": pkcs11: URI attribute \"" +
                                           std::string(name) + "\" is given twice");
    }
    field = std::move(value);
    return {};
}

Result<Pkcs11ObjectType> parse_type(std::string_view value, std::string_view origin) {
    if (value == "cert") {
        return Pkcs11ObjectType::cert;
    }
    if (value == "private") {
        return Pkcs11ObjectType::private_key;
    }
    if (value == "public") {
        return Pkcs11ObjectType::public_key;
    }
    if (value == "secret-key") {
        return Pkcs11ObjectType::secret_key;
    }
    if (value == "data") {
        return Pkcs11ObjectType::data;
    }
    return make_error(Errc::usage, std::string(origin) + ": pkcs11: URI type \"" + std::string(value) +
                                       "\" is not one of cert, private, public, secret-key, data");
}

Result<void> set_path_attribute(Pkcs11Uri& uri,
                                std::string_view name,
                                std::string value,
                                std::string_view origin) {
    const std::string where(origin);
    if (name == "token") {
        return assign_once(uri.token, std::move(value), origin, name);
    }
    if (name == "manufacturer") {
        return assign_once(uri.manufacturer, std::move(value), origin, name);
    }
    if (name == "serial") {
        return assign_once(uri.serial, std::move(value), origin, name);
    }
    if (name == "model") {
        return assign_once(uri.model, std::move(value), origin, name);
    }
    if (name == "library-manufacturer") {
        return assign_once(uri.library_manufacturer, std::move(value), origin, name);
    }
    if (name == "library-description") {
        return assign_once(uri.library_description, std::move(value), origin, name);
    }
    if (name == "library-version") {
        return assign_once(uri.library_version, std::move(value), origin, name);
    }
    if (name == "slot-manufacturer") {
        return assign_once(uri.slot_manufacturer, std::move(value), origin, name);
    }
    if (name == "slot-description") {
        return assign_once(uri.slot_description, std::move(value), origin, name);
    }
    if (name == "object") {
        return assign_once(uri.object, std::move(value), origin, name);
    }
    if (name == "id") {
        return assign_once(uri.id, std::move(value), origin, name);
    }
    if (name == "slot-id") {
        if (uri.slot_id) {
            return make_error(Errc::usage, where + ": pkcs11: URI attribute \"slot-id\" is given twice");
        }
        std::uint64_t number = 0;
        const auto* end = value.data() + value.size();
        const auto [ptr, ec] = std::from_chars(value.data(), end, number);
        if (value.empty() || ec != std::errc{} || ptr != end) {
            return make_error(Errc::usage,
                              where + ": pkcs11: URI slot-id \"" + value + "\" is not a decimal number");
        }
        uri.slot_id = number;
        return {};
    }
    if (name == "type") {
        if (uri.type) {
            return make_error(Errc::usage, where + ": pkcs11: URI attribute \"type\" is given twice");
        }
        auto type = parse_type(value, origin);
        if (!type) {
            return type.error();
        }
        uri.type = *type;
        return {};
    }
    if (name == "pin-value" || name == "pin-source" || name == "module-name" || name == "module-path") {
        return make_error(Errc::usage, where + ": pkcs11: URI attribute \"" + std::string(name) +
                                           "\" belongs in the query part (after \"?\")");
    }
    return make_error(Errc::usage,
                      where + ": pkcs11: URI attribute \"" + std::string(name) + "\" is unknown");
}

Result<void> set_query_attribute(Pkcs11Uri& uri,
                                 std::string_view name,
                                 std::string value,
                                 std::string_view origin) {
    const std::string where(origin);
    if (name == "pin-value") {
        if (uri.pin_value) {
            wipe_string(value);
            return make_error(Errc::usage, where + ": pkcs11: URI attribute \"pin-value\" is given twice");
        }
        uri.pin_value.emplace(std::move(value));
        return {};
    }
    if (name == "pin-source") {
        return assign_once(uri.pin_source, std::move(value), origin, name);
    }
    if (name == "module-name") {
        return assign_once(uri.module_name, std::move(value), origin, name);
    }
    if (name == "module-path") {
        return assign_once(uri.module_path, std::move(value), origin, name);
    }
    static constexpr std::array<std::string_view, 13> kPathNames = {"token",
                                                                    "manufacturer",
                                                                    "serial",
                                                                    "model",
                                                                    "library-manufacturer",
                                                                    "library-version",
                                                                    "library-description",
                                                                    "slot-id",
                                                                    "object",
                                                                    "id",
                                                                    "type",
                                                                    "slot-manufacturer",
                                                                    "slot-description"};
    for (const std::string_view path_name : kPathNames) {
        if (name == path_name) {
            return make_error(Errc::usage, where + ": pkcs11: URI attribute \"" + std::string(name) +
                                               "\" belongs in the path part (before \"?\")");
        }
    }
    return make_error(Errc::usage,
                      where + ": pkcs11: URI query attribute \"" + std::string(name) + "\" is unknown");
}

// parse_part splits one part (path or query) at `separator` and hands each name=value to `set`.
template <class Setter>
Result<void> parse_part(std::string_view part, char separator, std::string_view origin, Setter set) {
    while (!part.empty()) {
        const std::size_t end = part.find(separator);
        const std::string_view attribute = part.substr(0, end);
        part = end == std::string_view::npos ? std::string_view{} : part.substr(end + 1);
        if (attribute.empty()) {
            continue;  // "pkcs11:token=a;" and "?&pin-source=..." are harmless
        }
        const std::size_t eq = attribute.find('=');
        if (eq == std::string_view::npos || eq == 0) {
            return make_error(Errc::usage, std::string(origin) + ": pkcs11: URI attribute \"" +
                                               std::string(attribute.substr(0, eq)) +
                                               "\" is not of the form name=value");
        }
        const std::string_view name = attribute.substr(0, eq);
        auto value = percent_decode(attribute.substr(eq + 1), origin, name);
        if (!value) {
            return value.error();
        }
        if (auto r = set(name, std::move(*value)); !r) {
            return r.error();
        }
    }
    return {};
}

bool is_unreserved(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

std::string percent_encode(std::string_view value, bool everything) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (const char c : value) {
        if (!everything && is_unreserved(c)) {
            out.push_back(c);
            continue;
        }
        const auto byte = static_cast<unsigned char>(c);
        out.push_back('%');
        out.push_back(kHex[byte >> 4]);
        out.push_back(kHex[byte & 0x0f]);
    }
    return out;
}

std::string_view type_name(Pkcs11ObjectType type) noexcept {
    switch (type) {
        case Pkcs11ObjectType::cert:
            return "cert";
        case Pkcs11ObjectType::private_key:
            return "private";
        case Pkcs11ObjectType::public_key:
            return "public";
        case Pkcs11ObjectType::secret_key:
            return "secret-key";
        case Pkcs11ObjectType::data:
            return "data";
    }
    return "data";
}

}  // namespace

Pkcs11Uri Pkcs11Uri::clone() const {
    Pkcs11Uri copy;
    copy.token = token;
    copy.manufacturer = manufacturer;
    copy.serial = serial;
    copy.model = model;
    copy.library_manufacturer = library_manufacturer;
    copy.library_description = library_description;
    copy.library_version = library_version;
    copy.slot_manufacturer = slot_manufacturer;
    copy.slot_description = slot_description;
    copy.slot_id = slot_id;
    copy.object = object;
    copy.id = id;
    copy.type = type;
    if (pin_value) {
        copy.pin_value.emplace(pin_value->clone());
    }
    copy.pin_source = pin_source;
    copy.module_name = module_name;
    copy.module_path = module_path;
    return copy;
}

bool is_pkcs11_uri(std::string_view text) noexcept {
    if (text.size() < kScheme.size()) {
        return false;
    }
    for (std::size_t i = 0; i < kScheme.size(); ++i) {
        const char c = text[i];
        const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
        if (lower != kScheme[i]) {
            return false;
        }
    }
    return true;
}

Result<Pkcs11Uri> parse_pkcs11_uri(std::string_view text, std::string_view origin) {
    if (!is_pkcs11_uri(text)) {
        return make_error(Errc::usage, std::string(origin) + ": not a pkcs11: URI");
    }
    const std::string_view rest = text.substr(kScheme.size());
    if (rest.find('#') != std::string_view::npos) {
        return make_error(Errc::usage, std::string(origin) + ": a pkcs11: URI has no fragment (\"#\")");
    }
    const std::size_t question = rest.find('?');
    const std::string_view path = rest.substr(0, question);
    const std::string_view query =
        question == std::string_view::npos ? std::string_view{} : rest.substr(question + 1);
    Pkcs11Uri uri;
    if (auto r = parse_part(path, ';', origin,
                            [&](std::string_view name, std::string value) {
                                return set_path_attribute(uri, name, std::move(value), origin);
                            });
        !r) {
        return r.error();
    }
    if (auto r = parse_part(query, '&', origin,
                            [&](std::string_view name, std::string value) {
                                return set_query_attribute(uri, name, std::move(value), origin);
                            });
        !r) {
        return r.error();
    }
    if (uri.pin_value && uri.pin_source) {
        return make_error(Errc::usage,
                          std::string(origin) + ": pkcs11: URI has both pin-value and pin-source; keep one");
    }
    return uri;
}

std::string format_pkcs11_uri(const Pkcs11Uri& uri) {
    std::string out(kScheme);
    bool first = true;
    auto add = [&](std::string_view name, const std::optional<std::string>& value, bool everything = false) {
        if (!value) {
            return;
        }
        if (!first) {
            out.push_back(';');
        }
        first = false;
        out.append(name);
        out.push_back('=');
        out.append(percent_encode(*value, everything));
    };
    add("model", uri.model);
    add("manufacturer", uri.manufacturer);
    add("serial", uri.serial);
    add("token", uri.token);
    add("library-manufacturer", uri.library_manufacturer);
    add("library-description", uri.library_description);
    add("library-version", uri.library_version);
    add("slot-manufacturer", uri.slot_manufacturer);
    add("slot-description", uri.slot_description);
    if (uri.slot_id) {
        add("slot-id", std::to_string(*uri.slot_id));
    }
    add("id", uri.id, /*everything=*/true);
    add("object", uri.object);
    if (uri.type) {
        add("type", std::string(type_name(*uri.type)));
    }
    return out;
}

}  // namespace rad::pki
