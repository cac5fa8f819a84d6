#pragma once
// Private to pki/: the tpm2-tss functions that TPM keys use (tpm_key.cpp), loaded with dlopen the first time
// a TPM key is read. A process whose keys are not in a TPM never maps libtss2-esys, -sys, -mu, -rc and
// -tctildr: linked in, they were 5 of the 12 shared objects of every start, and their 1,000 symbol
// relocations lengthened every other look-up of the dynamic loader (1.4 million instructions of a cold
// credential-process).

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "common/error.hpp"

namespace rad::pki {

// Tss2 holds one pointer per function, named and typed as in tpm2-tss's headers.
struct Tss2 {
    decltype(&::Esys_CreatePrimary) Esys_CreatePrimary;
    decltype(&::Esys_Finalize) Esys_Finalize;
    decltype(&::Esys_FlushContext) Esys_FlushContext;
    decltype(&::Esys_Free) Esys_Free;
    decltype(&::Esys_Initialize) Esys_Initialize;
    decltype(&::Esys_Load) Esys_Load;
    decltype(&::Esys_ReadPublic) Esys_ReadPublic;
    decltype(&::Esys_Sign) Esys_Sign;
    decltype(&::Esys_TR_Close) Esys_TR_Close;
    decltype(&::Esys_TR_FromTPMPublic) Esys_TR_FromTPMPublic;
    decltype(&::Esys_TR_SetAuth) Esys_TR_SetAuth;
    decltype(&::Tss2_MU_TPM2B_PRIVATE_Unmarshal) Tss2_MU_TPM2B_PRIVATE_Unmarshal;
    decltype(&::Tss2_MU_TPM2B_PUBLIC_Unmarshal) Tss2_MU_TPM2B_PUBLIC_Unmarshal;
    decltype(&::Tss2_RC_Decode) Tss2_RC_Decode;
    decltype(&::Tss2_TctiLdr_Finalize) Tss2_TctiLdr_Finalize;
    decltype(&::Tss2_TctiLdr_Initialize) Tss2_TctiLdr_Initialize;
};

// load_tss2 loads the libraries once per process (later calls return the same table; thread-safe). Error:
// device_unavailable naming the library that cannot be loaded and the Debian package that ships it.
[[nodiscard]] Result<const Tss2*> load_tss2();

// tss2 is the table load_tss2 loaded; call it only after a load_tss2 that succeeded.
const Tss2& tss2() noexcept;

}  // namespace rad::pki
