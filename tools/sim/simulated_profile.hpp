#pragma once
// SimulatedProfile runs one real ProfileEngine in a simulated world, as the agent's profile runtime runs one
// in the real one: the same EngineDriver, the same commands, carried out against what the world says
// (the identity files, the service, the credentials file) on a virtual clock. The world also keeps the
// profile's timer: it is told the instant the engine wants its next Tick.

#include <cstdint>
#include <string>

#include "common/error.hpp"
#include "daemon/engine/engine_driver.hpp"
#include "daemon/engine/profile_engine.hpp"

namespace rad::sim {

class SimulatedProfile;

class SimulatedWorld {
public:
    virtual ~SimulatedWorld() = default;
    virtual engine::Instant now() const = 0;
    // load_identity is what loading the profile's identity files gives at this instant.
    virtual Result<engine::IdentityInfo> load_identity(SimulatedProfile& profile) = 0;
    // send_create_session takes the profile's call now; the world answers later with
    // profile.dispatch(engine::SessionAnswered{...}).
    virtual void send_create_session(SimulatedProfile& profile) = 0;
    virtual Result<void> write_credentials_file(SimulatedProfile& profile) = 0;
    // wake: the profile wants a Tick at `at` (SteadyTime::max(): none); it replaces the one asked before.
    virtual void wake(SimulatedProfile& profile, engine::SteadyTime at) = 0;
    // saw is told every command after it ran (logs, RefreshDone and CredentialsChanged among them).
    virtual void saw(SimulatedProfile&, const engine::Command&) {}
};

class SimulatedProfile {
public:
    SimulatedProfile(SimulatedWorld& world,
                     std::uint32_t index,
                     std::string name,
                     engine::EngineSettings settings,
                     std::uint64_t seed);
    SimulatedProfile(const SimulatedProfile&) = delete;
    SimulatedProfile& operator=(const SimulatedProfile&) = delete;

    // dispatch hands the engine one event (and what its commands raise), then tells the world when to wake
    // it.
    void dispatch(engine::Event event);

    const engine::ProfileEngine& engine() const noexcept { return engine_; }
    std::uint32_t index() const noexcept { return index_; }

private:
    void execute(engine::Command& command);

    SimulatedWorld& world_;
    std::uint32_t index_;
    engine::ProfileEngine engine_;
    engine::EngineDriver driver_;
};

}  // namespace rad::sim
