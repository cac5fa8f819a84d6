#include "daemon/upstream/https_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>

#include "common/file_read.hpp"

namespace rad::upstream {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto kAwait = net::as_tuple(net::use_awaitable);

// use_system_trust_store trusts what OpenSSL's default verify paths name, read as the chain needs it. The
// defaults are a bundle file (/usr/lib/ssl/cert.pem) and a directory of the same certificates, one file each
// under its subject-name hash (/etc/ssl/certs; update-ca-certificates keeps both). The bundle is read whole
// at every connection, and OpenSSL 3.0 decodes the key of each of its ~140 certificates through its provider
// decoders: 250 million instructions, 22 ms of a cold credential-process. The directory costs only the
// certificates a chain looks up. So: the directory when it exists, and the file only when SSL_CERT_FILE names
// one; with no directory, OpenSSL's defaults as they are. SSL_CERT_DIR is honoured as OpenSSL honours it.
bool use_system_trust_store(SSL_CTX* ctx) {
    const char* dir = std::getenv(X509_get_default_cert_dir_env());
    if (dir == nullptr) {
        dir = X509_get_default_cert_dir();
    }
    const std::string first_dir(dir, std::strcspn(dir, ":"));
    struct stat st {};
    if (first_dir.empty() || ::stat(first_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        return SSL_CTX_set_default_verify_paths(ctx) == 1;
    }
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    X509_LOOKUP* lookup = X509_STORE_add_lookup(store, X509_LOOKUP_hash_dir());
    if (lookup == nullptr || X509_LOOKUP_add_dir(lookup, dir, X509_FILETYPE_PEM) != 1) {
        return false;
    }
    // As X509_STORE_set_default_paths: a named file that cannot be read adds nothing, and is no error.
    if (const char* file = std::getenv(X509_get_default_cert_file_env()); file != nullptr) {
        (void)X509_STORE_load_file(store, file);
    }
    ERR_clear_error();
    return true;
}

std::string endpoint_name(const std::string& host, const std::string& port) {
    return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + port;
}

bool is_ip_literal(const std::string& host) {
    beast::error_code ec;
    net::ip::make_address(host, ec);
    return !ec;
}

// Attempt carries the state of one exchange; the deadline timer closes the socket when time runs out, which
// turns whatever operation is pending into an error that we then report as a timeout. cancel() does the same
// at once. It owns copies of the request and options: an exchange on the agent's loop outlives its caller.
class Attempt : public PendingExchange, public std::enable_shared_from_this<Attempt> {
public:
    Attempt(net::io_context& ioc,
            signer::Url base,
            signer::HttpRequest request,
            std::shared_ptr<const HttpsClientOptions> options)
        : base_(std::move(base)),
          request_(std::move(request)),
          owned_options_(std::move(options)),
          options_(*owned_options_),
          resolver_(ioc),
          stream_(ioc),
          deadline_timer_(ioc),
          deadline_(Clock::now() + options_.total_timeout) {}

    // run_owned keeps the attempt alive for the whole coroutine: its parameter lives in the coroutine frame.
    static net::awaitable<Result<signer::HttpResponse>> run_owned(std::shared_ptr<Attempt> self) {
        co_return co_await self->run();
    }

    void cancel() override {
        // Called on the loop: nothing here races with the exchange's own steps.
        net::post(deadline_timer_.get_executor(), [self = shared_from_this()] {
            if (!self->finished_) {
                self->cancelled_ = true;
                self->interrupt();
            }
        });
    }

private:
    net::awaitable<Result<signer::HttpResponse>> run() {
        deadline_timer_.expires_at(deadline_);
        deadline_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
            if (!ec) {
                self->timed_out_ = true;
                self->interrupt();
            }
        });
        auto result = co_await exchange();
        finished_ = true;
        deadline_timer_.cancel();
        if (cancelled_) {
            co_return make_error(Errc::upstream_unreachable,
                                 "the request to " + base_.host + " was cancelled");
        }
        co_return result;
    }

    void interrupt() {
        resolver_.cancel();
        beast::error_code ignored;
        stream_.socket().close(ignored);
    }

    Error network_error(Errc code, const std::string& what, const beast::error_code& ec) const {
        if (timed_out_) {
            return make_error(
                Errc::upstream_timeout,
                what + ": no answer within " + std::to_string(options_.total_timeout.count()) + " ms");
        }
        return make_error(code, what + ": " + ec.message());
    }

    void limit(std::chrono::milliseconds step) {
        stream_.expires_at(std::min(Clock::now() + step, deadline_));
    }

