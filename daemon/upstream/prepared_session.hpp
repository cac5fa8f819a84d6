#pragma once
// From a profile to what one CreateSession needs: the identity resolved and loaded, the endpoint resolved,
// the request's parameters and the HTTPS client's options (environment variables applied here).

#include <string>

#include "common/error.hpp"
#include "common/log.hpp"
#include "config/config.hpp"
#include "daemon/upstream/https_client.hpp"
#include "daemon/upstream/session_client.hpp"
#include "pki/identity.hpp"
#include "signer/create_session.hpp"
#include "signer/endpoint.hpp"

namespace rad::upstream {

// PreparedSession is everything CreateSession needs, checked and loaded once: the identity (key parsed and
// matched to the leaf), the endpoint, the request parameters and the transport options. credential-process
// prepares one per run; the agent one per profile, again whenever the certificate or key files change.
struct PreparedSession {
    pki::Identity identity;
    signer::ResolvedEndpoint endpoint;
    signer::CreateSessionParams params;
    HttpsClientOptions client;
};

// endpoint_options are the settings of a profile that choose the endpoint, as the signer takes them (no
// environment applied).
signer::EndpointOptions endpoint_options(const config::ProfileConfig& profile);

// resolve_identity turns an IdentitySpec into what pki::load_identity reads: the passphrase, PIN and TPM
// password files read (as Secrets), the values handed over copied. check_validity_period is false only for
// commands that must describe an expired certificate too.
[[nodiscard]] Result<pki::IdentitySource> resolve_identity(const config::IdentitySpec& spec,
                                                           bool check_validity_period);

// prepare_session validates the profile's settings (ARNs, duration, timeouts), resolves the endpoint and
// loads the identity, in that order, so that usage errors come before file errors. Its messages name the
// command line's flags: the configuration file's own checks have run before a profile of it gets here.
// check_validity_period is false for the agent, whose engine checks the certificate's dates before every
// signature (a certificate valid from tomorrow is loaded, and used tomorrow).
// `log` gets debug lines (what was loaded, the endpoint, the proxy) and the warning of --no-verify-ssl.
[[nodiscard]] Result<PreparedSession> prepare_session(const config::ProfileConfig& profile,
                                                      Logger& log,
                                                      bool check_validity_period = true);

// production_hooks are the SessionClientHooks of the real world: send_request() over the network with
// `client` (borrowed: it must outlive the hooks), the system clock, a sleeping thread, a seeded PRNG, and
// debug lines for failed attempts on `log` (borrowed too).
SessionClientHooks production_hooks(const HttpsClientOptions& client, Logger& log);

// refuse_hardware_reference refuses a TPM "handle:" given to any flag but --private-key: a TPM holds keys,
// not certificates.
[[nodiscard]] Result<void> refuse_hardware_reference(const std::string& value, const char* flag);

}  // namespace rad::upstream
