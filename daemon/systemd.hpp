#pragma once
// The agent's side of the systemd service protocol: readiness and status notifications (sd_notify), the
// watchdog interval, and sockets passed in by socket activation (sd_listen_fds_with_names). Outside systemd
// ($NOTIFY_SOCKET and $LISTEN_FDS unset) every call is a cheap no-op, so the agent runs the same by hand.

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rad::daemon {

// notify_systemd sends `state` ("READY=1", "STATUS=…", "STOPPING=1", "RELOADING=1", "WATCHDOG=1") to the
// service manager; false when not under systemd or on failure.
bool notify_systemd(std::string_view state);

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
    bool empty() const noexcept { return fds_.empty(); }
    std::vector<std::string> names() const;

private:
    std::multimap<std::string, int> fds_;
};

}  // namespace rad::daemon
