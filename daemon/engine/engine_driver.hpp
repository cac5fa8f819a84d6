#pragma once
// EngineDriver runs a ProfileEngine for its owner: each event is handled at the owner's clock reading, and
// each command it yields is given to the owner's executor, in order. An event raised while commands run (an
// identity loaded at once, a file write that failed) is queued and handled after them, so that every step
// sees the engine whole. The agent's profile runtime drives its engine with one, on the real clocks; the
// simulations drive theirs with one, on a virtual clock: the same steps in the same order.

#include <deque>
#include <functional>

#include "daemon/engine/profile_engine.hpp"

namespace rad::engine {

class EngineDriver {
public:
    using Executor = std::function<void(Command& command)>;
    using Clock = std::function<Instant()>;

    EngineDriver(ProfileEngine& engine, Executor execute, Clock clock)
        : engine_(engine), execute_(std::move(execute)), clock_(std::move(clock)) {}

    // dispatch handles `event`, and what the commands raise meanwhile; true when it ran them (false when it
    // only queued `event` behind a dispatch in progress).
    bool dispatch(Event event) {
        queue_.push_back(std::move(event));
        if (dispatching_) {
            return false;
        }
        dispatching_ = true;
        while (!queue_.empty()) {
            Event next = std::move(queue_.front());
            queue_.pop_front();
            for (auto& command : engine_.handle(next, clock_())) {
                execute_(command);
            }
        }
        dispatching_ = false;
        return true;
    }

private:
    ProfileEngine& engine_;
    Executor execute_;
    Clock clock_;
    std::deque<Event> queue_;
    bool dispatching_ = false;
};

}  // namespace rad::engine
