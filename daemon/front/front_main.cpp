// rolesanywhere-agent: the command users and AWS SDKs run. It answers the credential_process fast path
// (`credential-process --profile NAME`, an SDK's every credential fetch) from the running agent itself, and
// hands every other command line, unchanged and in the same process, to the full program
// (rolesanywhere-agent-core) with execve.
//
// Why it has no C runtime: on a small VM the cost of a short process is page faults and CPUID exits, not
// work. Starting the full program (libcrypto, libssl, libstdc++, tss2) costs about 10 ms; an empty static
// glibc program 1.5 ms, most of it glibc's start-up probing the CPU (each CPUID traps to the hypervisor,
// ~18 µs here) and faulting in its own pages; this program, a few pages and raw system calls, about
// 0.6 ms. The decisions live in front_logic.hpp (pure, unit-tested against the full program's code); this
// file is the system-call shell around them. The same PID continues as the full program, so `serve` under
// systemd (Type=notify, NotifyAccess=main) and every exit code and message of other commands are the full
// program's own.
//
// Secrets: the agent's reply holds credentials; it lives in one static buffer that is wiped before exit.
// Nothing is logged. Core dumps are off and the process is not dumpable, as in the full program.

#include <asm/unistd.h>
#include <linux/errno.h>
#include <linux/fcntl.h>
#include <linux/poll.h>
#include <linux/prctl.h>
#include <linux/resource.h>
#include <linux/stat.h>
#include <linux/time_types.h>

#include "daemon/front/front_logic.hpp"

