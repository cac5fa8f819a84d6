#include "daemon/systemd/systemd.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>

#include "common/unique_fd.hpp"

// The two halves of the sd-daemon protocol the agent needs are small and stable (sd_notify(3),
// sd_listen_fds(3)): a datagram to $NOTIFY_SOCKET, and descriptors from 3 on described by $LISTEN_*.
// They are written here rather than taken from libsystemd, whose dependencies (libgcrypt, liblzma, libzstd,
// liblz4, libcap) would be loaded by every `credential-process` run and cost the fast path milliseconds.

namespace rad::systemd {

namespace {

constexpr int kListenFdsStart = 3;

std::optional<long long> env_number(const char* name) {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') {
        return std::nullopt;
    }
    long long number = 0;
    const char* end = value + std::strlen(value);
    const auto [ptr, ec] = std::from_chars(value, end, number);
    if (ec != std::errc() || ptr != end) {
        return std::nullopt;
    }
    return number;
}

// notify sends one sd_notify datagram, with `fd` attached (SCM_RIGHTS) when it is not -1.
bool notify(std::string_view state, int fd) {
    const char* path = std::getenv("NOTIFY_SOCKET");
    if (path == nullptr || (path[0] != '/' && path[0] != '@')) {
        return false;
    }
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    const std::size_t length = std::strlen(path);
    if (length >= sizeof(address.sun_path)) {
        return false;
    }
    std::memcpy(address.sun_path, path, length);
    if (address.sun_path[0] == '@') {
        address.sun_path[0] = '\0';  // abstract namespace
    }
    UniqueFd sock(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!sock.valid()) {
        return false;
    }
    iovec data{const_cast<char*>(state.data()), state.size()};
    msghdr message{};
    message.msg_name = &address;
    message.msg_namelen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length);
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (fd >= 0) {
        message.msg_control = control;
        message.msg_controllen = sizeof control;
        cmsghdr* header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(header), &fd, sizeof(int));
    }
    // Never blocking: a service manager that does not read its socket must not stall the event loop (a lost
    // STATUS= is replaced by the next one).
    return ::sendmsg(sock.get(), &message, MSG_NOSIGNAL | MSG_DONTWAIT) == static_cast<ssize_t>(state.size());
}

}  // namespace

bool notify_systemd(std::string_view state) {
    return notify(state, -1);
}

bool store_in_systemd(std::string_view name, std::string_view content) {
    const char* path = std::getenv("NOTIFY_SOCKET");
    if (path == nullptr) {
        return false;
    }
    // A sealed memfd: the content cannot change once systemd holds it, and it never touches a disk.
    UniqueFd memfd(::memfd_create("rolesanywhere-agent-handover", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!memfd.valid()) {
        return false;
    }
    std::string_view pending = content;
    while (!pending.empty()) {
        const ssize_t n = ::write(memfd.get(), pending.data(), pending.size());
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        pending.remove_prefix(static_cast<std::size_t>(n));
    }
    if (::fcntl(memfd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
        return false;
    }
    return keep_in_systemd(name, memfd.get());
}

bool keep_in_systemd(std::string_view name, int fd) {
    const std::string fdname = "FDNAME=" + std::string(name);
    notify("FDSTOREREMOVE=1\n" + fdname, -1);
    return notify("FDSTORE=1\n" + fdname, fd);
}

bool forget_in_systemd(std::string_view name) {
    return notify("FDSTOREREMOVE=1\nFDNAME=" + std::string(name), -1);
}

std::optional<Secret> read_stored(int fd, std::size_t limit) {
    Secret content;
    std::string& buffer = content.reveal_mutable();
    struct stat st {};
    if (::fstat(fd, &st) != 0 || st.st_size < 0 || static_cast<std::size_t>(st.st_size) > limit) {
        return std::nullopt;
    }
    buffer.resize(static_cast<std::size_t>(st.st_size));
    std::size_t done = 0;
    while (done < buffer.size()) {
        const ssize_t n = ::pread(fd, buffer.data() + done, buffer.size() - done, static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return std::nullopt;
        }
        done += static_cast<std::size_t>(n);
    }
    return content;
}

std::optional<std::chrono::microseconds> watchdog_interval() {
    const auto usec = env_number("WATCHDOG_USEC");
    if (!usec || *usec <= 0) {
        return std::nullopt;
    }
    // WATCHDOG_PID, when set, names the process meant (a child must not ping for its parent).
    if (const auto pid = env_number("WATCHDOG_PID"); pid && *pid != ::getpid()) {
        return std::nullopt;
    }
    return std::chrono::microseconds(*usec);
}

ActivatedSockets ActivatedSockets::from_environment() {
    ActivatedSockets sockets;
    const auto pid = env_number("LISTEN_PID");
    const auto count = env_number("LISTEN_FDS");
    const char* names = std::getenv("LISTEN_FDNAMES");
    const std::string name_list = names != nullptr ? names : "";
    if (pid && count && *pid == ::getpid() && *count > 0 && *count < 1024) {
        std::size_t start = 0;
        for (int i = 0; i < *count; ++i) {
            std::string name = "unknown";
            if (start <= name_list.size() && !name_list.empty()) {
                const auto colon = name_list.find(':', start);
                name =
                    name_list.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
                start = colon == std::string::npos ? name_list.size() + 1 : colon + 1;
                if (name.empty()) {
                    name = "unknown";
                }
            }
            const int fd = kListenFdsStart + i;
            ::fcntl(fd, F_SETFD, FD_CLOEXEC);
            sockets.fds_.emplace(name, fd);
        }
    }
    // Not for our children.
    ::unsetenv("LISTEN_PID");
    ::unsetenv("LISTEN_FDS");
    ::unsetenv("LISTEN_FDNAMES");
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

std::optional<int> ActivatedSockets::take_if(const std::function<bool(const std::string&, int)>& wanted) {
    for (auto it = fds_.begin(); it != fds_.end(); ++it) {
        if (wanted(it->first, it->second)) {
            const int fd = it->second;
            fds_.erase(it);
            return fd;
        }
    }
    return std::nullopt;
}

std::vector<std::string> ActivatedSockets::names() const {
    std::vector<std::string> out;
    for (const auto& [name, fd] : fds_) {
        out.push_back(name);
    }
    return out;
}

}  // namespace rad::systemd
