#include "pki/pkcs11.hpp"

#include <dlfcn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <p11-kit-1/p11-kit/pkcs11.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>

#include "pki/ecdsa.hpp"
#include "pki/ossl.hpp"

namespace rad::pki {
namespace {

using Bytes = std::vector<std::uint8_t>;

std::string rv_text(CK_RV rv) {
    switch (rv) {
        case CKR_OK:
            return "CKR_OK";
        case CKR_GENERAL_ERROR:
            return "CKR_GENERAL_ERROR";
        case CKR_ARGUMENTS_BAD:
            return "CKR_ARGUMENTS_BAD";
        case CKR_DEVICE_ERROR:
            return "CKR_DEVICE_ERROR";
        case CKR_DEVICE_REMOVED:
            return "CKR_DEVICE_REMOVED";
        case CKR_KEY_HANDLE_INVALID:
            return "CKR_KEY_HANDLE_INVALID";
        case CKR_KEY_TYPE_INCONSISTENT:
            return "CKR_KEY_TYPE_INCONSISTENT";
        case CKR_KEY_FUNCTION_NOT_PERMITTED:
            return "CKR_KEY_FUNCTION_NOT_PERMITTED";
        case CKR_MECHANISM_INVALID:
            return "CKR_MECHANISM_INVALID";
        case CKR_OBJECT_HANDLE_INVALID:
            return "CKR_OBJECT_HANDLE_INVALID";
        case CKR_OPERATION_ACTIVE:
            return "CKR_OPERATION_ACTIVE";
        case CKR_PIN_INCORRECT:
            return "CKR_PIN_INCORRECT";
        case CKR_PIN_LOCKED:
            return "CKR_PIN_LOCKED";
        case CKR_PIN_EXPIRED:
            return "CKR_PIN_EXPIRED";
        case CKR_PIN_LEN_RANGE:
            return "CKR_PIN_LEN_RANGE";
        case CKR_SESSION_CLOSED:
            return "CKR_SESSION_CLOSED";
        case CKR_SESSION_HANDLE_INVALID:
            return "CKR_SESSION_HANDLE_INVALID";
        case CKR_SLOT_ID_INVALID:
            return "CKR_SLOT_ID_INVALID";
        case CKR_TOKEN_NOT_PRESENT:
            return "CKR_TOKEN_NOT_PRESENT";
        case CKR_TOKEN_NOT_RECOGNIZED:
            return "CKR_TOKEN_NOT_RECOGNIZED";
        case CKR_USER_NOT_LOGGED_IN:
            return "CKR_USER_NOT_LOGGED_IN";
        case CKR_USER_PIN_NOT_INITIALIZED:
            return "CKR_USER_PIN_NOT_INITIALIZED";
        case CKR_CRYPTOKI_NOT_INITIALIZED:
            return "CKR_CRYPTOKI_NOT_INITIALIZED";
        default: {
            std::array<char, 24> text{};
            std::snprintf(text.data(), text.size(), "CKR 0x%08lx", static_cast<unsigned long>(rv));
            return text.data();
        }
    }
}

// is_recoverable: the session, the login or the token went away (closed, logged out, removed, re-initialised
// under our feet). A fresh session, login and object search may succeed; anything else will not.
bool is_recoverable(CK_RV rv) noexcept {
    switch (rv) {
        case CKR_SESSION_HANDLE_INVALID:
        case CKR_SESSION_CLOSED:
        case CKR_USER_NOT_LOGGED_IN:
        case CKR_DEVICE_REMOVED:
        case CKR_DEVICE_ERROR:
        case CKR_TOKEN_NOT_PRESENT:
        case CKR_TOKEN_NOT_RECOGNIZED:
        case CKR_SLOT_ID_INVALID:
        case CKR_KEY_HANDLE_INVALID:
        case CKR_OBJECT_HANDLE_INVALID:
        case CKR_CRYPTOKI_NOT_INITIALIZED:
        case CKR_GENERAL_ERROR:
            return true;
        default:
            return false;
    }
}

// trimmed turns a fixed-size, space-padded CK_UTF8CHAR field into a string.
template <std::size_t N>
std::string trimmed(const CK_UTF8CHAR (&field)[N]) {
    std::size_t length = N;
    while (length > 0 && (field[length - 1] == ' ' || field[length - 1] == '\0')) {
        --length;
    }
    return std::string(reinterpret_cast<const char*>(field), length);
}

// Module is one loaded PKCS#11 library, initialised once per process and shared (through the registry) by
// every key and search that names the same path: a second C_Initialize would fail, and a C_Finalize by
// one user would pull the sessions from under the others.
class Module {
public:
    static Result<std::shared_ptr<Module>> open(const std::string& path) {
        static std::mutex registry_mutex;
        static std::map<std::string, std::weak_ptr<Module>> registry;
        const std::lock_guard lock(registry_mutex);
        if (auto existing = registry[path].lock()) {
            return existing;
        }
        // RTLD_NODELETE: C_Finalize ends our use, but the code stays mapped until exit, as p11-kit keeps its
        // modules. Modules are not written to be unloaded: SoftHSM2 leaves allocations behind at C_Finalize
        // that unloading turns into leaks (LeakSanitizer, integration suite under ASan), and a module thread
        // or atexit handler that outlives dlclose would jump into unmapped code.
        void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (handle == nullptr) {
            const char* reason = ::dlerror();
            return make_error(Errc::input_missing, "PKCS#11 module " + path + " cannot be loaded: " +
                                                       (reason != nullptr ? reason : "unknown error"));
        }
        auto module = std::shared_ptr<Module>(new Module(path, handle));
        auto get_list =
            reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle, "C_GetFunctionList"));  // NOLINT
        if (get_list == nullptr || get_list(&module->fn_) != CKR_OK || module->fn_ == nullptr) {
            return make_error(Errc::input_invalid,
                              "PKCS#11 module " + path + ": C_GetFunctionList is missing or failed");
        }
        if (auto r = module->initialize(); !r) {
            return r.error();
        }
        registry[path] = module;
        return module;
    }

    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;