    net::awaitable<Result<signer::HttpResponse>> exchange() {
        const std::string& host = options_.proxy ? options_.proxy->host : base_.host;
        const std::string& port = options_.proxy ? options_.proxy->port : base_.port;
        const std::string peer = endpoint_name(host, port);
        auto [rec, endpoints] =
            co_await resolver_.async_resolve(host, port, tcp::resolver::numeric_service, kAwait);
        if (rec) {
            co_return network_error(Errc::upstream_unreachable, "cannot resolve " + peer, rec);
        }
        limit(options_.connect_timeout);
        auto [cec, connected] = co_await stream_.async_connect(endpoints, kAwait);
        if (cec) {
            if (cec == beast::error::timeout) {
                co_return make_error(Errc::upstream_timeout, "connect to " + peer + ": timed out");
            }
            co_return network_error(Errc::upstream_unreachable, "connect to " + peer, cec);
        }
        if (options_.proxy) {
            if (auto tunnel = co_await open_tunnel(); !tunnel) {
                co_return tunnel.error();
            }
        }
        if (base_.scheme == "https") {
            co_return co_await exchange_tls();
        }
        co_return co_await write_and_read(stream_);
    }

    // open_tunnel asks the proxy for a CONNECT tunnel to the endpoint (RFC 9110 §9.3.6).
    net::awaitable<Result<void>> open_tunnel() {
        const std::string authority = endpoint_name(base_.host, base_.port);
        http::request<http::empty_body> connect{http::verb::connect, authority, 11};
        connect.set(http::field::host, authority);
        if (options_.proxy->authorization) {
            connect.set(http::field::proxy_authorization,
                        std::string(options_.proxy->authorization->reveal()));
        }
        limit(options_.connect_timeout);
        auto [wec, wn] = co_await http::async_write(stream_, connect, kAwait);
        if (wec) {
            co_return network_error(Errc::upstream_unreachable, "proxy CONNECT", wec);
        }
        http::response_parser<http::empty_body> parser;
        parser.skip(true);  // a 2xx answer to CONNECT has no body: the tunnel starts right after the header
        auto [rec, rn] = co_await http::async_read_header(stream_, proxy_buffer_, parser, kAwait);
        if (rec) {
            co_return network_error(Errc::upstream_unreachable, "proxy CONNECT", rec);
        }
        const unsigned status = parser.get().result_int();
        if (status / 100 != 2) {
            co_return make_error(Errc::upstream_unreachable, "proxy refused CONNECT to " + authority +
                                                                 ": HTTP " + std::to_string(status));
        }
        if (proxy_buffer_.size() != 0) {
            co_return make_error(Errc::upstream_unreachable, "proxy sent data before the tunnel was used");
        }
        co_return Result<void>{};
    }

