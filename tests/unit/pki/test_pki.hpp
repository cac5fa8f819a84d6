#pragma once
// Shared helpers of the pki tests: paths into the generated test PKI and a scratch directory.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace rad::pki::test {

inline std::filesystem::path pki_dir() {
    const char* dir = std::getenv("RAD_TEST_PKI");
    if (dir == nullptr) {
        throw std::runtime_error("RAD_TEST_PKI is not set (run the tests through ctest)");
    }
    return dir;
}

inline std::filesystem::path pki(const std::string& name) {
    return pki_dir() / name;
}

inline std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

// serials reads serials.json, a flat {"name": "decimal"} object written by make-test-pki: the quoted strings
// alternate between names and values.
inline std::map<std::string, std::string> serials() {
    const std::string text = read_file(pki("serials.json"));
    std::vector<std::string> strings;
    for (std::size_t open = text.find('"'); open != std::string::npos; open = text.find('"', open)) {
        const std::size_t close = text.find('"', open + 1);
        if (close == std::string::npos) {
            throw std::runtime_error("serials.json: unterminated string");
        }
        strings.push_back(text.substr(open + 1, close - open - 1));
        open = close + 1;
    }
    if (strings.size() % 2 != 0) {
        throw std::runtime_error("serials.json: not a flat object of strings");
    }
    std::map<std::string, std::string> out;
    for (std::size_t i = 0; i < strings.size(); i += 2) {
        out[strings[i]] = strings[i + 1];
    }
    return out;
}

// ScratchDir is a private temporary directory, removed with its contents at the end of the test.
class ScratchDir {
public:
    ScratchDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "rad-pki-test-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        path_ = pattern;
    }
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;
    ~ScratchDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    // copy puts a copy of a test PKI file here with the given mode.
    std::filesystem::path copy(const std::string& name, std::filesystem::perms mode) const {
        const auto target = path_ / name;
        std::filesystem::copy_file(pki(name), target);
        std::filesystem::permissions(target, mode);
        return target;
    }
    std::filesystem::path write(const std::string& name,
                                const std::string& contents,
                                std::filesystem::perms mode) const {
        const auto target = path_ / name;
        std::ofstream(target, std::ios::binary) << contents;
        std::filesystem::permissions(target, mode);
        return target;
    }
    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

constexpr auto kOwnerOnly = std::filesystem::perms::owner_read | std::filesystem::perms::owner_write;
constexpr auto kWorldReadable =
    kOwnerOnly | std::filesystem::perms::group_read | std::filesystem::perms::others_read;

}  // namespace rad::pki::test
