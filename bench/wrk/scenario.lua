-- wrk script for kessai's benchmark scenarios (driven by `kessai-bench wrk`).
--
--   BENCH_KIND      intent | webhook | orders | standin
--   BENCH_REQUESTS  file of pre-generated requests, one per line:
--                     intent, orders: token<TAB>order_id   (users.tsv, pool-*.tsv)
--                     webhook:        signature<TAB>payload (kessai-bench sign-webhooks)
--   BENCH_STRIPE_KEY, BENCH_AMOUNT, BENCH_TAG   (standin only)
--   script argument 1: the number of wrk threads
--
--   BENCH_ONCE=1   send each line at most once (webhook events, orders whose
--                  first intent call is measured); without it, wrap around
--
-- Each wrk thread takes every n-th line (so no two threads send the same
-- webhook event or create the same order's intent) and sends its lines in
-- order. Without BENCH_ONCE, running off the end wraps around ("wraps").
-- With it, a connection that finds its thread's lines used up sends nothing
-- more (an empty request: wrk then waits on that connection for an answer
-- that never comes), and the thread counts as "exhausted": the scenario's
-- rate is then a lower bound (requests over the whole duration).
-- done() prints one line "BENCH_RESULT {json}" for kessai-bench.

local threads = {}
local counter = 0

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

local function read_lines(path)
   local out = {}
   for line in io.lines(path) do
      if #line > 0 then
         out[#out + 1] = line
      end
   end
   return out
end

local kind
local once
local reqs = {}
local standin_key, standin_body, standin_tag

function init(args)
   local nthreads = tonumber(args[1]) or 1
   kind = os.getenv("BENCH_KIND")
   once = os.getenv("BENCH_ONCE") == "1"
   idx = 0
   sent = 0
   wraps = 0
   exhausted = 0
   -- wrk calls request() once in the first thread before starting, to
   -- check the request (script_verify_request): that call must not use up
   -- a line nor count as sent.
   verifying = (tid == 0)
   if kind == "standin" then
      standin_key = "Bearer " .. (os.getenv("BENCH_STRIPE_KEY") or "sk_test_bench")
      standin_tag = (os.getenv("BENCH_TAG") or "0") .. "-" .. tid
      standin_body = "amount=" .. (os.getenv("BENCH_AMOUNT") or "1000") ..
         "&currency=jpy&metadata%5Border_id%5D=1&metadata%5Border_number%5D=ACQ-000000-000" ..
         "&metadata%5Buser_id%5D=1"
      return
   end
   local all = read_lines(os.getenv("BENCH_REQUESTS"))
   for i = 1, #all do
      if (i - 1) % nthreads == tid then
         local a, b = all[i]:match("^([^\t]*)\t(.*)$")
         if kind == "intent" then
            reqs[#reqs + 1] = wrk.format("POST", "/api/payments/intent",
               { ["Authorization"] = "Bearer " .. a, ["Content-Type"] = "application/json" },
               '{"order_id":' .. b .. '}')
         elseif kind == "webhook" then
            reqs[#reqs + 1] = wrk.format("POST", "/api/payments/webhook",
               { ["Stripe-Signature"] = a, ["Content-Type"] = "application/json; charset=utf-8" },
               b)
         elseif kind == "orders" then
            reqs[#reqs + 1] = wrk.format("GET", "/api/orders",
               { ["Authorization"] = "Bearer " .. a }, nil)
         else
            error("unknown BENCH_KIND " .. tostring(kind))
         end
      end
   end
   if #reqs == 0 then
      error("thread " .. tid .. " got no requests from " .. tostring(os.getenv("BENCH_REQUESTS")))
   end
end

function request()
   if verifying then
      verifying = false
      if kind == "standin" then
         return wrk.format("POST", "/v1/payment_intents", nil, standin_body)
      end
      return reqs[1]
   end
   if kind == "standin" then
      sent = sent + 1
      -- A unique idempotency key per request, as kessai sends.
      return wrk.format("POST", "/v1/payment_intents", {
         ["Authorization"] = standin_key,
         ["Content-Type"] = "application/x-www-form-urlencoded",
         ["Stripe-Version"] = "2024-06-20",
         ["Idempotency-Key"] = "bench-wrk-" .. standin_tag .. "-" .. sent,
      }, standin_body)
   end
   idx = idx + 1
   if idx > #reqs then
      if once then
         exhausted = 1
         return ""
      end
      idx = 1
      wraps = wraps + 1
   end
   sent = sent + 1
   return reqs[idx]
end

function done(summary, latency, requests)
   local total_sent, total_wraps, total_exhausted = 0, 0, 0
   for _, thread in ipairs(threads) do
      total_sent = total_sent + (thread:get("sent") or 0)
      total_wraps = total_wraps + (thread:get("wraps") or 0)
      total_exhausted = total_exhausted + (thread:get("exhausted") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,' ..
      '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%d,"sent":%d,"wraps":%d,' ..
      '"exhausted":%d}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
      e.status, e.timeout,
      math.floor(latency:percentile(50)), math.floor(latency:percentile(90)),
      math.floor(latency:percentile(99)), math.floor(latency.max), math.floor(latency.mean),
      total_sent, total_wraps, total_exhausted))
end
