#include "daemon/agent/file_stamps.hpp"

#include <sys/stat.h>

namespace rad::daemon {

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
    return {stamp_of(identity.certificate),
            stamp_of(identity.private_key),
            stamp_of(identity.intermediates),
            stamp_of(identity.passphrase_file),
            stamp_of(identity.pin_file),
            stamp_of(identity.tpm_key_password_file),
            stamp_of(identity.tpm_parent_password_file)};
}

}  // namespace rad::daemon
