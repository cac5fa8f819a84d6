#include "common/time_format.hpp"

#include <charconv>
#include <cstdio>

namespace rad {
namespace {

struct Fields {
    int year;
    unsigned month, day, hour, minute, second;
};

Fields split(SystemTime t) {
    using namespace std::chrono;
    const auto secs = floor<seconds>(t);
    const auto days = floor<std::chrono::days>(secs);
    const year_month_day ymd{days};
    const hh_mm_ss<seconds> hms{secs - days};
    return Fields{static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()),
                  static_cast<unsigned>(ymd.day()),
                  static_cast<unsigned>(hms.hours().count()),
                  static_cast<unsigned>(hms.minutes().count()),
                  static_cast<unsigned>(hms.seconds().count())};
}

bool parse_digits(std::string_view text, std::size_t pos, std::size_t count, int& out) {
    if (pos + count > text.size()) {
        return false;
    }
    int value = 0;
    for (std::size_t i = pos; i < pos + count; ++i) {
        const char c = text[i];
        if (c < '0' || c > '9') {
            return false;
        }
        value = value * 10 + (c - '0');
    }
    out = value;
    return true;
}

}  // namespace

std::string format_amz_date(SystemTime t) {
    const Fields f = split(t);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%04d%02u%02uT%02u%02u%02uZ", f.year, f.month, f.day, f.hour, f.minute,
                  f.second);
    return buf;
}

std::string format_date_stamp(SystemTime t) {
    const Fields f = split(t);
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04d%02u%02u", f.year, f.month, f.day);
    return buf;
}

std::string format_iso8601(SystemTime t) {
    const Fields f = split(t);
    if (f.year < 0 || f.year > 9999) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02u:%02u:%02uZ", f.year, f.month, f.day, f.hour,
                      f.minute, f.second);
        return buf;
    }
    // The common case by hand: IMDS and ECS answers carry two of these each, and snprintf was a visible
    // share of a request's time.
    std::string out = "0000-00-00T00:00:00Z";
    const auto put = [&out](std::size_t at, unsigned value, int digits) {
        for (int i = digits - 1; i >= 0; --i) {
            out[at + static_cast<std::size_t>(i)] = static_cast<char>('0' + value % 10);
            value /= 10;
        }
    };
    put(0, static_cast<unsigned>(f.year), 4);
    put(5, f.month, 2);
    put(8, f.day, 2);
    put(11, f.hour, 2);
    put(14, f.minute, 2);
    put(17, f.second, 2);
    return out;
}

std::string format_rfc3339_ms(SystemTime t) {
    using namespace std::chrono;
    // floor, not a cast: a time before 1970 still gets the milliseconds of its own second.
    const auto millis = floor<milliseconds>(t) - floor<seconds>(t);
    std::string out = format_iso8601(t);
    char fraction[8];
    std::snprintf(fraction, sizeof fraction, ".%03d", static_cast<int>(millis.count()));
    out.insert(out.size() - 1, fraction);
    return out;
}

std::optional<SystemTime> parse_rfc3339(std::string_view s) {
    using namespace std::chrono;
    int year, month, day, hour, minute, second;
    if (s.size() < 20 || !parse_digits(s, 0, 4, year) || s[4] != '-' || !parse_digits(s, 5, 2, month) ||
        s[7] != '-' || !parse_digits(s, 8, 2, day) || (s[10] != 'T' && s[10] != 't') ||
        !parse_digits(s, 11, 2, hour) || s[13] != ':' || !parse_digits(s, 14, 2, minute) || s[16] != ':' ||
        !parse_digits(s, 17, 2, second)) {
        return std::nullopt;
    }
    std::size_t pos = 19;
    if (s[pos] == '.') {
        ++pos;
        const std::size_t start = pos;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
            ++pos;
        }
        if (pos == start) {
            return std::nullopt;
        }
    }
    if (pos >= s.size()) {
        return std::nullopt;
    }
    int offset_minutes = 0;
    if (s[pos] == 'Z' || s[pos] == 'z') {
        ++pos;
    } else if (s[pos] == '+' || s[pos] == '-') {
        int oh, om;
        if (!parse_digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
            !parse_digits(s, pos + 4, 2, om) || oh > 23 || om > 59) {
            return std::nullopt;
        }
        offset_minutes = (oh * 60 + om) * (s[pos] == '-' ? -1 : 1);
        pos += 6;
    } else {
        return std::nullopt;
    }
    if (pos != s.size()) {
        return std::nullopt;
    }
    const year_month_day ymd{std::chrono::year{year}, std::chrono::month{static_cast<unsigned>(month)},
                             std::chrono::day{static_cast<unsigned>(day)}};
    if (!ymd.ok() || hour > 23 || minute > 59 || second > 60) {
        return std::nullopt;
    }
    const auto t = sys_days{ymd} + hours{hour} + minutes{minute} + seconds{second} - minutes{offset_minutes};
    // system_clock counts nanoseconds in 64 bits, which ends in 2262: a later (or pre-1678) instant would
    // overflow the conversion (undefined behaviour, found by fuzzing an expiration of year 7515).
    constexpr auto limit = duration_cast<seconds>(system_clock::duration::max());
    if (t.time_since_epoch() >= limit || t.time_since_epoch() <= -limit) {
        return std::nullopt;
    }
    return time_point_cast<system_clock::duration>(t);
}

}  // namespace rad