    ~Module() {
        if (initialized_by_us_ && fn_ != nullptr) {
            fn_->C_Finalize(nullptr);
        }
        ::dlclose(handle_);
    }

    CK_FUNCTION_LIST* fn() const noexcept { return fn_; }
    const std::string& path() const noexcept { return path_; }

    std::uint64_t generation() const {
        const std::lock_guard lock(mutex_);
        return generation_;
    }

    // reinitialize runs C_Finalize and C_Initialize, the only way to make some modules (SoftHSM among them)
    // see a token that was deleted and created again. Every session of the module is lost; keys notice the
    // new generation and open a new one. When another key already did it since `seen`, nothing is done.
    Result<void> reinitialize(std::uint64_t seen) {
        const std::lock_guard lock(mutex_);
        if (generation_ != seen) {
            return {};
        }
        if (initialized_by_us_) {
            fn_->C_Finalize(nullptr);
            initialized_by_us_ = false;
        }
        ++generation_;
        return initialize_locked();
    }

private:
    Module(std::string path, void* handle) : path_(std::move(path)), handle_(handle) {}

    Result<void> initialize() {
        const std::lock_guard lock(mutex_);
        return initialize_locked();
    }

    Result<void> initialize_locked() {
        CK_C_INITIALIZE_ARGS args{};
        args.flags = CKF_OS_LOCKING_OK;  // the agent signs on its key pool, the CLI on its own thread
        const CK_RV rv = fn_->C_Initialize(&args);
        if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
            return {};  // someone else in this process owns the initialisation (and the finalisation)
        }
        if (rv != CKR_OK) {
            return make_error(Errc::input_invalid,
                              "PKCS#11 module " + path_ + ": C_Initialize failed (" + rv_text(rv) + ")");
        }
        initialized_by_us_ = true;
        return {};
    }

    std::string path_;
    void* handle_;
    CK_FUNCTION_LIST* fn_ = nullptr;
    mutable std::mutex mutex_;
    std::uint64_t generation_ = 0;
    bool initialized_by_us_ = false;
};

// Session owns one PKCS#11 session handle.
class Session {
public:
    Session() = default;
    Session(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE handle) : fn_(fn), handle_(handle) {}
    Session(Session&& other) noexcept : fn_(other.fn_), handle_(other.handle_) { other.fn_ = nullptr; }
    Session& operator=(Session&& other) noexcept {
        if (this != &other) {
            close();
            fn_ = other.fn_;
            handle_ = other.handle_;
            other.fn_ = nullptr;
        }
        return *this;
    }
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
    ~Session() { close(); }

    explicit operator bool() const noexcept { return fn_ != nullptr; }
    CK_SESSION_HANDLE handle() const noexcept { return handle_; }
    // abandon forgets the handle without closing it (the module was finalised: handles are gone already).
    void abandon() noexcept { fn_ = nullptr; }
    void close() noexcept {
        if (fn_ != nullptr) {
            fn_->C_CloseSession(handle_);
            fn_ = nullptr;
        }
    }

private:
    CK_FUNCTION_LIST* fn_ = nullptr;
    CK_SESSION_HANDLE handle_ = CK_INVALID_HANDLE;
};

std::string module_path(const Pkcs11Uri& uri, const Pkcs11Options& options) {
    if (uri.module_path) {
        return *uri.module_path;
    }
    return options.module.empty() ? std::string(kDefaultPkcs11Module) : options.module;
}

// where names a URI in messages: its path attributes only, so a pin-value never reaches a log.
std::string where(const Pkcs11Uri& uri) {
    return format_pkcs11_uri(uri);
}

Result<std::optional<Secret>> resolve_pin(const Pkcs11Uri& uri, const Pkcs11Options& options) {
    if (uri.pin_value) {
        return std::optional<Secret>(uri.pin_value->clone());
    }
    if (uri.pin_source) {
        std::string_view source = *uri.pin_source;
        if (source.starts_with("file:")) {
            source.remove_prefix(5);
            // file:///path and file:/path are both common spellings of a local file URI.
            if (source.starts_with("//")) {
                source.remove_prefix(2);
            }
        }
        if (!source.starts_with('/')) {
            return make_error(Errc::usage, where(uri) + ": pin-source must be file:/absolute/path (got \"" +
                                               *uri.pin_source + "\")");
        }
        auto pin = read_passphrase_file(std::string(source), options.pin_file_policy);
        if (!pin) {
            return pin.error();
        }
        return std::optional<Secret>(std::move(*pin));
    }
    if (options.pin) {
        return std::optional<Secret>(options.pin->clone());
    }
    return std::optional<Secret>{};
}

