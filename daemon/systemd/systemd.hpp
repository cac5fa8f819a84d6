#pragma once
// The agent's side of the systemd service protocol: readiness and status notifications (sd_notify), the
// watchdog interval, and sockets passed in by socket activation (sd_listen_fds_with_names). Outside systemd
// ($NOTIFY_SOCKET and $LISTEN_FDS unset) every call is a cheap no-op, so the agent runs the same by hand.

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/secret.hpp"

namespace rad::systemd {

// notify_systemd sends `state` ("READY=1", "STATUS=…", "STOPPING=1", "RELOADING=1", "WATCHDOG=1") to the
// service manager; false when not under systemd or on failure.
bool notify_systemd(std::string_view state);

// store_in_systemd hands `content` to the service manager's file-descriptor store under `name`
// (FileDescriptorStoreMax= must allow it), replacing what was stored under that name: a sealed memfd, sent
// with FDSTORE=1 after FDSTOREREMOVE=1. systemd passes it back to the next start of the service (as a
// LISTEN_FDS descriptor named `name`) until the service is stopped. False when not under systemd or on
// failure; nothing is stored then.
bool store_in_systemd(std::string_view name, std::string_view content);

// keep_in_systemd hands a copy of the descriptor `fd` (a listening socket) to the service manager's store
// under `name`, replacing what was stored under that name, so that the next start of the service receives it
// (as a LISTEN_FDS descriptor named `name`) and clients wait in its backlog across a restart instead of
// being refused. False when not under systemd or on failure.
bool keep_in_systemd(std::string_view name, int fd);

// forget_in_systemd removes what the store holds under `name`. False when not under systemd.
bool forget_in_systemd(std::string_view name);

// read_stored reads the whole content of a descriptor store_in_systemd() stored (positioned anywhere) into a
// Secret, at most `limit` bytes; nullopt on failure or when larger.
std::optional<Secret> read_stored(int fd, std::size_t limit);

// watchdog_interval is WatchdogSec= when the watchdog is enabled for this process.
std::optional<std::chrono::microseconds> watchdog_interval();

// ActivatedSockets are the file descriptors systemd passed, by FileDescriptorName= (unnamed ones are
// "unknown"). take() hands one out once; the rest are closed by the destructor.
class ActivatedSockets {
public:
    // from_environment reads LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES (and unsets them, so children don't
    // inherit).
    static ActivatedSockets from_environment();
    ActivatedSockets() = default;
    ActivatedSockets(ActivatedSockets&&) = default;
    ActivatedSockets& operator=(ActivatedSockets&&) = default;
    ~ActivatedSockets();

    std::optional<int> take(const std::string& name);
    // take_if hands out the first descriptor (in name order) for which `wanted(name, fd)` is true.
    std::optional<int> take_if(const std::function<bool(const std::string& name, int fd)>& wanted);
    bool empty() const noexcept { return fds_.empty(); }
    std::vector<std::string> names() const;

private:
    std::multimap<std::string, int> fds_;
};

}  // namespace rad::systemd
