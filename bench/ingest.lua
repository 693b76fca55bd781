-- wrk script for bench/ingest.sh: CloudEvents ingest load with a unique id on every event.
--
--   wrk ... -s bench/ingest.lua URL -- single        one binary-mode event per request
--   wrk ... -s bench/ingest.lua URL -- batch 100     structured batches of 100 events
--   wrk ... -s bench/ingest.lua URL -- batch 100 SALT N M   each thread stops after N 2xx answers
--                                                          and then writes the file M.<thread>
--
-- ids are "<random run prefix>-<thread>-<counter>[-<member>]", so no request ever hits the
-- duplicate path; tenants cycle over TENANTS names (bench-t0 .. bench-t999).
-- done() prints one line "BENCH_RESULT key=value ..." that ingest.sh parses.

local TENANTS = 1000
local SOURCE = "//bench.acme.example/wrk"
local TYPE = "com.acme.tenant.lifecycle.upsert"
local PLANS = { "gold", "silver", "bronze", "free" }

local threads = {}
local next_thread = 0

function setup(thread)
   thread:set("tid", next_thread)
   next_thread = next_thread + 1
   table.insert(threads, thread)
end

-- Per-thread state (each wrk thread has its own Lua state).
local mode, batch_size, prefix, counter, time_str, stop_after, stop_marker
local status_2xx, status_200, status_202, accepted, duplicates, non2xx = 0, 0, 0, 0, 0, 0
local first_error = ""

function init(args)
   mode = args[1] or "single"
   batch_size = tonumber(args[2] or "100")
   -- A random prefix per run and thread: ids are unique across runs on one store too.
   math.randomseed(os.time() * 1000 + tid * 7919 + math.floor(os.clock() * 1e6))
   -- args[3]: a salt per wrk process, so concurrent wrk runs (two replicas) never share ids.
   prefix = (args[3] or "") ..
      string.format("%08x%04x", math.random(0, 0x7fffffff), math.random(0, 0xffff))
   -- args[4]: stop this thread after that many 2xx answers (the fill phase of ingest.sh,
   -- which grows the journal to a set size); absent or 0 runs for wrk's whole duration.
   stop_after = tonumber(args[4] or "0") or 0
   -- args[5]: a path prefix; a thread that stops writes "<prefix>.<thread>", because wrk
   -- itself runs on until its -d duration even when every thread has stopped.
   stop_marker = args[5] or ""
   counter = 0
   time_str = os.date("!%Y-%m-%dT%H:%M:%SZ")
end

local function tenant_of(n)
   -- Multiply by a prime so consecutive requests spread over the tenants.
   return "bench-t" .. ((n * 7919 + tid * 131) % TENANTS)
end

local function data_json(n)
   return '{"plan":"' .. PLANS[(n % #PLANS) + 1] .. '","seats":' .. (n % 500) ..
      ',"region":"eu-west-1"}'
end

function request()
   counter = counter + 1
   local base = prefix .. "-" .. tid .. "-" .. counter
   if mode == "single" then
      local headers = {
         ["Content-Type"] = "application/json",
         ["ce-specversion"] = "1.0",
         ["ce-id"] = base,
         ["ce-source"] = SOURCE,
         ["ce-type"] = TYPE,
         ["ce-time"] = time_str,
         ["ce-tenant"] = tenant_of(counter),
      }
      return wrk.format("POST", nil, headers, data_json(counter))
   end
   local parts = {}
   for i = 1, batch_size do
      local n = counter * batch_size + i
      parts[i] = '{"specversion":"1.0","id":"' .. base .. "-" .. i ..
         '","source":"' .. SOURCE .. '","type":"' .. TYPE ..
         '","time":"' .. time_str .. '","tenant":"' .. tenant_of(n) ..
         '","datacontenttype":"application/json","data":' .. data_json(n) .. "}"
   end
   local headers = { ["Content-Type"] = "application/cloudevents-batch+json" }
   return wrk.format("POST", nil, headers, "[" .. table.concat(parts, ",") .. "]")
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      status_2xx = status_2xx + 1
      if stop_after > 0 and status_2xx == stop_after then
         if stop_marker ~= "" then
            local marker = io.open(stop_marker .. "." .. tid, "w")
            if marker then marker:close() end
         end
         wrk.thread:stop()
      end
      if status == 200 then status_200 = status_200 + 1 end
      if status == 202 then status_202 = status_202 + 1 end
      local a = body and string.match(body, '"accepted"%s*:%s*(%d+)')
      if a then accepted = accepted + tonumber(a) end
      local d = body and string.match(body, '"duplicates"%s*:%s*(%d+)')
      if d then duplicates = duplicates + tonumber(d) end
   else
      non2xx = non2xx + 1
      if first_error == "" then
         first_error = status .. " " .. string.sub(body or "", 1, 600)
      end
   end
   -- Exported for done() in the main Lua state.
   wrk.thread:set("s2xx", status_2xx)
   wrk.thread:set("s200", status_200)
   wrk.thread:set("s202", status_202)
   wrk.thread:set("acc", accepted)
   wrk.thread:set("dup", duplicates)
   wrk.thread:set("non2xx", non2xx)
   if first_error ~= "" then wrk.thread:set("first_error", first_error) end
end

function done(summary, latency, requests)
   local s2xx, s200, s202, acc, dup, bad, first = 0, 0, 0, 0, 0, 0, ""
   for _, t in ipairs(threads) do
      s2xx = s2xx + (t:get("s2xx") or 0)
      s200 = s200 + (t:get("s200") or 0)
      s202 = s202 + (t:get("s202") or 0)
      acc = acc + (t:get("acc") or 0)
      dup = dup + (t:get("dup") or 0)
      bad = bad + (t:get("non2xx") or 0)
      local fe = t:get("first_error")
      if first == "" and fe then first = fe end
   end
   local secs = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      "BENCH_RESULT requests=%d seconds=%.3f rps=%.1f ok=%d s200=%d s202=%d accepted=%d " ..
      "duplicates=%d non2xx=%d sock_connect=%d sock_read=%d sock_write=%d sock_timeout=%d " ..
      "p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
      summary.requests, secs, summary.requests / secs, s2xx, s200, s202, acc, dup, bad,
      e.connect, e.read, e.write, e.timeout,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000))
   if first ~= "" then
      io.write("BENCH_FIRST_ERROR " .. string.gsub(first, "\n", " ") .. "\n")
   end
end