bool matches_field(const std::optional<std::string>& wanted, const std::string& actual) {
    return !wanted || *wanted == actual;
}

struct Slot {
    CK_SLOT_ID id = 0;
    CK_TOKEN_INFO token{};
    CK_SLOT_INFO slot{};
};

Result<std::vector<Slot>> matching_slots(const Module& module, const Pkcs11Uri& uri) {
    CK_FUNCTION_LIST* fn = module.fn();
    CK_INFO info{};
    if (const CK_RV rv = fn->C_GetInfo(&info); rv != CKR_OK) {
        return make_error(Errc::crypto_failure,
                          "PKCS#11 module " + module.path() + ": C_GetInfo failed (" + rv_text(rv) + ")");
    }
    const std::string version =
        std::to_string(info.libraryVersion.major) + "." + std::to_string(info.libraryVersion.minor);
    const bool library_ok = matches_field(uri.library_manufacturer, trimmed(info.manufacturerID)) &&
                            matches_field(uri.library_description, trimmed(info.libraryDescription)) &&
                            (!uri.library_version || *uri.library_version == version ||
                             *uri.library_version == std::to_string(info.libraryVersion.major));
    if (!library_ok) {
        return std::vector<Slot>{};
    }
    CK_ULONG count = 0;
    if (const CK_RV rv = fn->C_GetSlotList(CK_TRUE, nullptr, &count); rv != CKR_OK) {
        return make_error(Errc::crypto_failure,
                          "PKCS#11 module " + module.path() + ": C_GetSlotList failed (" + rv_text(rv) + ")");
    }
    std::vector<CK_SLOT_ID> ids(count);
    if (count > 0) {
        if (const CK_RV rv = fn->C_GetSlotList(CK_TRUE, ids.data(), &count); rv != CKR_OK) {
            return make_error(Errc::crypto_failure, "PKCS#11 module " + module.path() +
                                                        ": C_GetSlotList failed (" + rv_text(rv) + ")");
        }
        ids.resize(count);
    }
    std::vector<Slot> slots;
    for (const CK_SLOT_ID id : ids) {
        Slot s;
        s.id = id;
        // A slot whose token cannot be described (being removed, half initialised) is passed over.
        if (fn->C_GetSlotInfo(id, &s.slot) != CKR_OK || fn->C_GetTokenInfo(id, &s.token) != CKR_OK) {
            continue;
        }
        if ((s.token.flags & CKF_TOKEN_INITIALIZED) == 0) {
            continue;
        }
        if ((uri.slot_id && *uri.slot_id != id) || !matches_field(uri.token, trimmed(s.token.label)) ||
            !matches_field(uri.manufacturer, trimmed(s.token.manufacturerID)) ||
            !matches_field(uri.serial, trimmed(s.token.serialNumber)) ||
            !matches_field(uri.model, trimmed(s.token.model)) ||
            !matches_field(uri.slot_description, trimmed(s.slot.slotDescription)) ||
            !matches_field(uri.slot_manufacturer, trimmed(s.slot.manufacturerID))) {
            continue;
        }
        slots.push_back(s);
    }
    return slots;
}

Result<Session> open_session(const Module& module, const Slot& slot) {
    CK_SESSION_HANDLE handle = CK_INVALID_HANDLE;
    const CK_RV rv = module.fn()->C_OpenSession(slot.id, CKF_SERIAL_SESSION, nullptr, nullptr, &handle);
    if (rv != CKR_OK) {
        return make_error(Errc::crypto_failure, "PKCS#11 token \"" + trimmed(slot.token.label) +
                                                    "\": C_OpenSession failed (" + rv_text(rv) + ")");
    }
    return Session(module.fn(), handle);
}

// login logs in as `user_type`. CKR_PIN_INCORRECT and the other PIN answers are device_auth_failed (never
// retried, as for a TPM password): the PIN in the configuration is wrong, and trying it again would only
// bring the token closer to locking.
Result<void> login(CK_FUNCTION_LIST* fn,
                   CK_SESSION_HANDLE session,
                   CK_USER_TYPE user_type,
                   const Secret& pin,
                   const std::string& origin,
                   CK_RV* rv_out = nullptr) {
    std::string copy(pin.reveal());
    const CK_RV rv = fn->C_Login(session, user_type, reinterpret_cast<CK_UTF8CHAR_PTR>(copy.data()),
                                 static_cast<CK_ULONG>(copy.size()));
    wipe_string(copy);
    if (rv_out != nullptr) {
        *rv_out = rv;
    }
    if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) {
        return {};
    }
    if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED || rv == CKR_PIN_EXPIRED || rv == CKR_PIN_LEN_RANGE ||
        rv == CKR_PIN_INVALID) {
        return make_error(Errc::device_auth_failed,
                          origin + ": the token refused the PIN (" + rv_text(rv) +
                              "); it is not tried again until the configuration changes");
    }
    return make_error(Errc::crypto_failure, origin + ": C_Login failed (" + rv_text(rv) + ")");
}

// is_pin_error is true for the answers that must not be tried again with the same configuration: a PIN
// the token refused, or a key that wants a per-signature login the configuration does not allow.
bool is_pin_error(const Error& error) noexcept {
    return error.code == Errc::device_auth_failed || error.code == Errc::config_invalid;
}

