#include "daemon/systemd.hpp"

#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstdlib>

namespace rad::daemon {

bool notify_systemd(std::string_view state) {
    const std::string message(state);
    // unset_environment = 0: later notifications (STATUS, WATCHDOG, STOPPING) need $NOTIFY_SOCKET too.
    return sd_notify(0, message.c_str()) > 0;
}

std::optional<std::chrono::microseconds> watchdog_interval() {
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        return std::chrono::microseconds(usec);
    }
    return std::nullopt;
}

ActivatedSockets ActivatedSockets::from_environment() {
    ActivatedSockets sockets;
    char** names = nullptr;
    const int n = sd_listen_fds_with_names(1, &names);
    for (int i = 0; i < n; ++i) {
        const std::string name = names != nullptr && names[i] != nullptr ? names[i] : "unknown";
        sockets.fds_.emplace(name, SD_LISTEN_FDS_START + i);
    }
    if (names != nullptr) {
        for (int i = 0; i < n; ++i) {
            std::free(names[i]);
        }
        std::free(names);
    }
    return sockets;
}

ActivatedSockets::~ActivatedSockets() {
    for (const auto& [name, fd] : fds_) {
        ::close(fd);
    }
}

std::optional<int> ActivatedSockets::take(const std::string& name) {
    const auto it = fds_.find(name);
    if (it == fds_.end()) {
        return std::nullopt;
    }
    const int fd = it->second;
    fds_.erase(it);
    return fd;
}

std::vector<std::string> ActivatedSockets::names() const {
    std::vector<std::string> out;
    for (const auto& [name, fd] : fds_) {
        out.push_back(name);
    }
    return out;
}

}  // namespace rad::daemon
