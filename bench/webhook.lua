-- wrk script for bench/ingest.py: POSTs signed delivery bodies with a unique
-- X-GitHub-Delivery per request, counts answers by status and prints one JSON line.
--
--   wrk ... -s bench/webhook.lua URL -- MANIFEST PATH EVENT ID_PREFIX MAX
--
-- MANIFEST has one "<signature> <compact JSON body>" line per body; requests cycle
-- through them. A signature covers the body only, so it is computed once (by the caller) and
-- requests differ in their delivery id: "<ID_PREFIX>-<thread>-<n>".
-- A thread stops after MAX answers, so a run is bounded in count as well as time.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

function init(args)
  local path, event, id_prefix = args[2], args[3], args[4]
  max_answers = tonumber(args[5])
  templates = {}
  for line in io.lines(args[1]) do
    local signature, body = line:match("^(%S+) (.+)$")
    local head = "POST " .. path .. " HTTP/1.1\r\n"
      .. "Host: 127.0.0.1\r\n"
      .. "User-Agent: GitHub-Hookshot/bench\r\n"
      .. "Content-Type: application/json\r\n"
      .. "X-GitHub-Event: " .. event .. "\r\n"
      .. "X-Hub-Signature-256: " .. signature .. "\r\n"
      .. "Content-Length: " .. #body .. "\r\n"
      .. "X-GitHub-Delivery: " .. id_prefix .. "-" .. thread_number .. "-"
    table.insert(templates, {head, "\r\n\r\n" .. body})
  end
  sent = 0
  answered = 0
  statuses = {}
end

function request()
  local t = templates[sent % #templates + 1]
  sent = sent + 1
  return t[1] .. sent .. t[2]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  answered = answered + 1
  if answered >= max_answers then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local counts, sent_total = {}, 0
  for _, thread in ipairs(threads) do
    sent_total = sent_total + thread:get("sent")
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"duration_us": %d, "requests": %d, "sent": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d}, '
      .. '"statuses": {%s}}\n',
    summary.duration, summary.requests, sent_total, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9),
    table.concat(parts, ", ")))
end