Result<std::string> attribute(CK_FUNCTION_LIST* fn,
                              CK_SESSION_HANDLE session,
                              CK_OBJECT_HANDLE object,
                              CK_ATTRIBUTE_TYPE type) {
    CK_ATTRIBUTE a{type, nullptr, 0};
    CK_RV rv = fn->C_GetAttributeValue(session, object, &a, 1);
    if (rv != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
        return make_error(Errc::crypto_failure, "C_GetAttributeValue failed (" + rv_text(rv) + ")");
    }
    std::string value(a.ulValueLen, '\0');
    a.pValue = value.data();
    rv = fn->C_GetAttributeValue(session, object, &a, 1);
    if (rv != CKR_OK) {
        return make_error(Errc::crypto_failure, "C_GetAttributeValue failed (" + rv_text(rv) + ")");
    }
    value.resize(a.ulValueLen);
    return value;
}

CK_ULONG ulong_attribute(CK_FUNCTION_LIST* fn,
                         CK_SESSION_HANDLE session,
                         CK_OBJECT_HANDLE object,
                         CK_ATTRIBUTE_TYPE type,
                         CK_ULONG fallback) {
    CK_ULONG value = fallback;
    CK_ATTRIBUTE a{type, &value, sizeof value};
    return fn->C_GetAttributeValue(session, object, &a, 1) == CKR_OK ? value : fallback;
}

bool bool_attribute(CK_FUNCTION_LIST* fn,
                    CK_SESSION_HANDLE session,
                    CK_OBJECT_HANDLE object,
                    CK_ATTRIBUTE_TYPE type) {
    CK_BBOOL value = CK_FALSE;
    CK_ATTRIBUTE a{type, &value, sizeof value};
    return fn->C_GetAttributeValue(session, object, &a, 1) == CKR_OK && value == CK_TRUE;
}

Result<std::vector<CK_OBJECT_HANDLE>> find_objects(CK_FUNCTION_LIST* fn,
                                                   CK_SESSION_HANDLE session,
                                                   CK_OBJECT_CLASS object_class,
                                                   const std::optional<std::string>& label,
                                                   const std::optional<std::string>& id,
                                                   CK_RV* rv_out = nullptr) {
    std::string label_copy = label.value_or("");
    std::string id_copy = id.value_or("");
    std::vector<CK_ATTRIBUTE> query{{CKA_CLASS, &object_class, sizeof object_class}};
    CK_CERTIFICATE_TYPE x509 = CKC_X_509;
    if (object_class == CKO_CERTIFICATE) {
        query.push_back({CKA_CERTIFICATE_TYPE, &x509, sizeof x509});
    }
    if (label) {
        query.push_back({CKA_LABEL, label_copy.data(), static_cast<CK_ULONG>(label_copy.size())});
    }
    if (id) {
        query.push_back({CKA_ID, id_copy.data(), static_cast<CK_ULONG>(id_copy.size())});
    }
    CK_RV rv = fn->C_FindObjectsInit(session, query.data(), static_cast<CK_ULONG>(query.size()));
    std::vector<CK_OBJECT_HANDLE> found;
    if (rv == CKR_OK) {
        std::array<CK_OBJECT_HANDLE, 16> batch{};
        CK_ULONG count = 0;
        while ((rv = fn->C_FindObjects(session, batch.data(), batch.size(), &count)) == CKR_OK && count > 0) {
            found.insert(found.end(), batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(count));
        }
        fn->C_FindObjectsFinal(session);
    }
    if (rv_out != nullptr) {
        *rv_out = rv;
    }
    if (rv != CKR_OK) {
        return make_error(Errc::crypto_failure, "C_FindObjects failed (" + rv_text(rv) + ")");
    }
    return found;
}

Pkcs11Uri object_uri(const Slot& slot,
                     std::optional<std::string> id,
                     std::optional<std::string> label,
                     Pkcs11ObjectType type) {
    Pkcs11Uri uri;
    uri.model = trimmed(slot.token.model);
    uri.manufacturer = trimmed(slot.token.manufacturerID);
    uri.serial = trimmed(slot.token.serialNumber);
    uri.token = trimmed(slot.token.label);
    uri.id = std::move(id);
    uri.object = std::move(label);
    uri.type = type;
    return uri;
}

Result<std::vector<TokenCertificate>> certificates_in(const std::shared_ptr<Module>& module_ref,
                                                      const Slot& slot,
                                                      const Session& session,
                                                      const Pkcs11Uri& uri) {
    const Module& module = *module_ref;
    std::shared_ptr<const void> keep(module_ref);
    auto handles = find_objects(module.fn(), session.handle(), CKO_CERTIFICATE, uri.object, uri.id);
    if (!handles) {
        return make_error(handles.error().code, where(uri) + ": " + handles.error().message);
    }
    std::vector<TokenCertificate> found;
    for (const CK_OBJECT_HANDLE handle : *handles) {
        auto der = attribute(module.fn(), session.handle(), handle, CKA_VALUE);
        if (!der) {
            return make_error(der.error().code, where(uri) + ": " + der.error().message);
        }
        auto id = attribute(module.fn(), session.handle(), handle, CKA_ID);
        auto label = attribute(module.fn(), session.handle(), handle, CKA_LABEL);
        const std::optional<std::string> id_value = id && !id->empty() ? std::optional(*id) : std::nullopt;
        const std::optional<std::string> label_value =
            label && !label->empty() ? std::optional(*label) : std::nullopt;
        Pkcs11Uri named = object_uri(slot, id_value, label_value, Pkcs11ObjectType::cert);
        auto certificate = Certificate::from_der(*der, where(named));
        if (!certificate) {
            return certificate.error();
        }
        found.push_back(
            TokenCertificate{ossl::take(certificate), id_value.value_or(""), std::move(named), keep});
    }
    return found;
}

