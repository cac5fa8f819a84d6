// The Errc table: one row per Errc, and every property of an Errc read from it.

#include "common/error.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace rad {
namespace {

TEST(ErrcTable, EveryErrcHasExactlyOneRow) {
    const auto table = errc_table();
    int codes = 0;
    for (int i = static_cast<int>(Errc::usage); i <= static_cast<int>(Errc::internal); ++i, ++codes) {
        const auto code = static_cast<Errc>(i);
        int rows = 0;
        for (const ErrcRow& row : table) {
            rows += row.code == code ? 1 : 0;
        }
        EXPECT_EQ(rows, 1) << "Errc " << i;
    }
    EXPECT_EQ(table.size(), static_cast<std::size_t>(codes));
}

TEST(ErrcTable, NamesAreDistinctSnakeCaseAndRoundTrip) {
    std::set<std::string> names;
    for (const ErrcRow& row : errc_table()) {
        const std::string name = row.name;
        EXPECT_TRUE(names.insert(name).second) << name << " twice";
        EXPECT_FALSE(name.empty());
        EXPECT_EQ(name.find_first_not_of("abcdefghijklmnopqrstuvwxyz_"), std::string::npos) << name;
        EXPECT_EQ(errc_name(row.code), name);
        EXPECT_EQ(errc_from_name(name), row.code) << name;
    }
    for (const char* unknown : {"", "no_such_class", "Internal", "usage ", "upstream_throttled\n"}) {
        EXPECT_EQ(errc_from_name(unknown), Errc::internal) << unknown;
    }
}

TEST(ErrcTable, FunctionsReadTheTable) {
    for (const ErrcRow& row : errc_table()) {
        EXPECT_EQ(exit_code(row.code), row.exit_code) << row.name;
        EXPECT_EQ(is_retryable(row.code), row.retryable) << row.name;
        // sysexits(3): EX_USAGE (64) to EX_CONFIG (78); 0 and 1 would look like success or a crash.
        EXPECT_GE(row.exit_code, 64) << row.name;
        EXPECT_LE(row.exit_code, 78) << row.name;
    }
}

TEST(ErrcTable, ValuesOutsideTheEnumReadAsInternal) {
    const auto outside = static_cast<Errc>(static_cast<int>(Errc::internal) + 1);
    EXPECT_STREQ(errc_name(outside), "internal");
    EXPECT_EQ(exit_code(outside), 70);
    EXPECT_FALSE(is_retryable(outside));
    EXPECT_STREQ(errc_name(static_cast<Errc>(0)), "internal");
}

}  // namespace
}  // namespace rad
