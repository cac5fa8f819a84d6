#include "pki/tss2_library.hpp"

#include <dlfcn.h>

#include <mutex>
#include <optional>
#include <string>

namespace rad::pki {
namespace {

Tss2 table{};
std::optional<Error> failure;

// symbol looks `name` up in `library`; false (and `failure` set) when it is not there.
template <class F>
bool symbol(void* library, const char* soname, const char* name, F& out) {
    out = reinterpret_cast<F>(::dlsym(library, name));  // NOLINT: dlsym's void* to a function pointer
    if (out == nullptr) {
        failure = make_error(Errc::device_unavailable, std::string(soname) + " has no " + name);
    }
    return out != nullptr;
}

void* open_library(const char* soname, const char* package) {
    // RTLD_NODELETE: kept mapped until exit, as a TCTI module or an ESAPI callback may outlive any user.
    void* library = ::dlopen(soname, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (library == nullptr) {
        const char* reason = ::dlerror();
        failure = make_error(Errc::device_unavailable,
                             std::string("TPM keys need ") + soname + " (Debian package " + package +
                                 "): " + (reason != nullptr ? reason : "cannot be loaded"));
    }
    return library;
}

void load_all() {
    void* esys = open_library("libtss2-esys.so.0", "libtss2-esys-3.0.2-0");
    void* mu = esys != nullptr ? open_library("libtss2-mu.so.0", "libtss2-mu0") : nullptr;
    void* rc = mu != nullptr ? open_library("libtss2-rc.so.0", "libtss2-rc0") : nullptr;
    void* tctildr = rc != nullptr ? open_library("libtss2-tctildr.so.0", "libtss2-tctildr0") : nullptr;
    if (tctildr == nullptr) {
        return;
    }
    const char* e = "libtss2-esys.so.0";
    (void)(symbol(esys, e, "Esys_CreatePrimary", table.Esys_CreatePrimary) &&
           symbol(esys, e, "Esys_Finalize", table.Esys_Finalize) &&
           symbol(esys, e, "Esys_FlushContext", table.Esys_FlushContext) &&
           symbol(esys, e, "Esys_Free", table.Esys_Free) &&
           symbol(esys, e, "Esys_Initialize", table.Esys_Initialize) &&
           symbol(esys, e, "Esys_Load", table.Esys_Load) &&
           symbol(esys, e, "Esys_ReadPublic", table.Esys_ReadPublic) &&
           symbol(esys, e, "Esys_Sign", table.Esys_Sign) &&
           symbol(esys, e, "Esys_TR_Close", table.Esys_TR_Close) &&
           symbol(esys, e, "Esys_TR_FromTPMPublic", table.Esys_TR_FromTPMPublic) &&
           symbol(esys, e, "Esys_TR_SetAuth", table.Esys_TR_SetAuth) &&
           symbol(mu, "libtss2-mu.so.0", "Tss2_MU_TPM2B_PRIVATE_Unmarshal",
                  table.Tss2_MU_TPM2B_PRIVATE_Unmarshal) &&
           symbol(mu, "libtss2-mu.so.0", "Tss2_MU_TPM2B_PUBLIC_Unmarshal",
                  table.Tss2_MU_TPM2B_PUBLIC_Unmarshal) &&
           symbol(rc, "libtss2-rc.so.0", "Tss2_RC_Decode", table.Tss2_RC_Decode) &&
           symbol(tctildr, "libtss2-tctildr.so.0", "Tss2_TctiLdr_Finalize", table.Tss2_TctiLdr_Finalize) &&
           symbol(tctildr, "libtss2-tctildr.so.0", "Tss2_TctiLdr_Initialize", table.Tss2_TctiLdr_Initialize));
}

}  // namespace

Result<const Tss2*> load_tss2() {
    static std::once_flag once;
    std::call_once(once, load_all);
    if (failure) {
        return *failure;
    }
    return &table;
}

const Tss2& tss2() noexcept {
    return table;
}

}  // namespace rad::pki