void refuse_wrong_type(const Pkcs11Uri& uri, Pkcs11ObjectType wanted, std::optional<Error>& error) {
    if (uri.type && *uri.type != wanted) {
        error =
            make_error(Errc::usage,
                       where(uri) + ": the URI names type=" +
                           (wanted == Pkcs11ObjectType::cert ? std::string("private") : std::string("cert")) +
                           " objects where a " +
                           (wanted == Pkcs11ObjectType::cert ? "certificate" : "private key") + " is needed");
    }
}

// search_certificates looks in every slot `uri` matches; see load_pkcs11_certificate for the login rule.
Result<std::vector<TokenCertificate>> search_certificates(const Pkcs11Uri& uri,
                                                          const Pkcs11Options& options) {
    auto module = Module::open(module_path(uri, options));
    if (!module) {
        return module.error();
    }
    auto slots = matching_slots(**module, uri);
    if (!slots) {
        return slots.error();
    }
    if (slots->empty()) {
        return make_error(Errc::input_missing,
                          where(uri) + ": no token matches in PKCS#11 module " + (*module)->path());
    }
    std::vector<TokenCertificate> found;
    for (const Slot& slot : *slots) {
        auto session = open_session(**module, slot);
        if (!session) {
            return session.error();
        }
        auto certificates = certificates_in(*module, slot, *session, uri);
        if (!certificates) {
            return certificates.error();
        }
        for (auto& c : *certificates) {
            found.push_back(std::move(c));
        }
    }
    if (!found.empty() || slots->size() != 1) {
        return found;
    }
    // Some tokens keep certificates private; look again after logging in, on the one token named.
    auto pin = resolve_pin(uri, options);
    if (!pin) {
        return pin.error();
    }
    if (!*pin) {
        return found;
    }
    auto session = open_session(**module, slots->front());
    if (!session) {
        return session.error();
    }
    if (auto r = login((*module)->fn(), session->handle(), CKU_USER, **pin, where(uri)); !r) {
        return r.error();
    }
    return certificates_in(*module, slots->front(), *session, uri);
}

// digest_of hashes in software: CKM_ECDSA and CKM_RSA_PKCS sign a digest, and not every token has the
// combined hash-and-sign mechanisms for SHA-384/512.
Bytes digest_of(std::string_view message, Digest digest) {
    Bytes out(EVP_MAX_MD_SIZE);
    unsigned int length = 0;
    if (EVP_Digest(message.data(), message.size(), out.data(), &length, ossl::md(digest), nullptr) != 1) {
        ossl::clear_errors();
        return {};
    }
    out.resize(length);
    return out;
}

// digest_info_prefix is the DER DigestInfo header RSASSA-PKCS1-v1_5 puts before the hash (RFC 8017 §9.2).
std::string_view digest_info_prefix(Digest digest) {
    switch (digest) {
        case Digest::sha256:
            return {"\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20", 19};
        case Digest::sha384:
            return {"\x30\x41\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x02\x05\x00\x04\x30", 19};
        case Digest::sha512:
            return {"\x30\x51\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x03\x05\x00\x04\x40", 19};
    }
    return {};
}

// TokenObject is how a key is found again after a new session: by CKA_ID, else by CKA_LABEL.
struct KeySelector {
    std::optional<std::string> id;
    std::optional<std::string> label;
};

// SignRequest is one C_SignInit/C_Sign on an open session.
struct SignContext {
    CK_FUNCTION_LIST* fn;
    CK_SESSION_HANDLE session;
    CK_OBJECT_HANDLE key;
    KeyType type;
    bool always_authenticate;
    const Secret* pin;  // nullptr: none
    bool reuse_pin;
    const std::string& origin;
};

