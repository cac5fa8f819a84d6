#include "common/file_read.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace rad {
namespace {

namespace fs = std::filesystem;

class FileReadTest : public ::testing::Test {
protected:
    void SetUp() override {
        std::string pattern = (fs::temp_directory_path() / "rad-file-read-XXXXXX").string();
        ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
        dir_ = pattern;
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    fs::path write(const std::string& name, const std::string& contents, mode_t mode) {
        const fs::path path = dir_ / name;
        std::ofstream(path, std::ios::binary) << contents;
        EXPECT_EQ(::chmod(path.c_str(), mode), 0);
        return path;
    }
    fs::path dir_;
};

TEST_F(FileReadTest, ReadsPublicAndSecretFiles) {
    const auto pub = write("cert.pem", "certificate\n", 0644);
    auto text = read_public_file(pub);
    ASSERT_TRUE(text);
    EXPECT_EQ(text.value(), "certificate\n");

    const auto key = write("key.pem", "secret bytes", 0600);
    auto secret = read_secret_file(key, {});
    ASSERT_TRUE(secret) << secret.error().message;
    EXPECT_EQ(secret.value().reveal(), "secret bytes");
    // Owner read-only is as good as 0600.
    ASSERT_EQ(::chmod(key.c_str(), 0400), 0);
    EXPECT_TRUE(read_secret_file(key, {}));
}

TEST_F(FileReadTest, MissingFile) {
    const auto path = dir_ / "absent.pem";
    auto pub = read_public_file(path);
    ASSERT_FALSE(pub);
    EXPECT_EQ(pub.error().code, Errc::input_missing);
    EXPECT_NE(pub.error().message.find(path.string()), std::string::npos);
    auto secret = read_secret_file(path, {});
    ASSERT_FALSE(secret);
    EXPECT_EQ(secret.error().code, Errc::input_missing);
}

TEST_F(FileReadTest, DirectoryIsNotAFile) {
    auto pub = read_public_file(dir_);
    ASSERT_FALSE(pub);
    EXPECT_EQ(pub.error().code, Errc::input_invalid);
    EXPECT_NE(pub.error().message.find("not a regular file"), std::string::npos);
    auto secret = read_secret_file(dir_, {});
    ASSERT_FALSE(secret);
    EXPECT_EQ(secret.error().code, Errc::input_invalid);
}

TEST_F(FileReadTest, SymlinkFollowedWhenOnlyRootOrWeCanChangeIt) {
    const auto target = write("key.pem", "k", 0600);
    const auto link = dir_ / "link.pem";
    fs::create_symlink("key.pem", link);
    auto secret = read_secret_file(link, {});
    ASSERT_TRUE(secret) << secret.error().message;
    EXPECT_EQ(secret.value().reveal(), "k");
    // A link owned by another user names whatever that user chooses.
    ASSERT_EQ(::lchown(link.c_str(), 65534, 65534), 0);
    secret = read_secret_file(link, {});
    ASSERT_FALSE(secret);
    EXPECT_EQ(secret.error().code, Errc::unsafe_permissions);
    EXPECT_NE(secret.error().message.find("symbolic link " + link.string() + " is owned by uid 65534"),
              std::string::npos)
        << secret.error().message;
    EXPECT_TRUE(read_secret_file(link, SecretFilePolicy{true}));
    EXPECT_TRUE(read_public_file(link));
    // The file the link resolves to is judged as if named directly.
    ASSERT_EQ(::lchown(link.c_str(), ::geteuid(), ::getegid()), 0);
    ASSERT_EQ(::chmod(target.c_str(), 0644), 0);
    secret = read_secret_file(link, {});
    ASSERT_FALSE(secret);
    EXPECT_NE(secret.error().message.find("permissions 0644"), std::string::npos) << secret.error().message;
}

// The layout of a Kubernetes Secret volume: the volume's root (a sticky tmpfs), the files in a timestamped
// directory, `..data` a link to it, and each key a link into `..data`. The kubelet updates it by writing a
// new timestamped directory and renaming a new `..data` link over the old one.
TEST_F(FileReadTest, KubernetesSecretVolumeLayoutIsRead) {
    const fs::path volume = dir_ / "tls";
    ASSERT_TRUE(fs::create_directory(volume));
    ASSERT_TRUE(fs::create_directory(volume / "..2026_12_01_10_00_00.000000001"));
    std::ofstream(volume / "..2026_12_01_10_00_00.000000001" / "tls.key") << "first";
    ASSERT_EQ(::chmod((volume / "..2026_12_01_10_00_00.000000001" / "tls.key").c_str(), 0400), 0);
    fs::create_symlink("..2026_12_01_10_00_00.000000001", volume / "..data");
    fs::create_symlink("..data/tls.key", volume / "tls.key");
    ASSERT_EQ(::chmod(volume.c_str(), 01777), 0);
    auto secret = read_secret_file(volume / "tls.key", {});
    ASSERT_TRUE(secret) << secret.error().message;
    EXPECT_EQ(secret.value().reveal(), "first");

    ASSERT_TRUE(fs::create_directory(volume / "..2026_12_01_11_00_00.000000002"));
    std::ofstream(volume / "..2026_12_01_11_00_00.000000002" / "tls.key") << "second";
    ASSERT_EQ(::chmod((volume / "..2026_12_01_11_00_00.000000002" / "tls.key").c_str(), 0400), 0);
    fs::create_symlink("..2026_12_01_11_00_00.000000002", volume / "..data_tmp");
    fs::rename(volume / "..data_tmp", volume / "..data");
    secret = read_secret_file(volume / "tls.key", {});
    ASSERT_TRUE(secret) << secret.error().message;
    EXPECT_EQ(secret.value().reveal(), "second");

    // Without the sticky bit, anyone may replace the links of a world-writable volume root.
    ASSERT_EQ(::chmod(volume.c_str(), 0777), 0);
    secret = read_secret_file(volume / "tls.key", {});
    ASSERT_FALSE(secret);
    EXPECT_EQ(secret.error().code, Errc::unsafe_permissions);
    EXPECT_NE(secret.error().message.find("the directory " + volume.string() +
                                          " on its way (through a symbolic link) is writable"),
              std::string::npos)
        << secret.error().message;
    // Group-writable is refused too once a link is followed (the plain path rule leaves it to the admin).
    ASSERT_EQ(::chmod(volume.c_str(), 0770), 0);
    EXPECT_FALSE(read_secret_file(volume / "tls.key", {}));
    ASSERT_EQ(::chmod(volume.c_str(), 0755), 0);
    EXPECT_TRUE(read_secret_file(volume / "tls.key", {}));
}

TEST_F(FileReadTest, EveryDirectoryReachedThroughALinkIsChecked) {
    // key.pem -> elsewhere/deep/key.pem, where `elsewhere` belongs to another user.
    const fs::path elsewhere = dir_ / "elsewhere";
    fs::create_directories(elsewhere / "deep");
    std::ofstream(elsewhere / "deep" / "key.pem") << "k";
    ASSERT_EQ(::chmod((elsewhere / "deep" / "key.pem").c_str(), 0600), 0);
    fs::create_symlink(elsewhere / "deep" / "key.pem", dir_ / "key.pem");  // an absolute target
    EXPECT_TRUE(read_secret_file(dir_ / "key.pem", {}));
    ASSERT_EQ(::chown(elsewhere.c_str(), 65534, 65534), 0);
    auto secret = read_secret_file(dir_ / "key.pem", {});
    ASSERT_FALSE(secret);
    EXPECT_NE(secret.error().message.find("the directory " + elsewhere.string() +
                                          " on its way (through a symbolic link) is owned by uid 65534"),
              std::string::npos)
        << secret.error().message;
    ASSERT_EQ(::chown(elsewhere.c_str(), ::geteuid(), ::getegid()), 0);
    // A relative target climbing with "..", and a chain of links.
    fs::create_directory(dir_ / "sub");
    fs::create_symlink("../elsewhere/deep", dir_ / "sub" / "up");
    fs::create_symlink("sub/up/key.pem", dir_ / "chain.pem");
    secret = read_secret_file(dir_ / "chain.pem", {});
    ASSERT_TRUE(secret) << secret.error().message;
    EXPECT_EQ(secret.value().reveal(), "k");
    ASSERT_EQ(::chmod((dir_ / "sub").c_str(), 0777), 0);
    secret = read_secret_file(dir_ / "chain.pem", {});
    ASSERT_FALSE(secret);
    EXPECT_NE(secret.error().message.find(" on its way (through a symbolic link) is writable"),
              std::string::npos)
        << secret.error().message;
}

TEST_F(FileReadTest, LinkLoopsAndDanglingLinks) {
    fs::create_symlink("b", dir_ / "a");
    fs::create_symlink("a", dir_ / "b");
    auto secret = read_secret_file(dir_ / "a", {});
    ASSERT_FALSE(secret);
    EXPECT_EQ(secret.error().code, Errc::input_missing);
    EXPECT_NE(secret.error().message.find(std::strerror(ELOOP)), std::string::npos) << secret.error().message;
    fs::create_symlink("absent.pem", dir_ / "dangling.pem");
    secret = read_secret_file(dir_ / "dangling.pem", {});
    ASSERT_FALSE(secret);
    EXPECT_EQ(secret.error().code, Errc::input_missing);
    fs::create_symlink(dir_, dir_ / "to-dir");
    secret = read_secret_file(dir_ / "to-dir", {});
    ASSERT_FALSE(secret);
    EXPECT_EQ(secret.error().code, Errc::input_invalid);
}

TEST_F(FileReadTest, RelativeAndOddPathsResolveAsTheKernelDoes) {
    write("key.pem", "k", 0600);
    fs::create_directory(dir_ / "sub");
    const auto cwd = fs::current_path();
    fs::current_path(dir_ / "sub");
    EXPECT_TRUE(read_secret_file("../key.pem", {}));
    EXPECT_TRUE(read_secret_file(".//..//./key.pem", {}));
    fs::current_path(dir_);
    EXPECT_TRUE(read_secret_file("key.pem", {}));
    EXPECT_TRUE(read_secret_file("./key.pem", {}));
    EXPECT_EQ(read_secret_file("key.pem/", {}).error().code, Errc::input_missing);  // ENOTDIR
    EXPECT_EQ(read_secret_file("", {}).error().code, Errc::input_missing);
    EXPECT_EQ(read_secret_file("/", {}).error().code, Errc::input_invalid);
    fs::current_path(cwd);
}

struct FileCase {
    const char* name;
    FileFacts file;
    ProcessIdentity self;
    SecretFilePolicy policy;
    const char* refusal;  // a part of the refusal's text, or nullptr when accepted
};

TEST(SecretFileRefusal, Table) {
    constexpr ProcessIdentity agent{65532, 65532};
    constexpr ProcessIdentity root{0, 0};
    constexpr SecretFilePolicy strict{};
    constexpr SecretFilePolicy shared{.allow_group_read = true};
    const FileCase cases[] = {
        {"own 0600", {65532, 65532, S_IFREG | 0600}, agent, strict, nullptr},
        {"own 0400", {65532, 1000, S_IFREG | 0400}, agent, strict, nullptr},
        {"own 0700", {65532, 65532, S_IFREG | 0700}, agent, strict, nullptr},
        {"root's 0400 (LoadCredential)", {0, 0, S_IFREG | 0400}, agent, strict, nullptr},
        {"another user's",
         {1000, 65532, S_IFREG | 0400},
         agent,
         strict,
         "owned by uid 1000, which is neither"},
        {"own 0640", {65532, 65532, S_IFREG | 0640}, agent, strict, "permissions 0640 are too open"},
        {"own 0604", {65532, 65532, S_IFREG | 0604}, agent, strict, "run chmod 600 on it"},
        // A Secret volume with defaultMode 0440 (or 0640) and fsGroup = the agent's group.
        {"secret volume 0440 root:agent", {0, 65532, S_IFREG | 0440}, agent, strict, nullptr},
        {"secret volume 0640 root:agent", {0, 65532, S_IFREG | 0640}, agent, strict, nullptr},
        {"secret volume 0400 root:agent", {0, 65532, S_IFREG | 0400}, agent, strict, nullptr},
        // The kubelet's default (0644) and its variants, with what to set.
        {"secret volume default 0644 root:root",
         {0, 0, S_IFREG | 0644},
         agent,
         strict,
         "permissions 0644 with group 0 are too open (group or others may access it); run chmod 600 on it, "
         "or "
         "for a Kubernetes Secret volume set defaultMode: 0440 and fsGroup: 65532 (the agent's group)"},
        {"fsGroup set, defaultMode not", {0, 65532, S_IFREG | 0644}, agent, strict, "defaultMode: 0440"},
        {"defaultMode set, fsGroup another group",
         {0, 2000, S_IFREG | 0440},
         agent,
         strict,
         "with group 2000 are too open"},
        {"group may write", {0, 65532, S_IFREG | 0460}, agent, strict, "0460"},
        {"group may execute", {0, 65532, S_IFREG | 0450}, agent, strict, "0450"},
        {"others may execute", {0, 65532, S_IFREG | 0441}, agent, strict, "0441"},
        {"group 0 is never the agent's own",
         {0, 0, S_IFREG | 0440},
         ProcessIdentity{65532, 0},
         strict,
         "set defaultMode: 0440 and runAsGroup and fsGroup to a group of the agent's own, not 0"},
        {"the exception needs a root-owned file", {65532, 65532, S_IFREG | 0440}, agent, strict, "0440"},
        {"root running: no Kubernetes hint",
         {0, 0, S_IFREG | 0640},
         root,
         strict,
         "permissions 0640 are too open (group or others may access it); run chmod 600 on it"},
        {"root running: its own group's 0440 is not private", {0, 0, S_IFREG | 0440}, root, strict, "0440"},
        // The container endpoint's token, shared with a group on purpose.
        {"token 0640 root:any", {0, 1234, S_IFREG | 0640}, agent, shared, nullptr},
        {"token 0440 own", {65532, 1234, S_IFREG | 0440}, agent, shared, nullptr},
        {"token 0660", {0, 1234, S_IFREG | 0660}, agent, shared, "run chmod 640 on it"},
        {"token 0644", {0, 1234, S_IFREG | 0644}, agent, shared, "others may access it"},
        {"token owned by another user", {1000, 1234, S_IFREG | 0400}, agent, shared, "owned by uid 1000"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        const auto refusal = secret_file_refusal(c.file, c.self, c.policy);
        if (c.refusal == nullptr) {
            EXPECT_FALSE(refusal) << *refusal;
        } else {
            ASSERT_TRUE(refusal);
            EXPECT_NE(refusal->find(c.refusal), std::string::npos) << *refusal;
            EXPECT_EQ(refusal->find('\n'), std::string::npos);
        }
    }
}

struct DirectoryCase {
    const char* name;
    FileFacts directory;
    bool through_link;
    const char* refusal;
};

TEST(DirectoryRefusal, Table) {
    constexpr ProcessIdentity agent{65532, 65532};
    const DirectoryCase cases[] = {
        {"root 0755", {0, 0, S_IFDIR | 0755}, false, nullptr},
        {"own 0700", {65532, 65532, S_IFDIR | 0700}, false, nullptr},
        {"others may write",
         {0, 0, S_IFDIR | 0777},
         false,
         "its directory /d is writable by others; run chmod o-w"},
        {"others may write, sticky (/tmp)", {0, 0, S_IFDIR | 01777}, false, nullptr},
        {"group may write: the admin's choice", {0, 1000, S_IFDIR | 0775}, false, nullptr},
        {"another user's: not judged on a plain path", {1000, 1000, S_IFDIR | 0755}, false, nullptr},
        // Through a symbolic link.
        {"link: root 0755", {0, 0, S_IFDIR | 0755}, true, nullptr},
        {"link: a Secret volume's root, sticky tmpfs", {0, 0, S_IFDIR | 01777}, true, nullptr},
        {"link: a Secret volume's root with fsGroup", {0, 65532, S_IFDIR | 03777}, true, nullptr},
        {"link: a Secret volume's data directory with fsGroup", {0, 65532, S_IFDIR | 02755}, true, nullptr},
        {"link: own 0700", {65532, 65532, S_IFDIR | 0700}, true, nullptr},
        {"link: another user's",
         {1000, 1000, S_IFDIR | 0755},
         true,
         "on its way (through a symbolic link) is owned by uid 1000"},
        {"link: group may write",
         {0, 1000, S_IFDIR | 0775},
         true,
         "writable by its group or others; run chmod go-w"},
        {"link: others may write", {0, 0, S_IFDIR | 0757}, true, "writable by its group or others"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        const auto refusal = directory_refusal("/d", c.directory, agent, c.through_link);
        if (c.refusal == nullptr) {
            EXPECT_FALSE(refusal) << *refusal;
        } else {
            ASSERT_TRUE(refusal);
            EXPECT_NE(refusal->find(c.refusal), std::string::npos) << *refusal;
        }
    }
}

TEST(UnreadableHint, NamesTheFsGroupToSet) {
    constexpr ProcessIdentity agent{65532, 65532};
    EXPECT_EQ(
        unreadable_hint({0, 0, S_IFREG | 0440}, agent),
        "owned by root with group 0 and permissions 0440; this process runs as uid 65532, gid 65532: for a "
        "Kubernetes Secret volume set defaultMode: 0440 and fsGroup: 65532");
    const auto group_zero = unreadable_hint({0, 0, S_IFREG | 0400}, ProcessIdentity{65532, 0});
    ASSERT_TRUE(group_zero);
    EXPECT_NE(group_zero->find("a group of its own"), std::string::npos);
    EXPECT_FALSE(unreadable_hint({0, 65532, S_IFREG | 0400}, agent));  // its group: the mode is the matter
    EXPECT_FALSE(unreadable_hint({1000, 0, S_IFREG | 0400}, agent));   // another user's file
    EXPECT_FALSE(unreadable_hint({0, 0, S_IFREG | 0400}, ProcessIdentity{0, 0}));
}

TEST(LinkRefusal, Table) {
    constexpr ProcessIdentity agent{65532, 65532};
    EXPECT_FALSE(link_refusal("/d/l", {0, 0, S_IFLNK | 0777}, agent));
    EXPECT_FALSE(link_refusal("/d/l", {65532, 0, S_IFLNK | 0777}, agent));
    const auto refusal = link_refusal("/d/l", {1000, 0, S_IFLNK | 0777}, agent);
    ASSERT_TRUE(refusal);
    EXPECT_EQ(*refusal,
              "the symbolic link /d/l is owned by uid 1000, which is neither this user nor root; point at "
              "the key file itself");
}

TEST_F(FileReadTest, GroupOrOtherAccessRefused) {
    for (mode_t mode : {0640, 0604, 0644, 0660, 0602, 0610, 0601}) {
        SCOPED_TRACE(mode);
        const auto path = write("key.pem", "k", mode);
        auto secret = read_secret_file(path, {});
        ASSERT_FALSE(secret);
        EXPECT_EQ(secret.error().code, Errc::unsafe_permissions);
        EXPECT_NE(secret.error().message.find(path.string()), std::string::npos);
        EXPECT_TRUE(read_secret_file(path, SecretFilePolicy{true}));
        EXPECT_TRUE(read_public_file(path));
    }
    const auto path = write("key.pem", "k", 0640);
    EXPECT_NE(read_secret_file(path, {}).error().message.find("0640"), std::string::npos);
}

TEST_F(FileReadTest, GroupReadAdmittedOnlyWhereAllowed) {
    SecretFilePolicy shared;
    shared.allow_group_read = true;
    for (mode_t mode : {0400, 0440, 0600, 0640}) {
        SCOPED_TRACE(mode);
        EXPECT_TRUE(read_secret_file(write("token", "t", mode), shared));
    }
    for (mode_t mode : {0660, 0644, 0604, 0650, 0641}) {
        SCOPED_TRACE(mode);
        auto secret = read_secret_file(write("token", "t", mode), shared);
        ASSERT_FALSE(secret);
        EXPECT_EQ(secret.error().code, Errc::unsafe_permissions);
        EXPECT_NE(secret.error().message.find("chmod 640"), std::string::npos);
    }
}

TEST_F(FileReadTest, DirectoryWritableByOthersRefusedUnlessSticky) {
    const auto path = write("key.pem", "k", 0600);
    ASSERT_EQ(::chmod(dir_.c_str(), 0777), 0);
    auto secret = read_secret_file(path, {});
    ASSERT_FALSE(secret);
    EXPECT_EQ(secret.error().code, Errc::unsafe_permissions);
    EXPECT_NE(secret.error().message.find("writable by others"), std::string::npos);
    EXPECT_TRUE(read_secret_file(path, SecretFilePolicy{true}));
    EXPECT_TRUE(read_public_file(path));
    // Sticky (like /tmp): others cannot replace a file they do not own. Group-writable is left to the admin.
    for (mode_t mode : {01777, 0775, 0755, 0700}) {
        SCOPED_TRACE(mode);
        ASSERT_EQ(::chmod(dir_.c_str(), mode), 0);
        EXPECT_TRUE(read_secret_file(path, {}));
    }
}

TEST_F(FileReadTest, SizeCap) {
    const auto exact = write("exact.pem", std::string(kMaxInputFileBytes, 'a'), 0600);
    auto ok = read_public_file(exact);
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok.value().size(), kMaxInputFileBytes);
    const auto big = write("big.pem", std::string(kMaxInputFileBytes + 1, 'a'), 0600);
    auto pub = read_public_file(big);
    ASSERT_FALSE(pub);
    EXPECT_EQ(pub.error().code, Errc::input_invalid);
    EXPECT_NE(pub.error().message.find("larger than"), std::string::npos);
    auto secret = read_secret_file(big, {});
    ASSERT_FALSE(secret);
    EXPECT_EQ(secret.error().code, Errc::input_invalid);
}

TEST_F(FileReadTest, PassphraseFileStripsOneNewline) {
    EXPECT_EQ(read_passphrase_file(write("a", "pass\n", 0600), {}).value().reveal(), "pass");
    EXPECT_EQ(read_passphrase_file(write("b", "pass\r\n", 0600), {}).value().reveal(), "pass");
    EXPECT_EQ(read_passphrase_file(write("c", "pass\n\n", 0600), {}).value().reveal(), "pass\n");
    EXPECT_EQ(read_passphrase_file(write("d", "pass", 0600), {}).value().reveal(), "pass");
    EXPECT_EQ(read_passphrase_file(write("e", " pass \n", 0600), {}).value().reveal(), " pass ");
    auto loose = read_passphrase_file(write("f", "pass\n", 0644), {});
    ASSERT_FALSE(loose);
    EXPECT_EQ(loose.error().code, Errc::unsafe_permissions);
}

}  // namespace
}  // namespace rad
