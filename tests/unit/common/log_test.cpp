// Log lines: typed field values in text and JSON, the timestamp outside the journal, and the journal check.
#include "common/log.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

namespace rad {
namespace {

using namespace std::chrono;
using SystemTime = std::chrono::system_clock::time_point;

const SystemTime kTime = time_point_cast<system_clock::duration>(
    sys_days{year{2025} / month{5} / day{1}} + hours{10} + minutes{2} + seconds{3} + milliseconds{45});

TEST(FormatLogLine, NumbersAndBooleansAreJsonValuesAndPlainText) {
    struct Row {
        LogField field;
        const char* text;  // after "<6>event=e "
        const char* json;  // after {"level":"info","event":"e",
    };
    const Row rows[] = {
        {{"retry_in", 418}, "retry_in=418", R"("retry_in":418})"},
        {{"n", -3}, "n=-3", R"("n":-3})"},
        {{"n", std::size_t{7}}, "n=7", R"("n":7})"},
        {{"n", std::numeric_limits<std::int64_t>::min()},
         "n=-9223372036854775808",
         R"("n":-9223372036854775808})"},
        {{"n", std::numeric_limits<std::uint64_t>::max()},
         "n=18446744073709551615",
         R"("n":18446744073709551615})"},
        {{"seconds", 0.25}, "seconds=0.25", R"("seconds":0.25})"},
        {{"seconds", 1.0 / 3}, "seconds=0.3333333333333333", R"("seconds":0.3333333333333333})"},
        {{"fresh", true}, "fresh=true", R"("fresh":true})"},
        {{"fresh", false}, "fresh=false", R"("fresh":false})"},
        // Text stays text, even when it looks like a number.
        {{"s", "418"}, "s=418", R"("s":"418"})"},
        {{"s", std::string("a b")}, R"(s="a b")", R"("s":"a b"})"},
        {{"s", std::string_view("v")}, "s=v", R"("s":"v"})"},
        {{"s", ""}, R"(s="")", R"("s":""})"},
    };
    for (const auto& row : rows) {
        EXPECT_EQ(format_log_line(LogLevel::info, LogFormat::text, "e", {row.field}),
                  std::string("<6>event=e ") + row.text);
        EXPECT_EQ(format_log_line(LogLevel::info, LogFormat::json, "e", {row.field}),
                  std::string(R"({"level":"info","event":"e",)") + row.json);
    }
}

TEST(FormatLogLine, TimestampLeadsTextAndOpensJson) {
    struct Row {
        LogFormat format;
        std::optional<SystemTime> time;
        const char* line;
    };
    const Row rows[] = {
        {LogFormat::text, kTime, "2025-05-01T10:02:03.045Z <4>event=e n=1"},
        {LogFormat::json, kTime,
         R"({"time":"2025-05-01T10:02:03.045Z","level":"warning","event":"e","n":1})"},
        {LogFormat::text, std::nullopt, "<4>event=e n=1"},
        {LogFormat::json, std::nullopt, R"({"level":"warning","event":"e","n":1})"},
    };
    for (const auto& row : rows) {
        EXPECT_EQ(format_log_line(LogLevel::warning, row.format, "e", {{"n", 1}}, row.time), row.line);
    }
}

TEST(JournalStream, MatchesOnlyTheSameDeviceAndInode) {
    struct Row {
        const char* variable;
        std::uint64_t device, inode;
        bool journal;
    };
    const Row rows[] = {
        {"8:1234", 8, 1234, true},    {"64769:4294967296", 64769, 4294967296, true},
        {"8:1234", 8, 1235, false},   {"8:1234", 9, 1234, false},
        {"", 8, 1234, false},         {"8", 8, 1234, false},
        {"8:", 8, 1234, false},       {":1234", 8, 1234, false},
        {"8:1234:1", 8, 1234, false}, {"8:1234 ", 8, 1234, false},
        {"+8:1234", 8, 1234, false},  {"x:1234", 8, 1234, false},
    };
    for (const auto& row : rows) {
        EXPECT_EQ(is_journal_stream(row.variable, row.device, row.inode), row.journal) << row.variable;
    }
}

// EnvironmentVariable sets (or unsets) a variable for one scope.
class EnvironmentVariable {
public:
    EnvironmentVariable(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) {
            old_ = old;
        }
        value != nullptr ? ::setenv(name, value, 1) : ::unsetenv(name);
    }
    ~EnvironmentVariable() { old_ ? ::setenv(name_, old_->c_str(), 1) : ::unsetenv(name_); }
    EnvironmentVariable(const EnvironmentVariable&) = delete;
    EnvironmentVariable& operator=(const EnvironmentVariable&) = delete;

private:
    const char* name_;
    std::optional<std::string> old_;
};

std::vector<std::string> lines_of(std::FILE* file) {
    std::rewind(file);
    std::vector<std::string> lines;
    std::string line;
    for (int c = std::fgetc(file); c != EOF; c = std::fgetc(file)) {
        if (c == '\n') {
            lines.push_back(line);
            line.clear();
        } else {
            line.push_back(static_cast<char>(c));
        }
    }
    return lines;
}

TEST(Logger, TimestampsOnlyWhenStderrIsNotTheJournalStream) {
    std::FILE* file = std::tmpfile();
    ASSERT_NE(file, nullptr);
    struct stat st {};
    ASSERT_EQ(::fstat(::fileno(file), &st), 0);
    const std::string own = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
    {
        EnvironmentVariable journal("JOURNAL_STREAM", own.c_str());
        Logger(LogLevel::info, LogFormat::text, file).info("in_journal", {{"n", 1}});
        Logger(LogLevel::info, LogFormat::json, file).info("in_journal");
    }
    {
        // The variable is inherited: a process whose stderr was redirected elsewhere is not in the journal.
        EnvironmentVariable journal("JOURNAL_STREAM", "1:1");
        Logger(LogLevel::info, LogFormat::text, file).info("redirected");
    }
    {
        EnvironmentVariable journal("JOURNAL_STREAM", nullptr);
        Logger(LogLevel::info, LogFormat::json, file).info("terminal");
    }
    const auto lines = lines_of(file);
    std::fclose(file);
    ASSERT_EQ(lines.size(), 4u);
    EXPECT_EQ(lines[0], "<6>event=in_journal n=1");
    EXPECT_EQ(lines[1], R"({"level":"info","event":"in_journal"})");
    const std::string stamp = R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)";
    EXPECT_TRUE(std::regex_match(lines[2], std::regex(stamp + " <6>event=redirected"))) << lines[2];
    EXPECT_TRUE(std::regex_match(
        lines[3], std::regex(R"(\{"time":")" + stamp + R"(","level":"info","event":"terminal"\})")))
        << lines[3];
}