// token_sign signs digest(message); *rv_out is the PKCS#11 answer that failed (CKR_OK when the failure is
// ours), so the caller can tell a lost session from a key that cannot sign.
Result<Bytes> token_sign(const SignContext& c, std::string_view message, Digest digest, CK_RV* rv_out) {
    *rv_out = CKR_OK;
    Bytes input = digest_of(message, digest);
    if (input.empty()) {
        return make_error(Errc::crypto_failure, "cannot hash the message to sign");
    }
    CK_MECHANISM mechanism{c.type == KeyType::ec ? CKM_ECDSA : CKM_RSA_PKCS, nullptr, 0};
    if (c.type == KeyType::rsa) {
        const std::string_view prefix = digest_info_prefix(digest);
        Bytes prefixed(prefix.size() + input.size());
        std::memcpy(prefixed.data(), prefix.data(), prefix.size());
        std::memcpy(prefixed.data() + prefix.size(), input.data(), input.size());
        input = std::move(prefixed);
    }
    CK_RV rv = c.fn->C_SignInit(c.session, &mechanism, c.key);
    if (rv != CKR_OK) {
        *rv_out = rv;
        return make_error(Errc::crypto_failure, c.origin + ": C_SignInit failed (" + rv_text(rv) + ")");
    }
    if (c.always_authenticate) {
        // CKA_ALWAYS_AUTHENTICATE: the token wants the PIN again for this one operation.
        if (c.pin == nullptr || !c.reuse_pin) {
            // The operation stays initialised; the caller drops the session on this (configuration) error.
            return make_error(Errc::config_invalid,
                              c.origin +
                                  ": the key requires a login for every signature (CKA_ALWAYS_AUTHENTICATE); "
                                  "set reuse_pin (--reuse-pin) to use the user PIN for it");
        }
        CK_RV login_rv = CKR_OK;
        if (auto r = login(c.fn, c.session, CKU_CONTEXT_SPECIFIC, *c.pin, c.origin, &login_rv); !r) {
            *rv_out = login_rv;
            return r.error();
        }
    }
    CK_ULONG length = 0;
    rv = c.fn->C_Sign(c.session, input.data(), static_cast<CK_ULONG>(input.size()), nullptr, &length);
    if (rv != CKR_OK) {
        *rv_out = rv;
        return make_error(Errc::crypto_failure, c.origin + ": C_Sign failed (" + rv_text(rv) + ")");
    }
    Bytes signature(length);
    rv =
        c.fn->C_Sign(c.session, input.data(), static_cast<CK_ULONG>(input.size()), signature.data(), &length);
    if (rv != CKR_OK) {
        *rv_out = rv;
        return make_error(Errc::crypto_failure, c.origin + ": C_Sign failed (" + rv_text(rv) + ")");
    }
    signature.resize(length);
    if (c.type == KeyType::ec) {
        return ecdsa_der_from_raw(signature, c.origin);
    }
    return signature;
}

constexpr std::string_view kProbe = "rolesanywhere-agent: does this PKCS#11 key belong to the certificate?";

// TokenKey is a private key on a token, behind PrivateKey. Its state (session, key handle) is guarded by a
// mutex: a PKCS#11 session runs one operation at a time.
class TokenKey final : public KeyBackend {
public:
    TokenKey(std::shared_ptr<Module> module,
             Pkcs11Uri token_uri,
             KeySelector selector,
             std::optional<Secret> pin,
             bool reuse_pin,
             Certificate certificate,
             std::string token_label)
        : module_(std::move(module)),
          token_uri_(std::move(token_uri)),
          selector_(std::move(selector)),
          pin_(std::move(pin)),
          reuse_pin_(reuse_pin),
          certificate_(std::move(certificate)),
          token_label_(std::move(token_label)),
          origin_(where(token_uri_)) {}

    ~TokenKey() override {
        const std::lock_guard lock(mutex_);
        drop_session();
    }

    EVP_PKEY* public_key() const noexcept override { return X509_get0_pubkey(certificate_.native()); }

    std::string location() const override { return "on PKCS#11 token \"" + token_label_ + "\""; }

    Result<Bytes> sign(std::string_view message, Digest digest) const override {
        const std::lock_guard lock(mutex_);
        if (pin_rejected_) {
            return *pin_rejected_;
        }
        if (!session_) {
            if (auto r = reopen(); !r) {
                return r.error();
            }
            return sign_locked(message, digest).first;
        }
        auto [signature, rv] = sign_locked(message, digest);
        if (signature || !is_recoverable(rv) || pin_rejected_) {
            return signature;
        }
        // The session, the login or the token went away: one new session, login and search, then one more
        // try. A second failure is this signature's error; the next one starts over.
        drop_session();
        if (auto r = reopen(); !r) {
            return r.error();
        }
        return sign_locked(message, digest).first;
    }

    // adopt_session hands over the session load_pkcs11_key found the key in.
    void adopt_session(Session session,
                       CK_OBJECT_HANDLE key,
                       bool always_authenticate,
                       std::uint64_t generation) {
        const std::lock_guard lock(mutex_);
        session_ = std::move(session);
        key_ = key;
        always_authenticate_ = always_authenticate;
        generation_ = generation;
    }

private:
    std::pair<Result<Bytes>, CK_RV> sign_locked(std::string_view message, Digest digest) const {
        const SignContext context{module_->fn(),        session_.handle(),       key_,       key_type(),
                                  always_authenticate_, pin_ ? &*pin_ : nullptr, reuse_pin_, origin_};
        CK_RV rv = CKR_OK;
        auto signature = token_sign(context, message, digest, &rv);
        if (!signature && is_pin_error(signature.error())) {
            pin_rejected_ = signature.error();
            drop_session();
        }
        return {std::move(signature), rv};
    }

    KeyType key_type() const noexcept {
        return EVP_PKEY_get_base_id(public_key()) == EVP_PKEY_RSA ? KeyType::rsa : KeyType::ec;
    }

    void drop_session() const {
        // Handles from before a C_Finalize are gone already; closing them could hit a new session's handle.
        if (session_ && module_->generation() != generation_) {
            session_.abandon();
        }
        session_.close();
    }

    // reopen finds the token and the key again. A module that no longer sees the token (SoftHSM after the
    // token was deleted and re-created) is re-initialised once, unless another key already did.
    Result<void> reopen() const {
        const std::uint64_t seen = module_->generation();
        auto first = open_and_find();
        if (first || pin_rejected_) {
            return first;
        }
        if (auto r = module_->reinitialize(seen); !r) {
            return r.error();
        }
        return open_and_find();
    }

