-- wrk script: POSTs the file named by $UPLOAD as multipart field `file` to
-- the path given on the command line, counts answers by status, and prints one
-- JSON line of results at the end (scripts/load_test.sh collects them).
local path = os.getenv("UPLOAD")
local file = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
local data = file:read("*all")
file:close()
local boundary = "wrk-emotion-ai-boundary"
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.body = "--" .. boundary .. "\r\n"
  .. "Content-Disposition: form-data; name=\"file\"; filename=\"upload\"\r\n"
  .. "Content-Type: application/octet-stream\r\n\r\n"
  .. data .. "\r\n--" .. boundary .. "--\r\n"

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts, parts = {}, {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.2f,"per_second":%.2f,"p50_ms":%.1f,"p90_ms":%.1f,"p99_ms":%.1f,"max_ms":%.1f,'
      .. '"socket_errors":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
    e.connect + e.read + e.write + e.timeout, table.concat(parts, ",")))
end
