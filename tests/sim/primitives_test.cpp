// The simulations' own parts: the quota's token bucket and the event queue's order.
#include <gtest/gtest.h>

#include "tools/sim/event_queue.hpp"
#include "tools/sim/token_bucket.hpp"

namespace rad::sim {
namespace {

TEST(TokenBucket, StartsFullAndRefusesBeyondBurst) {
    TokenBucket bucket(10.0, 10.0);
    for (int i = 0; i < 10; ++i) {
        EXPECT_TRUE(bucket.try_take(0)) << i;
    }
    EXPECT_FALSE(bucket.try_take(0));
    EXPECT_DOUBLE_EQ(bucket.tokens(0), 0.0);
}

TEST(TokenBucket, RefillsExactlyAtTheRate) {
    TokenBucket bucket(10.0, 1.0);
    EXPECT_TRUE(bucket.try_take(0));
    EXPECT_FALSE(bucket.try_take(99));  // 0.99 token
    EXPECT_DOUBLE_EQ(bucket.tokens(99), 0.99);
    EXPECT_TRUE(bucket.try_take(100));  // exactly one
    EXPECT_FALSE(bucket.try_take(100));
    // 1000 calls 100 ms apart are all accepted, one more in between is not.
    for (int i = 2; i < 1002; ++i) {
        EXPECT_TRUE(bucket.try_take(i * 100)) << i;
    }
    EXPECT_FALSE(bucket.try_take(1001 * 100 + 50));
}

TEST(TokenBucket, FractionalRateAndCapacityCap) {
    TokenBucket bucket(0.5, 3.0);
    for (int i = 0; i < 3; ++i) {
        EXPECT_TRUE(bucket.try_take(0));
    }
    EXPECT_FALSE(bucket.try_take(1999));
    EXPECT_TRUE(bucket.try_take(2000));
    // A day idle refills to the burst, not beyond, and does not overflow.
    EXPECT_DOUBLE_EQ(bucket.tokens(86'400'000), 3.0);
    EXPECT_DOUBLE_EQ(bucket.tokens(std::int64_t{1} << 60), 3.0);
}

TEST(TokenBucket, TimeGoingBackwardsRefillsNothing) {
    TokenBucket bucket(10.0, 1.0);
    EXPECT_TRUE(bucket.try_take(1000));
    EXPECT_FALSE(bucket.try_take(500));
    EXPECT_FALSE(bucket.try_take(1099));
    EXPECT_TRUE(bucket.try_take(1100));
}

TEST(EventQueue, OrdersByTimeThenByPushOrder) {
    EventQueue<std::uint32_t> queue;
    queue.push(50, 1);
    queue.push(10, 2);
    queue.push(50, 3);
    queue.push(10, 4);
    queue.push(50, 5);
    const std::uint32_t expected[] = {2, 4, 1, 3, 5};
    for (std::uint32_t index : expected) {
        ASSERT_FALSE(queue.empty());
        EXPECT_EQ(queue.pop().payload, index);
    }
    EXPECT_TRUE(queue.empty());
}

TEST(EventQueue, ManyTiesKeepTheirOrder) {
    EventQueue<std::uint32_t> queue;
    for (std::uint32_t i = 0; i < 10000; ++i) {
        queue.push(i % 3 == 0 ? 7 : 3, i);
    }
    std::uint32_t last_at3 = 0, last_at7 = 0;
    bool first3 = true, first7 = true;
    std::int64_t previous = 0;
    while (!queue.empty()) {
        const auto e = queue.pop();
        ASSERT_GE(e.at, previous);
        previous = e.at;
        auto& last = e.at == 3 ? last_at3 : last_at7;
        auto& first = e.at == 3 ? first3 : first7;
        if (!first) {
            EXPECT_GT(e.payload, last);
        }
        first = false;
        last = e.payload;
    }
}

}  // namespace
}  // namespace rad::sim