    Result<void> open_and_find() const {
        generation_ = module_->generation();
        auto slots = matching_slots(*module_, token_uri_);
        if (!slots) {
            return slots.error();
        }
        if (slots->size() != 1) {
            return make_error(
                Errc::input_missing,
                origin_ + (slots->empty() ? ": the token is no longer present"
                                          : ": several tokens match now; name one with serial="));
        }
        auto session = open_session(*module_, slots->front());
        if (!session) {
            return session.error();
        }
        if (pin_) {
            if (auto r = login(module_->fn(), session->handle(), CKU_USER, *pin_, origin_); !r) {
                if (is_pin_error(r.error())) {
                    pin_rejected_ = r.error();
                }
                return r.error();
            }
        }
        auto keys =
            find_objects(module_->fn(), session->handle(), CKO_PRIVATE_KEY, selector_.label, selector_.id);
        if (!keys) {
            return make_error(keys.error().code, origin_ + ": " + keys.error().message);
        }
        if (keys->size() != 1) {
            return make_error(Errc::input_missing, origin_ + ": the private key is no longer on the token (" +
                                                       std::to_string(keys->size()) + " found)");
        }
        const CK_OBJECT_HANDLE key = keys->front();
        const bool always = bool_attribute(module_->fn(), session->handle(), key, CKA_ALWAYS_AUTHENTICATE);
        session_ = std::move(*session);
        key_ = key;
        always_authenticate_ = always;
        // The token may have been re-initialised with another key under the same id: prove it again.
        auto probe = sign_locked(kProbe, Digest::sha256).first;
        if (!probe) {
            return probe.error();
        }
        if (!verify(certificate_, kProbe, *probe, Digest::sha256)) {
            drop_session();
            return make_error(
                Errc::key_cert_mismatch,
                origin_ + ": the private key on the token no longer belongs to the certificate");
        }
        return {};
    }

    std::shared_ptr<Module> module_;  // first member: destroyed last, after the session is closed
    Pkcs11Uri token_uri_;
    KeySelector selector_;
    std::optional<Secret> pin_;
    bool reuse_pin_;
    Certificate certificate_;
    std::string token_label_;
    std::string origin_;
    mutable std::mutex mutex_;
    mutable Session session_;
    mutable CK_OBJECT_HANDLE key_ = CK_INVALID_HANDLE;
    mutable bool always_authenticate_ = false;
    mutable std::uint64_t generation_ = 0;
    mutable std::optional<Error> pin_rejected_;
};

// token_only keeps the attributes that choose the token (not the object, nor the PIN).
Pkcs11Uri token_only(const Pkcs11Uri& uri) {
    Pkcs11Uri t;
    t.token = uri.token;
    t.manufacturer = uri.manufacturer;
    t.serial = uri.serial;
    t.model = uri.model;
    t.library_manufacturer = uri.library_manufacturer;
    t.library_description = uri.library_description;
    t.library_version = uri.library_version;
    t.slot_manufacturer = uri.slot_manufacturer;
    t.slot_description = uri.slot_description;
    t.slot_id = uri.slot_id;
    return t;
}

}  // namespace

Result<TokenCertificate> load_pkcs11_certificate(const Pkcs11Uri& uri, const Pkcs11Options& options) {
    std::optional<Error> wrong_type;
    refuse_wrong_type(uri, Pkcs11ObjectType::cert, wrong_type);
    if (wrong_type) {
        return *wrong_type;
    }
    auto found = search_certificates(uri, options);
    if (!found) {
        return found.error();
    }
    if (found->empty()) {
        return make_error(Errc::input_missing, where(uri) + ": no certificate matches on the token");
    }
    if (found->size() > 1) {
        return make_error(Errc::usage, where(uri) + ": " + std::to_string(found->size()) +
                                           " certificates match (e.g. " + where(found->at(0).uri) + " and " +
                                           where(found->at(1).uri) +
                                           "); add id=, object= or serial= to the URI");
    }
    return std::move(found->front());
}

Result<std::vector<TokenCertificate>> list_pkcs11_certificates(const Pkcs11Uri& uri,
                                                               const Pkcs11Options& options) {
    return search_certificates(uri, options);
}

