#pragma once
// Inside rad_config only: reaching the value a Setting's field names, for the parser (config.cpp) and the
// comparisons (settings.cpp).

#include <type_traits>
#include <utility>
#include <variant>

#include "config/settings.hpp"

namespace rad::config::access {

// value_of is the member `member` of `target`; a profile's identity settings live in its IdentitySpec.
template <class M>
M& value_of(AgentSettings& target, M AgentSettings::*member) {
    return target.*member;
}
template <class M>
const M& value_of(const AgentSettings& target, M AgentSettings::*member) {
    return target.*member;
}
template <class M>
M& value_of(ProfileConfig& target, M ProfileConfig::*member) {
    return target.*member;
}
template <class M>
const M& value_of(const ProfileConfig& target, M ProfileConfig::*member) {
    return target.*member;
}
template <class M>
M& value_of(ProfileConfig& target, M IdentitySpec::*member) {
    return target.identity.*member;
}
template <class M>
const M& value_of(const ProfileConfig& target, M IdentitySpec::*member) {
    return target.identity.*member;
}

// store sets the field to `value`, which must have the field's type exactly (holds_kind() is tested for
// every row, so a kind is only ever read into a field of its type).
template <class Value, class Target, class Field>
void store(const Field& field, Target& target, Value value) {
    std::visit(
        [&](auto member) {
            if constexpr (std::is_same_v<decltype(member), FractionPair>) {
                if constexpr (std::is_same_v<Value, std::pair<double, double>>) {
                    target.*member.low = value.first;
                    target.*member.high = value.second;
                }
            } else {
                using Stored = std::remove_reference_t<decltype(value_of(target, member))>;
                if constexpr (std::is_same_v<Stored, Value>) {
                    value_of(target, member) = std::move(value);
                }
            }
        },
        field);
}

}  // namespace rad::config::access
