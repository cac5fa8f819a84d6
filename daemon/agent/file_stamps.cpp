#include "daemon/agent/file_stamps.hpp"

#include <sys/stat.h>

#include "config/settings.hpp"

namespace rad::agent {

FileStamp stamp_of(const std::string& path) {
    FileStamp stamp;
    struct stat st {};
    if (path.empty() || ::stat(path.c_str(), &st) != 0) {
        return stamp;
    }
    stamp.device = st.st_dev;
    stamp.inode = st.st_ino;
    stamp.size = st.st_size;
    stamp.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    stamp.ctime_ns = static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
    stamp.exists = true;
    return stamp;
}

std::vector<FileStamp> identity_stamps(const config::IdentitySpec& identity) {
    std::vector<FileStamp> stamps;
    for (const auto& file : config::identity_files(identity)) {
        stamps.push_back(stamp_of(file.string()));
    }
    return stamps;
}

}  // namespace rad::agent