Result<PrivateKey> load_pkcs11_key(const Pkcs11Uri& uri,
                                   const Pkcs11Options& options,
                                   const Certificate& certificate,
                                   const std::optional<std::string>& id_hint) {
    std::optional<Error> wrong_type;
    refuse_wrong_type(uri, Pkcs11ObjectType::private_key, wrong_type);
    if (wrong_type) {
        return *wrong_type;
    }
    const std::string origin = where(uri);
    // Tokens sign with CKM_ECDSA or CKM_RSA_PKCS only: SoftHSM2 2.6 and OpenSC have no ML-DSA mechanism. Said
    // before the token is searched (and a PIN spent) for a key that could not sign anyway.
    if (auto type = certificate.key_type(); type && is_ml_dsa(*type)) {
        return make_error(Errc::unsupported_key,
                          origin + ": the certificate's key is " + std::string(key_type_name(*type)) +
                              "; ML-DSA keys are supported in files, not on PKCS#11 tokens");
    }
    auto module = Module::open(module_path(uri, options));
    if (!module) {
        return module.error();
    }
    auto pin = resolve_pin(uri, options);
    if (!pin) {
        return pin.error();
    }
    const std::uint64_t generation = (*module)->generation();
    auto slots = matching_slots(**module, uri);
    if (!slots) {
        return slots.error();
    }
    if (slots->empty()) {
        return make_error(Errc::input_missing,
                          origin + ": no token matches in PKCS#11 module " + (*module)->path());
    }
    if (slots->size() > 1) {
        return make_error(Errc::usage, origin + ": " + std::to_string(slots->size()) +
                                           " tokens match; add token= or serial= to the URI");
    }
    const Slot& slot = slots->front();
    auto session = open_session(**module, slot);
    if (!session) {
        return session.error();
    }
    CK_FUNCTION_LIST* fn = (*module)->fn();
    if (*pin) {
        if (auto r = login(fn, session->handle(), CKU_USER, **pin, origin); !r) {
            return r.error();
        }
    }
    // Which keys are candidates: the ones the URI names; else the one with the certificate's CKA_ID; else
    // all.
    const bool named = uri.id || uri.object;
    std::optional<std::string> search_id = uri.id;
    if (!named && id_hint && !id_hint->empty()) {
        search_id = id_hint;
    }
    auto handles = find_objects(fn, session->handle(), CKO_PRIVATE_KEY, uri.object, search_id);
    if (!handles) {
        return make_error(handles.error().code, origin + ": " + handles.error().message);
    }
    if (handles->empty() && uri.object && !uri.id && id_hint && !id_hint->empty()) {
        // A label shared by the certificate but not the key (some import tools): fall back to the CKA_ID.
        handles = find_objects(fn, session->handle(), CKO_PRIVATE_KEY, std::nullopt, id_hint);
        if (!handles) {
            return make_error(handles.error().code, origin + ": " + handles.error().message);
        }
    }
    if (handles->empty()) {
        return make_error(
            Errc::input_missing,
            origin + ": no private key matches on the token" +
                (*pin ? std::string{}
                      : std::string("; no PIN was given (pin-value, pin-source or pin_file) and "
                                    "private keys are only visible after login")));
    }
    if (named && handles->size() > 1) {
        return make_error(Errc::usage, origin + ": " + std::to_string(handles->size()) +
                                           " private keys match; add id= or object= to tell them apart");
    }
    auto certificate_type = certificate.key_type();
    if (!certificate_type) {
        return certificate_type.error();
    }
    const CK_KEY_TYPE wanted = *certificate_type == KeyType::rsa ? CKK_RSA : CKK_EC;
    struct Match {
        CK_OBJECT_HANDLE handle;
        bool always_authenticate;
    };
    std::vector<Match> matches;
    std::optional<Error> probe_error;
    for (const CK_OBJECT_HANDLE handle : *handles) {
        if (ulong_attribute(fn, session->handle(), handle, CKA_KEY_TYPE, CKK_VENDOR_DEFINED) != wanted) {
            continue;
        }
        const bool always = bool_attribute(fn, session->handle(), handle, CKA_ALWAYS_AUTHENTICATE);
        const SignContext context{fn,
                                  session->handle(),
                                  handle,
                                  *certificate_type,
                                  always,
                                  *pin ? &**pin : nullptr,
                                  options.reuse_pin,
                                  origin};
        CK_RV rv = CKR_OK;
        auto probe = token_sign(context, kProbe, Digest::sha256, &rv);
        if (!probe) {
            if (is_pin_error(probe.error())) {
                return probe.error();
            }
            probe_error = probe.error();
            continue;
        }
        if (verify(certificate, kProbe, *probe, Digest::sha256)) {
            matches.push_back(Match{handle, always});
        }
    }
    if (matches.empty()) {
        if (probe_error) {
            return *probe_error;
        }
        return make_error(Errc::key_cert_mismatch,
                          origin + ": no private key on the token belongs to the certificate");
    }
    if (matches.size() > 1) {
        return make_error(Errc::usage, origin + ": " + std::to_string(matches.size()) +
                                           " private keys on the token belong to the certificate; add id= "
                                           "or object= to the URI");
    }
    KeySelector selector;
    auto key_id = attribute(fn, session->handle(), matches.front().handle, CKA_ID);
    if (key_id && !key_id->empty()) {
        selector.id = *key_id;
    } else if (auto label = attribute(fn, session->handle(), matches.front().handle, CKA_LABEL);
               label && !label->empty()) {
        selector.label = *label;
    } else {
        selector.id = search_id;
        selector.label = uri.object;
    }
    // The key is found again later with the token's own identification, so that another token inserted
    // meanwhile cannot take its place unnoticed (the probe signature checks the key itself).
    Pkcs11Uri token_uri = token_only(uri);
    if (!token_uri.serial) {
        token_uri.token = trimmed(slot.token.label);
    }
    auto backend =
        std::make_shared<TokenKey>(*module, std::move(token_uri), std::move(selector), std::move(*pin),
                                   options.reuse_pin, certificate, trimmed(slot.token.label));
    backend->adopt_session(std::move(*session), matches.front().handle, matches.front().always_authenticate,
                           generation);
    return PrivateKey::from_backend(std::move(backend), origin);
}

}  // namespace rad::pki
