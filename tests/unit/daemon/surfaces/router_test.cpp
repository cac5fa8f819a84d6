// The router that the HTTP servers and the fuzz target call: the request guard first, then the surface.
#include "daemon/surfaces/router.hpp"

#include <gtest/gtest.h>

#include <array>
#include <optional>
#include <string>

namespace rad::surfaces {
namespace {

TEST(Router, EveryRouteRefusesWhatTheGuardRefuses) {
    SurfaceRequest proxied;
    proxied.method = "GET";
    proxied.target = "/latest/api/token";
    proxied.headers = {{"Host", "127.0.0.1"}, {"X-Forwarded-For", "10.0.0.1"}};
    const ImdsTokens tokens([](std::string_view) { return std::array<std::uint8_t, 32>{}; });
    const ServedCredentials none{nullptr, make_error(Errc::upstream_unreachable, "none"), {}};
    EXPECT_EQ(route_imds(proxied, ImdsSettings{"role", false}, tokens, {}, none).status, 400);
    bool looked_up = false;
    EXPECT_EQ(route_ecs(proxied,
                        [&](std::string_view) -> std::optional<EcsProfile> {
                            looked_up = true;
                            return std::nullopt;
                        })
                  .status,
              400);
    EXPECT_FALSE(looked_up) << "a refused request reached the profiles";
    EXPECT_EQ(route_health(proxied, policy::AgentSnapshot{}).status, 400);
}

TEST(Router, TheContainerEndpointLooksUpThePathWithoutItsQuery) {
    SurfaceRequest request;
    request.method = "GET";
    request.target = "/credentials/web";
    request.headers = {{"Host", "127.0.0.1"}, {"Authorization", "t"}};
    std::string asked;
    const auto response = route_ecs(request, [&](std::string_view path) -> std::optional<EcsProfile> {
        asked = std::string(path);
        return std::nullopt;
    });
    EXPECT_EQ(asked, "/credentials/web");
    EXPECT_EQ(response.status, 404);
}

}  // namespace
}  // namespace rad::surfaces
