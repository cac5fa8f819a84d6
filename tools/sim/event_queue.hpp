#pragma once
// EventQueue pops events by time, and events at the same time in the order they were pushed, so that a
// simulation is deterministic.

#include <cstdint>
#include <queue>
#include <vector>

#include "tools/sim/simulated_time.hpp"

namespace rad::sim {

template <class Payload>
class EventQueue {
public:
    struct Entry {
        Ms at = 0;
        std::uint64_t seq = 0;  // push order: breaks ties between events at the same millisecond
        Payload payload;
    };

    void push(Ms at, Payload payload) { heap_.push(Entry{at, next_seq_++, std::move(payload)}); }
    // pop removes and returns the earliest event; the queue must not be empty.
    Entry pop() {
        Entry entry = heap_.top();
        heap_.pop();
        return entry;
    }
    const Entry& top() const { return heap_.top(); }
    bool empty() const noexcept { return heap_.empty(); }
    std::size_t size() const noexcept { return heap_.size(); }

private:
    struct Later {
        bool operator()(const Entry& a, const Entry& b) const noexcept {
            return a.at != b.at ? a.at > b.at : a.seq > b.seq;
        }
    };
    std::priority_queue<Entry, std::vector<Entry>, Later> heap_;
    std::uint64_t next_seq_ = 0;
};

}  // namespace rad::sim
