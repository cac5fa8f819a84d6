#include "common/secret.hpp"

#include <gtest/gtest.h>

#include <type_traits>

namespace rad {
namespace {

static_assert(!std::is_copy_constructible_v<Secret>);
static_assert(!std::is_copy_assignable_v<Secret>);
static_assert(std::is_nothrow_move_constructible_v<Secret>);
static_assert(!std::is_convertible_v<Secret, std::string>);
static_assert(!std::is_convertible_v<Secret, std::string_view>);

TEST(Secret, TakesOverAndEmptiesTheSourceString) {
    std::string long_value(100, 'k');
    Secret secret(std::move(long_value));
    EXPECT_EQ(secret.reveal(), std::string(100, 'k'));
    EXPECT_TRUE(long_value.empty());  // NOLINT(bugprone-use-after-move): the documented contract

    std::string short_value = "pw";  // lives in the SSO buffer, so it is copied and must be wiped
    Secret small(std::move(short_value));
    EXPECT_EQ(small.reveal(), "pw");
    EXPECT_TRUE(short_value.empty());  // NOLINT(bugprone-use-after-move)
}

TEST(Secret, MoveLeavesTheSourceEmpty) {
    Secret a(std::string_view("correct horse battery staple"));
    Secret b(std::move(a));
    EXPECT_EQ(b.reveal(), "correct horse battery staple");
    EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move)

    Secret c(std::string_view("other"));
    c = std::move(b);
    EXPECT_EQ(c.reveal(), "correct horse battery staple");
    EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(c.size(), 28u);
}

TEST(Secret, SelfMoveAssignmentKeepsTheValue) {
    Secret a(std::string_view("value"));
    Secret& alias = a;
    a = std::move(alias);
    EXPECT_EQ(a.reveal(), "value");
}

TEST(Secret, CloneIsIndependent) {
    Secret a(std::string_view("value"));
    Secret b = a.clone();
    a.reveal_mutable()[0] = 'V';
    EXPECT_EQ(b.reveal(), "value");
    EXPECT_EQ(a.reveal(), "Value");
}

TEST(WipeString, ClearsTheWholeCapacity) {
    std::string s(64, 'x');
    const char* data = s.data();
    s.resize(3);  // the bytes past size() still hold 'x'
    wipe_string(s);
    EXPECT_TRUE(s.empty());
    // The buffer is the same allocation (clear() never shrinks); every byte of it must now be zero.
    ASSERT_EQ(s.data(), data);
    const std::size_t capacity = s.capacity();
    for (std::size_t i = 0; i < capacity; ++i) {
        EXPECT_EQ(data[i], '\0') << "byte " << i;
    }
}

}  // namespace
}  // namespace rad
