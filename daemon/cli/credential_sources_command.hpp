#pragma once
// `rolesanywhere-agent check-credential-sources --unit NAME --output FILE`: the unit's privileged pre-start
// check (ExecStartPre=+). systemd's LoadCredential= copies are 0400 and the agent's own, so the agent cannot
// see that a key's source in /etc is readable by every user, nor name that source in its messages. This asks
// PID 1 for the unit's LoadCredential= lines (busctl, over the system bus: a machine without dbus gets a
// warning and an empty record), checks each source file with the rules the agent applies to a
// plain key path, and writes the record config/credential_sources.hpp describes, which the agent reads.

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "config/credential_sources.hpp"

namespace rad::cli {

struct CredentialSourcesOptions {
    std::string unit;    // the service, as systemd's %n gives it
    std::string output;  // the record to write
};

// bus_object_path is the D-Bus object path of a unit: /org/freedesktop/systemd1/unit/ and the name with every
// character but [A-Za-z0-9] written as _XX (lowercase hex), as systemd escapes bus labels.
std::string bus_object_path(const std::string& unit);

// parse_load_credentials reads `busctl --json=short get-property ... LoadCredential` output: the (name,
// source) pairs, or config_invalid.
[[nodiscard]] Result<std::vector<std::pair<std::string, std::string>>> parse_load_credentials(
    const std::string& json);

// check_source applies the key-file rules to one source: its refusals as a secret and as a secret shared with
// its group (empty when it passes, or when it is no plain file the rules apply to).
config::CredentialSource check_source(const std::string& name, const std::string& source);

// run_check_credential_sources never fails the start: the record is written whatever it holds (an empty one
// when PID 1 cannot be asked), each refused source is reported on `err`, and the exit status is 0 unless the
// record itself cannot be written.
[[nodiscard]] Result<void> run_check_credential_sources(const CredentialSourcesOptions& options,
                                                        std::FILE* err);

}  // namespace rad::cli
