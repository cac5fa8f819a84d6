// Gives every unit-test binary RAD_TEST_PKI and RAD_TEST_DATA even when run by hand or through ctest entries
// that gtest_discover_tests created without the ENVIRONMENT property (it cannot pass a list of variables).
// Values already in the environment win.
#include <cstdlib>

namespace {

struct TestEnvironment {
    TestEnvironment() {
        ::setenv("RAD_TEST_PKI", RAD_TEST_PKI_DEFAULT, 0);
        ::setenv("RAD_TEST_DATA", RAD_TEST_DATA_DEFAULT, 0);
    }
};

const TestEnvironment kTestEnvironment;

}  // namespace
