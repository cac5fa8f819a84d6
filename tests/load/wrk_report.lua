-- wrk script of the load suite and bench/run. The request comes from the arguments after "--":
--   METHOD [HEADER-NAME HEADER-VALUE]...
-- and done() prints one line, "WRK_JSON {...}", with the counts and the latency percentiles (microseconds)
-- that the tests assert or print; wrk's own --latency table stops at p99, the plan also wants p99.9.

local request_text

function init(args)
  wrk.method = args[1] or "GET"
  local i = 2
  while args[i] ~= nil and args[i + 1] ~= nil do
    wrk.headers[args[i]] = args[i + 1]
    i = i + 2
  end
  request_text = wrk.format()
end

function request()
  return request_text
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"duration_us": %d, "requests": %d, "bytes": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"p999_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
