#pragma once
// UniqueFd owns one POSIX file descriptor and closes it when dropped, like std::unique_ptr for memory.

#include <unistd.h>

#include <utility>

namespace rad {

class UniqueFd {
public:
    explicit UniqueFd(int fd = -1) noexcept : fd_(fd) {}
    UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept {
        reset(std::exchange(other.fd_, -1));
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    int get() const noexcept { return fd_; }
    bool valid() const noexcept { return fd_ >= 0; }
    // reset closes the descriptor held (if any) and takes `fd`.
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        fd_ = fd;
    }
    // release gives the descriptor up without closing it.
    int release() noexcept { return std::exchange(fd_, -1); }

private:
    int fd_;
};

}  // namespace rad
