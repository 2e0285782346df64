-- wrk script for bench/intake.py.
--
-- Every request is the same signed body (the signature covers only the body)
-- with a fresh X-GitHub-Delivery, since the service dedupes by it. Responses
-- are counted by status, and done() writes a JSON summary to BENCH_OUT.
--
-- Environment: BENCH_BODY (payload file), BENCH_SIGNATURE, BENCH_RUN (a run
-- id), BENCH_PATH, BENCH_OUT, BENCH_IDS (`guid`, the default, or
-- `sequential`: `<run>-<thread>-<n>`, as before 2026-11-26).

local threads = {}
local next_id = 1

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
  local body = f:read("*a")
  f:close()
  -- The request is built by hand around the delivery id: one concatenation
  -- per request keeps the load generator's own cost low.
  head = "POST " .. os.getenv("BENCH_PATH") .. " HTTP/1.1\r\n"
    .. "Host: " .. wrk.host .. ":" .. wrk.port .. "\r\n"
    .. "User-Agent: GitHub-Hookshot/bench\r\n"
    .. "Content-Type: application/json\r\n"
    .. "Content-Length: " .. #body .. "\r\n"
    .. "X-GitHub-Event: issues\r\n"
    .. "X-GitHub-Hook-ID: 1\r\n"
    .. "X-Hub-Signature-256: " .. os.getenv("BENCH_SIGNATURE") .. "\r\n"
    .. "X-GitHub-Delivery: "
  tail = "\r\n\r\n" .. body
  sent = 0
  statuses = {}
  run = os.getenv("BENCH_RUN")
  guids = os.getenv("BENCH_IDS") ~= "sequential"
  -- A 16-bit tag per run and thread keeps ids of different runs apart.
  local tag = thread_id
  for i = 1, #run do tag = (tag * 31 + run:byte(i)) % 65536 end
  run_tag = tag
  math.randomseed(os.time() * 1000 + thread_id)
end

-- GitHub's delivery ids are GUIDs whose first field changes fastest, so they
-- land at scattered places in the store's primary-key index; so do these.
-- The last field is this thread's counter: unique within the run.
function request()
  sent = sent + 1
  local id
  if guids then
    id = string.format("%04x%04x-%04x-11f0-%04x-%012x",
      math.random(0, 65535), math.random(0, 65535), math.random(0, 65535), run_tag, sent)
  else
    id = run .. "-" .. thread_id .. "-" .. sent
  end
  return head .. id .. tail
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  local sent_total = 0
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses")) do
      counts[code] = (counts[code] or 0) + n
    end
    sent_total = sent_total + thread:get("sent")
  end
  local parts = {}
  for code, n in pairs(counts) do
    table.insert(parts, string.format('"%d": %d', code, n))
  end
  local e = summary.errors
  local out = assert(io.open(os.getenv("BENCH_OUT"), "w"))
  out:write(string.format(
    '{"requests": %d, "sent": %d, "duration_us": %d, "statuses": {%s}, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
    summary.requests, sent_total, summary.duration, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max
  ))
  out:close()
end
