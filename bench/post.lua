-- wrk script for the benchmark: POST a JSON body; for streams, count content deltas.
-- args (after --): body_file [marker end_marker]
-- With a marker, response() counts its occurrences in each body (wrk hands the whole,
-- de-chunked body) and checks the end marker; without one, wrk skips body handling.
-- done() prints one line "BENCH_JSON {...}" for the harness to parse.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
  marker = args[2]
  end_marker = args[3]
  markers = 0
  incomplete = 0
  non200 = 0
  if marker == nil or marker == "" then
    response = nil
  end
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    return
  end
  local pos = 1
  while true do
    local s, e = string.find(body, marker, pos, true)
    if not s then break end
    markers = markers + 1
    pos = e + 1
  end
  local from = #body - 4096
  if from < 1 then from = 1 end
  if not string.find(body, end_marker, from, true) then
    incomplete = incomplete + 1
  end
end

function done(summary, latency, requests)
  local m, inc, bad = 0, 0, 0
  for _, t in ipairs(threads) do
    m = m + (t:get("markers") or 0)
    inc = inc + (t:get("incomplete") or 0)
    bad = bad + (t:get("non200") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d},' ..
    '"markers":%d,"incomplete":%d,"non200":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9),
    m, inc, bad))
end
