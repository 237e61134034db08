-- wrk script of bench/hooks.py: POSTs pre-signed hooks, each body once, optionally at a fixed rate.
--
-- wrk -s bench/hooks.lua URL -- BODIES PATH RATE THREADS
--   BODIES   file of form-encoded bodies, one a line; thread i of THREADS sends lines i, i+THREADS, ...
--   PATH     request path (/hooks/sms)
--   RATE     hooks per second over all threads; 0 sends as fast as the connections allow
-- Prints one line "RESULT {json}" at the end: wrk's counts and latency percentiles (us), how many
-- times a thread ran out of bodies (wrapped: later sends are duplicates) and, at a fixed rate, how
-- many sends left more than 1 ms behind their slot (late: the schedule was not kept).

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local clock = ffi.new("bench_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local threads = {}
local started = 0

function setup(thread)
  thread:set("id", started)
  started = started + 1
  table.insert(threads, thread)
end

function init(args)
  local bodies, path, rate, count = args[1], args[2], tonumber(args[3]), tonumber(args[4])
  local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
  requests = {}
  local line_no = 0
  for line in io.lines(bodies) do
    if line_no % count == id then
      requests[#requests + 1] = wrk.format("POST", path, headers, line)
    end
    line_no = line_no + 1
  end
  following, wrapped, late = 1, 0, 0
  if rate > 0 then
    -- Each send takes the thread's next slot, whichever connection is free: an open schedule,
    -- so a slow answer delays no later slot while a connection is idle.
    local interval = count * 1000 / rate
    local slot = now_ms()
    delay = function()
      local wait = slot - now_ms()
      slot = slot + interval
      if wait < -1 then late = late + 1 end
      if wait <= 0 then return 0 end
      return wait
    end
  end
end

function request()
  local r = requests[following]
  following = following + 1
  if following > #requests then
    following, wrapped = 1, wrapped + 1
  end
  return r
end

function done(summary, latency, requests)
  local wrapped_all, late_all = 0, 0
  for _, thread in ipairs(threads) do
    wrapped_all = wrapped_all + thread:get("wrapped")
    late_all = late_all + thread:get("late")
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d},"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d},' ..
    '"wrapped":%d,"late":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    wrapped_all, late_all))
end
