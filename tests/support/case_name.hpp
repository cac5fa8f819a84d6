#pragma once
// Names of the cases of parameterized GoogleTest tables, made from each case's own data, so that
// `ctest -N` lists `Table/HostAllowList.ComparesHostPartOnly/refused_127_dot_0_dot_0_dot_1_colon_` instead of
// the bytes of the case's struct (which hold pointers and change from build to build), and `ctest -R` can
// pick one case. GoogleTest accepts letters, digits and '_' in a name, and refuses two cases of one table
// with the same name at start-up.

#include <cstdio>
#include <string>
#include <string_view>
#include <utility>

namespace rad::test {

// case_name spells any text with letters, digits and '_': letters and digits stay, every other byte becomes
// "_<name>_" ("." is "_dot_", "_" itself "_us_", a byte without a name "_x1f_"), so that two different texts
// never get the same name. The empty text is "empty" (so is the text "empty": a table never holds both).
inline std::string case_name(std::string_view text) {
    if (text.empty()) {
        return "empty";
    }
    std::string out;
    for (const char c : text) {
        const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (alnum) {
            out += c;
            continue;
        }
        static constexpr std::pair<char, const char*> kWords[] = {
            {'.', "dot"},   {':', "colon"},    {'-', "minus"},    {'+', "plus"},
            {' ', "space"}, {'[', "lbracket"}, {']', "rbracket"}, {'/', "slash"},
            {'@', "at"},    {'_', "us"},       {'\r', "cr"},      {'\n', "lf"}};
        const char* word = nullptr;
        for (const auto& [character, name] : kWords) {
            if (c == character) {
                word = name;
            }
        }
        char hex[8];
        if (word == nullptr) {
            std::snprintf(hex, sizeof hex, "x%02x", static_cast<unsigned>(static_cast<unsigned char>(c)));
            word = hex;
        }
        out += '_';
        out += word;
        out += '_';
    }
    return out;
}

// number_name spells a number as a name: 0.25 is "0p25", -1 is "minus1", 7 is "7".
inline std::string number_name(double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", value < 0 ? -value : value);
    std::string out = value < 0 ? "minus" : "";
    for (const char* p = text; *p != '\0'; ++p) {
        if (*p == '.') {
            out += 'p';
        } else if (*p == '-') {
            out += 'm';  // an exponent's sign, as in 1e-05
        } else if (*p != '+') {
            out += *p;
        }
    }
    return out;
}

}  // namespace rad::test
