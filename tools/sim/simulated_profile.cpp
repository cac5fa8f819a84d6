#include "tools/sim/simulated_profile.hpp"

namespace rad::sim {

SimulatedProfile::SimulatedProfile(SimulatedWorld& world,
                                   std::uint32_t index,
                                   std::string name,
                                   engine::EngineSettings settings,
                                   std::uint64_t seed)
    : world_(world),
      index_(index),
      engine_(std::move(name), settings, seed),
      driver_(
          engine_, [this](engine::Command& command) { execute(command); }, [this] { return world_.now(); }) {}

void SimulatedProfile::dispatch(engine::Event event) {
    if (driver_.dispatch(std::move(event))) {
        world_.wake(*this, engine_.wake_at());
    }
}

void SimulatedProfile::execute(engine::Command& command) {
    if (std::holds_alternative<engine::LoadIdentity>(command)) {
        driver_.dispatch(engine::IdentityLoaded{world_.load_identity(*this)});
    } else if (std::holds_alternative<engine::SendCreateSession>(command)) {
        world_.send_create_session(*this);
    } else if (std::holds_alternative<engine::WriteCredentialsFile>(command)) {
        if (auto written = world_.write_credentials_file(*this); !written) {
            driver_.dispatch(engine::SurfaceFailed{"credentials_file", written.error()});
        } else {
            driver_.dispatch(engine::SurfaceRecovered{"credentials_file"});
        }
    } else if (const auto* retry = std::get_if<engine::RetrySurface>(&command)) {
        driver_.dispatch(engine::SurfaceRecovered{retry->surface});
    }
    world_.saw(*this, command);
}

}  // namespace rad::sim
