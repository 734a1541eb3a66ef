-- wrk script for the soak: send a random request from the file named after `--` (one per line: METHOD, a tab,
-- the path, and for a POST a tab and its JSON body), the bearer token given second on every POST. Counts answers
-- by status class in each thread and prints one JSON line of figures when done.
local requests = {}
local counts = { s2 = 0, s3 = 0, s4 = 0, s5 = 0 }
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  local post_headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. args[2] }
  for line in io.lines(args[1]) do
    local method, path, body = line:match("^(%u+)\t([^\t]+)\t?(.*)$")
    if method == "POST" then
      requests[#requests + 1] = wrk.format("POST", path, post_headers, body)
    else
      requests[#requests + 1] = wrk.format("GET", path)
    end
  end
  math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1e6))
end

function request()
  return requests[math.random(#requests)]
end

function response(status, headers, body)
  local class = "s" .. math.floor(status / 100)
  counts[class] = (counts[class] or 0) + 1
  s2, s3, s4, s5 = counts.s2, counts.s3, counts.s4, counts.s5
end

function done(summary, latency, requests)
  local by_class = { s2 = 0, s3 = 0, s4 = 0, s5 = 0 }
  for _, thread in ipairs(threads) do
    for class in pairs(by_class) do
      by_class[class] = by_class[class] + (thread:get(class) or 0)
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d,'
      .. ' "timeouts": %d, "status_2xx": %d, "status_3xx": %d, "status_4xx": %d, "status_5xx": %d,'
      .. ' "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout,
    by_class.s2, by_class.s3, by_class.s4, by_class.s5,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