namespace {

using rad::front::Text;
using rad::front::text;

// ---- system calls -----------------------------------------------------------------------------------------

#if defined(__x86_64__)
long sys(long n, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0, long f = 0) {
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#elif defined(__aarch64__)
long sys(long n, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0, long f = 0) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
    return x0;
}
#else
#error \
    "the front executable's system calls are written for x86_64 and aarch64 (see daemon/front/CMakeLists.txt)"
#endif

template <class T>
long arg(T* pointer) {
    return reinterpret_cast<long>(pointer);
}

// The socket ABI constants are the same on x86_64 and aarch64 (and not in the kernel's uapi headers).
constexpr long kAfUnix = 1;
constexpr long kSockStream = 1;
constexpr long kMsgNoSignal = 0x4000;

struct SockaddrUn {
    unsigned short family;
    char path[108];
};

[[noreturn]] void exit_now(int code) {
    for (;;) {
        sys(__NR_exit_group, code);
    }
}

// write_all writes all of `t`; false when the descriptor refuses.
bool write_all(int fd, Text t) {
    while (t.size > 0) {
        const long n = sys(__NR_write, fd, arg(t.data), static_cast<long>(t.size));
        if (n == -EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        t.data += n;
        t.size -= static_cast<size_t>(n);
    }
    return true;
}

// fail prints "rolesanywhere-agent: <parts...>" on standard error and exits.
[[noreturn]] void fail(int code, Text a, Text b = {}, Text c = {}, Text d = {}) {
    char line[1024];
    rad::front::Writer w{line, sizeof line};
    w.put("rolesanywhere-agent: ");
    w.put(a);
    w.put(b);
    w.put(c);
    w.put(d);
    w.size = w.size < sizeof line ? w.size : sizeof line - 1;  // a message too long is cut, not lost
    line[w.size++] = '\n';
    (void)write_all(2, Text{line, w.size});  // nowhere left to report a failure
    exit_now(code);
}

int64_t now_ms() {
    __kernel_timespec ts{};
    sys(__NR_clock_gettime, 1 /* CLOCK_MONOTONIC */, arg(&ts));
    return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// wait_for polls `fd` until the deadline: false on timeout.
bool wait_for(int fd, short events, int64_t deadline) {
    for (;;) {
        const int64_t left = deadline - now_ms();
        if (left <= 0) {
            return false;
        }
        pollfd p{fd, events, 0};
        __kernel_timespec ts{left / 1000, (left % 1000) * 1000000};
        const long n = sys(__NR_ppoll, arg(&p), 1, arg(&ts), 0, 8);
        if (n > 0) {
            return true;
        }
        if (n != 0 && n != -EINTR) {
            return true;  // the read or write that follows reports the error
        }
    }
}

bool statx_of(int dirfd, const char* path, int flags, struct statx& out) {
    return sys(__NR_statx, dirfd, arg(path), flags, STATX_BASIC_STATS, arg(&out)) == 0;
}

// ---- handing over to the full program ---------------------------------------------------------------------

const char* errno_text(long err) {
    switch (err) {
        case ENOENT:
            return "No such file or directory";
        case EACCES:
            return "Permission denied";
        case ENOEXEC:
            return "Exec format error";
        case ENOMEM:
            return "Cannot allocate memory";
        default:
            return "cannot execute";
    }
}

[[noreturn]] void run_core(const char* const* argv, const char* const* envp) {
    // The full program is beside this executable in a build tree, else where the package installs it
    // relative to the bin directory (RAD_CORE_FROM_BINDIR), so that any installation prefix works.
    static char path[4096 + 128];
    const long n = sys(__NR_readlinkat, AT_FDCWD, arg("/proc/self/exe"), arg(path), 4096);
    if (n <= 0 || n >= 4096) {
        fail(69, text("cannot find its own executable (/proc/self/exe)"));
    }
    size_t dir = static_cast<size_t>(n);
    while (dir > 0 && path[dir - 1] != '/') {
        --dir;
    }
    auto try_exec = [&](Text name) -> long {
        rad::front::Writer w{path + dir, sizeof path - dir - 1};
        w.put(name);
        if (!w.ok) {
            return -ENAMETOOLONG;
        }
        path[dir + w.size] = '\0';
        struct statx st {};
        if (!statx_of(AT_FDCWD, path, 0, st) || (st.stx_mode & S_IFMT) != S_IFREG) {
            return -ENOENT;
        }
        return sys(__NR_execve, arg(path), arg(argv), arg(envp));
    };
    long err = try_exec(text("rolesanywhere-agent-core"));
    if (err == -ENOENT) {
        err = try_exec(text(RAD_CORE_FROM_BINDIR));
    }
    fail(69, text("cannot run "), text(path), text(": "), text(errno_text(-err)));
}

// ---- the fast path ----------------------------------------------------------------------------------------

// The configuration file and the agent's reply, in zero-initialised static storage: only the pages a file
// or a reply actually fills are ever touched.
char config_bytes[rad::front::kMaxConfig + 1];
char reply_bytes[rad::front::kMaxReply + 1];
size_t reply_size = 0;

void wipe_reply() {
    for (size_t i = 0; i < reply_size; ++i) {
        reply_bytes[i] = 0;
    }
    __asm__ volatile("" : : "r"(reply_bytes) : "memory");  // the stores above are not dead
}

enum class Found { socket, ask_core };

// find_socket sets `socket` (NUL-terminated in `storage`) and `identity` (empty unless the socket came from
// a configuration file, whose identity the agent then checks).
Found find_socket(const rad::front::Options& options,
                  char* storage,
                  Text& identity,
                  char* identity_storage,
                  size_t identity_cap) {
    auto copy_path = [&](Text path) {
        for (size_t i = 0; i < path.size; ++i) {
            storage[i] = path.data[i];
        }
        storage[path.size] = '\0';
    };
    if (options.socket.size > 0) {
        if (options.socket.size > rad::front::kMaxSocketPath) {
            return Found::ask_core;
        }
        copy_path(options.socket);
        return Found::socket;
    }
    const char* config_path = options.config.size > 0 ? options.config.data : rad::front::kDefaultConfigPath;
    const long fd = sys(__NR_openat, AT_FDCWD, arg(config_path), O_RDONLY | O_CLOEXEC);
    if (fd == -ENOENT && options.config.size == 0) {
        copy_path(text(rad::front::kDefaultSocketPath));  // no configuration at all: the default socket
        return Found::socket;
    }
    if (fd < 0) {
        return Found::ask_core;
    }
    struct statx before {};
    struct statx after {};
    size_t size = 0;
    bool good = statx_of(static_cast<int>(fd), "", AT_EMPTY_PATH, before) &&
                (before.stx_mode & S_IFMT) == S_IFREG && (before.stx_mode & 0022) == 0 &&
                before.stx_size <= rad::front::kMaxConfig;
    while (good) {
        const long n =
            sys(__NR_read, fd, arg(config_bytes + size), static_cast<long>(sizeof config_bytes - size));
        if (n == -EINTR) {
            continue;
        }
        if (n < 0) {
            good = false;
        } else if (n == 0) {
            break;
        } else {
            size += static_cast<size_t>(n);
            good = size <= rad::front::kMaxConfig;
        }
    }
    good = good && statx_of(static_cast<int>(fd), "", AT_EMPTY_PATH, after) &&
           rad::front::same_identity(rad::front::identity_of(before), rad::front::identity_of(after)) &&
           after.stx_size == size;
    sys(__NR_close, fd);
    if (!good) {
        return Found::ask_core;
    }
    rad::front::Writer w{identity_storage, identity_cap};
    if (!rad::front::format_identity(rad::front::identity_of(after), w)) {
        return Found::ask_core;
    }
    identity = Text{identity_storage, w.size};
    Text socket;
    switch (rad::front::scan_socket_path(Text{config_bytes, size}, socket)) {
        case rad::front::Scan::found:
            copy_path(socket);
            return Found::socket;
        case rad::front::Scan::not_set:
            copy_path(text(rad::front::kDefaultSocketPath));
            return Found::socket;
        case rad::front::Scan::unsure:
            break;
    }
    return Found::ask_core;
}

// timeout_text is "<ms> ms", as the full program words it.
Text timeout_text(int64_t ms, char* storage, size_t cap) {
    rad::front::Writer w{storage, cap};
    w.put_unsigned(static_cast<uint64_t>(ms));
    w.put(" ms");
    return Text{storage, w.size};
}

// fast_path returns only when the full program should run the command line instead.
void fast_path(const rad::front::Options& options) {
    static char socket_path[rad::front::kMaxSocketPath + 1];
    static char identity_storage[160];
    Text identity;
    if (find_socket(options, socket_path, identity, identity_storage, sizeof identity_storage) !=
        Found::socket) {
        return;
    }
    const int64_t deadline = now_ms() + options.timeout_ms;
    const Text where = text(socket_path);

    char request_bytes[512];
    rad::front::Writer request{request_bytes, sizeof request_bytes};
    if (!rad::front::format_request(options, identity, request)) {
        return;
    }
    const long fd = sys(__NR_socket, kAfUnix, kSockStream | O_CLOEXEC | O_NONBLOCK, 0);
    if (fd < 0) {
        return;
    }
    SockaddrUn address{};
    address.family = kAfUnix;
    for (size_t i = 0; i < where.size; ++i) {
        address.path[i] = where.data[i];
    }
    const long connected = sys(__NR_connect, fd, arg(&address), static_cast<long>(sizeof address));
    if (connected == -EAGAIN || connected == -EINPROGRESS) {
        if (!wait_for(static_cast<int>(fd), POLLOUT, deadline)) {
            fail(75, text("agent socket "), where, text(": connect timed out"));
        }
    } else if (connected != 0) {
        sys(__NR_close, fd);
        return;  // no agent here, or not for this user: the full program says so, or signs by itself
    }
    Text pending{request.out, request.size};
    while (pending.size > 0) {
        const long n =
            sys(__NR_sendto, fd, arg(pending.data), static_cast<long>(pending.size), kMsgNoSignal, 0, 0);
        if (n > 0) {
            pending.data += n;
            pending.size -= static_cast<size_t>(n);
        } else if (n == -EAGAIN || n == -EINTR) {
            if (!wait_for(static_cast<int>(fd), POLLOUT, deadline)) {
                fail(75, text("agent socket "), where, text(": write timed out"));
            }
        } else {
            sys(__NR_close, fd);
            return;
        }
    }
    while (reply_size == 0 || reply_bytes[reply_size - 1] != '\n') {
        if (!wait_for(static_cast<int>(fd), POLLIN, deadline)) {
            wipe_reply();
            char storage[32];
            fail(75, text("agent socket "), where, text(": no answer within "),
                 timeout_text(options.timeout_ms, storage, sizeof storage));
        }
        const long n = sys(__NR_recvfrom, fd, arg(reply_bytes + reply_size),
                           static_cast<long>(sizeof reply_bytes - reply_size), 0, 0, 0);
        if (n > 0) {
            reply_size += static_cast<size_t>(n);
            if (reply_size > rad::front::kMaxReply) {
                break;
            }
        } else if (n != -EAGAIN && n != -EINTR) {
            break;
        }
    }
    sys(__NR_close, fd);
    const auto reply = rad::front::classify_reply(Text{reply_bytes, reply_size}, options.no_fallback);
    switch (reply.kind) {
        case rad::front::ReplyKind::credentials: {
            const bool written = write_all(1, reply.payload);
            wipe_reply();
            if (!written) {
                fail(70, text("cannot write the credentials to standard output"));
            }
            exit_now(0);
        }
        case rad::front::ReplyKind::final_error:
            // An error line carries no secret, but the buffer is wiped all the same before it is printed from
            // a copy.
            {
                char message[1024];
                rad::front::Writer w{message, sizeof message};
                w.put(reply.payload);
                wipe_reply();
                fail(reply.exit_code, text("agent: "), Text{message, w.size});
            }
        case rad::front::ReplyKind::ask_core:
            wipe_reply();
            return;
    }
}

}  // namespace

extern "C" [[noreturn]] void front_start(long* stack) {
    const int argc = static_cast<int>(stack[0]);
    const char* const* argv = reinterpret_cast<const char* const*>(stack + 1);
    const char* const* envp = argv + argc + 1;

    // As the full program's protect_process_memory(): no core dumps, not dumpable (best effort).
    const struct rlimit64 no_core {};
    sys(__NR_prlimit64, 0, RLIMIT_CORE, arg(&no_core), 0);
    sys(__NR_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0);

    rad::front::Options options;
    if (rad::front::parse_arguments(argc, argv, options)) {
        fast_path(options);
    }
    run_core(argv, envp);
}

// The entry point: the kernel leaves argc, argv and envp on the stack; front_start gets a pointer to them
// on a 16-byte aligned stack, as the ABI wants at a call.
#if defined(__x86_64__)
__asm__(
    ".text\n"
    ".global _start\n"
    ".type _start, @function\n"
    "_start:\n"
    "  xor %ebp, %ebp\n"
    "  mov %rsp, %rdi\n"
    "  and $-16, %rsp\n"
    "  call front_start\n"
    "  ud2\n");
#elif defined(__aarch64__)
__asm__(
    ".text\n"
    ".global _start\n"
    ".type _start, %function\n"
    "_start:\n"
    "  mov x29, #0\n"
    "  mov x30, #0\n"
    "  mov x0, sp\n"
    "  and sp, x0, #-16\n"
    "  bl front_start\n"
    "  brk #0\n");
#endif

// The compiler may turn loops and aggregate copies into calls of these.
extern "C" {
void* memset(void* dest, int c, size_t n) {
    auto* d = static_cast<unsigned char*>(dest);
    for (size_t i = 0; i < n; ++i) {
        d[i] = static_cast<unsigned char>(c);
    }
    return dest;
}
void* memcpy(void* dest, const void* src, size_t n) {
    auto* d = static_cast<unsigned char*>(dest);
    const auto* s = static_cast<const unsigned char*>(src);
    for (size_t i = 0; i < n; ++i) {
        d[i] = s[i];
    }
    return dest;
}
void* memmove(void* dest, const void* src, size_t n) {
    auto* d = static_cast<unsigned char*>(dest);
    const auto* s = static_cast<const unsigned char*>(src);
    if (d < s) {
        for (size_t i = 0; i < n; ++i) {
            d[i] = s[i];
        }
    } else {
        for (size_t i = n; i > 0; --i) {
            d[i - 1] = s[i - 1];
        }
    }
    return dest;
}
int memcmp(const void* a, const void* b, size_t n) {
    const auto* x = static_cast<const unsigned char*>(a);
    const auto* y = static_cast<const unsigned char*>(b);
    for (size_t i = 0; i < n; ++i) {
        if (x[i] != y[i]) {
            return x[i] < y[i] ? -1 : 1;
        }
    }
    return 0;
}
}
