#pragma once
// protect_process_memory is the first thing each executable does: keys and credentials pass through its
// memory, so no core dumps (RLIMIT_CORE 0) and no ptrace or /proc/<pid>/mem by same-uid processes
// (PR_SET_DUMPABLE 0). Both are best effort: a failure leaves the process as the system made it.

#include <sys/prctl.h>
#include <sys/resource.h>

namespace rad {

inline void protect_process_memory() noexcept {
    const struct rlimit no_core { 0, 0 };
    (void)::setrlimit(RLIMIT_CORE, &no_core);
    (void)::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

}  // namespace rad
