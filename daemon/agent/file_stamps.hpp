#pragma once
// FileStamp identifies one version of a file, so that the agent notices a renewal by looking: a rename over
// the file, a rewrite in place, or a symbolic link (or a directory link on its way, as a Kubernetes Secret
// volume swaps its `..data`) pointed elsewhere all change it.

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "config/identity_spec.hpp"

namespace rad::agent {

struct FileStamp {
    dev_t device = 0;
    ino_t inode = 0;
    off_t size = 0;
    std::int64_t mtime_ns = 0;
    std::int64_t ctime_ns = 0;
    bool exists = false;
    bool operator==(const FileStamp&) const = default;
};

// stamp_of stats `path`, following links; a missing file (or an empty path) has the default stamp.
FileStamp stamp_of(const std::string& path);

// identity_stamps are the stamps of every file an identity is loaded from, in a fixed order.
std::vector<FileStamp> identity_stamps(const config::IdentitySpec& identity);

}  // namespace rad::agent
