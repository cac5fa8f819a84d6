#include "common/time_format.hpp"

#include <gtest/gtest.h>

namespace rad {
namespace {

using namespace std::chrono;

SystemTime at(int y, unsigned mo, unsigned d, int h, int mi, int s) {
    return time_point_cast<system_clock::duration>(sys_days{year{y} / month{mo} / day{d}} + hours{h} +
                                                   minutes{mi} + seconds{s});
}

TEST(TimeFormat, AmzDateAndDateStamp) {
    const SystemTime t = at(2024, 2, 29, 7, 5, 9);
    EXPECT_EQ(format_amz_date(t), "20240229T070509Z");
    EXPECT_EQ(format_date_stamp(t), "20240229");
    EXPECT_EQ(format_amz_date(SystemTime{}), "19700101T000000Z");
}

TEST(TimeFormat, Iso8601TruncatesFractions) {
    EXPECT_EQ(format_iso8601(at(2023, 12, 31, 23, 59, 59) + milliseconds{999}), "2023-12-31T23:59:59Z");
    EXPECT_EQ(format_iso8601(at(2038, 1, 19, 3, 14, 8)), "2038-01-19T03:14:08Z");
}

TEST(TimeFormat, Rfc3339MillisecondsTruncatesToTheMillisecond) {
    struct Row {
        SystemTime t;
        const char* text;
    };
    const Row rows[] = {
        {at(2025, 5, 1, 10, 2, 3) + milliseconds{45}, "2025-05-01T10:02:03.045Z"},
        {at(2023, 12, 31, 23, 59, 59) + microseconds{999999}, "2023-12-31T23:59:59.999Z"},
        {SystemTime{}, "1970-01-01T00:00:00.000Z"},
        {SystemTime{} - milliseconds{1}, "1969-12-31T23:59:59.999Z"},
    };
    for (const auto& row : rows) {
        EXPECT_EQ(format_rfc3339_ms(row.t), row.text);
    }
}

TEST(ParseRfc3339, UtcForms) {
    const SystemTime expected = at(2024, 6, 1, 12, 30, 45);
    EXPECT_EQ(parse_rfc3339("2024-06-01T12:30:45Z"), expected);
    EXPECT_EQ(parse_rfc3339("2024-06-01t12:30:45z"), expected);
    EXPECT_EQ(parse_rfc3339("2024-06-01T12:30:45+00:00"), expected);
    EXPECT_EQ(parse_rfc3339("2024-06-01T12:30:45-00:00"), expected);
}

TEST(ParseRfc3339, FractionsAreTruncated) {
    const SystemTime expected = at(2024, 6, 1, 12, 30, 45);
    EXPECT_EQ(parse_rfc3339("2024-06-01T12:30:45.999Z"), expected);
    EXPECT_EQ(parse_rfc3339("2024-06-01T12:30:45.000000001Z"), expected);
    EXPECT_EQ(parse_rfc3339("2024-06-01T12:30:45.5+00:00"), expected);
}

TEST(ParseRfc3339, Offsets) {
    EXPECT_EQ(parse_rfc3339("2024-06-01T14:30:45+02:00"), at(2024, 6, 1, 12, 30, 45));
    EXPECT_EQ(parse_rfc3339("2024-06-01T07:00:45-05:30"), at(2024, 6, 1, 12, 30, 45));
    // An offset can move the instant into another day.
    EXPECT_EQ(parse_rfc3339("2024-01-01T00:30:00+01:00"), at(2023, 12, 31, 23, 30, 0));
}

TEST(ParseRfc3339, RoundTripsFormatIso8601) {
    const SystemTime t = at(2031, 7, 4, 1, 2, 3);
    EXPECT_EQ(parse_rfc3339(format_iso8601(t)), t);
}

// Found by fuzzing the CreateSession response parser: a year past 2262 overflowed the nanosecond
// system_clock (UBSan: signed integer overflow in duration_cast). Such instants are refused.
TEST(ParseRfc3339, RejectsInstantsSystemClockCannotHold) {
    EXPECT_EQ(parse_rfc3339("7515-11-23T12:34:59.123456+00:00"), std::nullopt);
    EXPECT_EQ(parse_rfc3339("9999-12-31T23:59:59Z"), std::nullopt);
    EXPECT_EQ(parse_rfc3339("2262-04-12T00:00:00Z"), std::nullopt);
    EXPECT_EQ(parse_rfc3339("0001-01-01T00:00:00Z"), std::nullopt);
    EXPECT_EQ(parse_rfc3339("1600-01-01T00:00:00Z"), std::nullopt);
    // The edges that still fit are kept.
    EXPECT_EQ(parse_rfc3339("2262-04-10T00:00:00Z"), at(2262, 4, 10, 0, 0, 0));
    EXPECT_EQ(parse_rfc3339("1700-01-01T00:00:00Z"), at(1700, 1, 1, 0, 0, 0));
}

TEST(ParseRfc3339, RejectsInvalidInput) {
    for (const char* bad : {
             "",
             "2024-06-01",
             "2024-06-01T12:30:45",        // no zone
             "2024-06-01 12:30:45Z",       // space separator
             "2024-06-01T12:30Z",          // no seconds
             "2024-06-01T12:30:45.Z",      // empty fraction
             "2024-06-01T12:30:45+0200",   // offset without colon
             "2024-06-01T12:30:45+02",     // short offset
             "2024-06-01T12:30:45+24:00",  // offset hour out of range
             "2024-06-01T12:30:45Zjunk",   // trailing text
             "2024-13-01T12:30:45Z",       // month
             "2023-02-29T12:30:45Z",       // not a leap year
             "2024-06-31T12:30:45Z",       // day
             "2024-06-01T24:00:00Z",       // hour
             "2024-06-01T12:60:00Z",       // minute
             "2024-06-01T12:30:61Z",       // second
             "2024-6-01T12:30:45Z",        // short field
             "abcd-06-01T12:30:45Z",
         }) {
        SCOPED_TRACE(bad);
        EXPECT_FALSE(parse_rfc3339(bad).has_value());
    }
}

}  // namespace
}  // namespace rad