    net::awaitable<Result<signer::HttpResponse>> exchange_tls() {
        ssl::context ctx(ssl::context::tls_client);
        ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                        ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::no_compression);
        beast::error_code ec;
        if (options_.verify_peer) {
            if (!options_.ca_bundle.empty()) {
                // Check the file ourselves first so that a missing bundle is a clear "no input" error.
                if (auto bundle = read_public_file(options_.ca_bundle); !bundle) {
                    co_return bundle.error();
                } else if (ctx.add_certificate_authority(net::buffer(*bundle), ec); ec) {
                    co_return make_error(Errc::input_invalid, options_.ca_bundle.string() +
                                                                  ": not a PEM CA bundle: " + ec.message());
                }
            } else if (!use_system_trust_store(ctx.native_handle())) {
                co_return make_error(Errc::upstream_tls, "cannot load the system trust store");
            }
            ctx.set_verify_mode(ssl::verify_peer);
            ctx.set_verify_callback(ssl::host_name_verification(base_.host));
        } else {
            ctx.set_verify_mode(ssl::verify_none);
        }
        beast::ssl_stream<beast::tcp_stream&> tls(stream_, ctx);
        // SNI for names only (RFC 6066 §3 forbids IP literals). SSL_set_tlsext_host_name is a macro with a C
        // cast; this is its expansion.
        if (!is_ip_literal(base_.host) &&
            SSL_ctrl(tls.native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                     const_cast<char*>(base_.host.c_str())) != 1) {
            co_return make_error(Errc::upstream_tls, "cannot set TLS server name " + base_.host);
        }
        limit(options_.tls_timeout);
        auto [hec] = co_await tls.async_handshake(ssl::stream_base::client, kAwait);
        if (hec) {
            std::string detail = hec.message();
            if (const long verify = SSL_get_verify_result(tls.native_handle()); verify != X509_V_OK) {
                detail = X509_verify_cert_error_string(verify);
            }
            if (timed_out_ || hec == beast::error::timeout) {
                co_return make_error(Errc::upstream_timeout,
                                     "TLS handshake with " + base_.host + ": timed out");
            }
            co_return make_error(Errc::upstream_tls,
                                 "TLS handshake with " + base_.host + " failed: " + detail);
        }
        co_return co_await write_and_read(tls);
    }

    template <class Stream>
    net::awaitable<Result<signer::HttpResponse>> write_and_read(Stream& stream) {
        http::request<http::string_body> req;
        req.method_string(request_.method);
        std::string target = base_.path + request_.path;
        if (const std::string query = signer::encoded_query(request_); !query.empty()) {
            target += "?" + query;
        }
        req.target(target);
        req.version(11);
        for (const auto& [name, value] : request_.headers) {
            req.insert(name, value);
        }
        if (!options_.user_agent.empty()) {
            req.set(http::field::user_agent, options_.user_agent);
        }
        req.set(http::field::connection, "close");
        req.body() = request_.body;
        req.prepare_payload();

        stream_.expires_at(deadline_);
        auto [wec, wn] = co_await http::async_write(stream, req, kAwait);
        if (wec) {
            co_return network_error(Errc::upstream_unreachable, "sending to " + base_.host, wec);
        }
        http::response_parser<http::string_body> parser;
        parser.header_limit(16 * 1024);
        parser.body_limit(options_.max_response_bytes);
        auto [rec, rn] = co_await http::async_read(stream, buffer_, parser, kAwait);
        if (rec == http::error::body_limit || rec == http::error::header_limit) {
            co_return make_error(Errc::upstream_malformed, "answer from " + base_.host + " is larger than " +
                                                               std::to_string(options_.max_response_bytes) +
                                                               " bytes");
        }
        if (rec && rec.category() == http::make_error_code(http::error::bad_version).category() &&
            !timed_out_) {
            co_return make_error(Errc::upstream_malformed,
                                 "answer from " + base_.host + " is not valid HTTP: " + rec.message());
        }
        if (rec) {
            co_return network_error(Errc::upstream_unreachable, "reading the answer from " + base_.host, rec);
        }
        signer::HttpResponse response;
        const auto& msg = parser.get();
        response.status = static_cast<int>(msg.result_int());
        for (const auto& field : msg) {
            response.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
        }
        response.body = std::move(parser.release().body());
        co_return response;
    }

    const signer::Url base_;
    const signer::HttpRequest request_;
    const std::shared_ptr<const HttpsClientOptions> owned_options_;
    const HttpsClientOptions& options_;
    tcp::resolver resolver_;
    beast::tcp_stream stream_;
    net::steady_timer deadline_timer_;
    Clock::time_point deadline_;
    beast::flat_buffer buffer_;
    beast::flat_buffer proxy_buffer_;
    bool timed_out_ = false;
    bool cancelled_ = false;
    bool finished_ = false;
};

}  // namespace

std::shared_ptr<PendingExchange> async_send_request(net::io_context& io,
                                                    signer::Url base,
                                                    signer::HttpRequest request,
                                                    std::shared_ptr<const HttpsClientOptions> options,
                                                    ExchangeDone done) {
    auto attempt = std::make_shared<Attempt>(io, std::move(base), std::move(request), std::move(options));
    net::co_spawn(io, Attempt::run_owned(attempt),
                  [done = std::move(done)](std::exception_ptr e, Result<signer::HttpResponse> r) {
                      if (e) {
                          done(make_error(Errc::internal, "HTTPS client stopped unexpectedly"));
                      } else {
                          done(std::move(r));
                      }
                  });
    return attempt;
}

Result<signer::HttpResponse> send_request(const signer::Url& base,
                                          const signer::HttpRequest& request,
                                          const HttpsClientOptions& options) {
    net::io_context ioc(1);
    std::optional<Result<signer::HttpResponse>> outcome;
    // The options outlive the exchange: it ends before this function returns.
    const std::shared_ptr<const HttpsClientOptions> borrowed(&options, [](const HttpsClientOptions*) {});
    async_send_request(ioc, base, request, borrowed,
                       [&outcome](Result<signer::HttpResponse> r) { outcome.emplace(std::move(r)); });
    ioc.run();
    if (!outcome) {
        return make_error(Errc::internal, "HTTPS client stopped unexpectedly");
    }
    return std::move(*outcome);
}

}  // namespace rad::upstream