TEST(Logger, LevelChangesWhileAnotherThreadLogs) {
    // Reload changes the level on the event loop while the key pool logs; under ThreadSanitizer a plain
    // member would be reported here.
    std::FILE* file = std::tmpfile();
    ASSERT_NE(file, nullptr);
    Logger log(LogLevel::info, LogFormat::text, file);
    std::thread worker([&log] {
        for (int i = 0; i < 2000; ++i) {
            log.debug("tick", {{"i", i}});
        }
    });
    for (int i = 0; i < 2000; ++i) {
        log.set_level(i % 2 == 0 ? LogLevel::debug : LogLevel::error);
    }
    worker.join();
    log.set_level(LogLevel::error);
    EXPECT_FALSE(log.enabled(LogLevel::warning));
    EXPECT_TRUE(log.enabled(LogLevel::error));
    for (const auto& line : lines_of(file)) {
        EXPECT_TRUE(line.find("<7>event=tick i=") != std::string::npos) << line;
    }
    std::fclose(file);
}

TEST(LogLine, KeyValueWithJournaldPriority) {
    EXPECT_EQ(format_log_line(LogLevel::warning, LogFormat::text, "refresh_failed",
                              {{"profile", "web"}, {"error", "HTTP 500: \"boom\""}, {"empty", ""}}),
              R"(<4>event=refresh_failed profile=web error="HTTP 500: \"boom\"" empty="")");
    EXPECT_EQ(format_log_line(LogLevel::info, LogFormat::text, "x", {{"k", "a=b"}}), R"(<6>event=x k="a=b")");
    // A value with a newline cannot forge a second log line.
    EXPECT_EQ(format_log_line(LogLevel::error, LogFormat::text, "x", {{"k", "a\nevent=fake"}}),
              R"(<3>event=x k="a?event=fake")");
}

TEST(LogLine, Json) {
    EXPECT_EQ(format_log_line(LogLevel::debug, LogFormat::json, "started", {{"profiles", "2"}}),
              R"({"level":"debug","event":"started","profiles":"2"})");
}

}  // namespace
}  // namespace rad
