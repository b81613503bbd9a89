-- wrk script: POST GraphQL bodies read from a file (one JSON body per line), rotating
-- through them, and count responses that are errors although wrk sees HTTP 200: a body
-- with a GraphQL "errors" key. Derived from the PostGraphile anchor's wrk_graphql.lua
-- (same requests, same checks), with p95 and p99.9 added to the summary line.
-- usage: wrk -t1 -c16 -d15s --latency -s wrk_graphql.lua URL -- FILE.bodies [LABEL]
local threads = {}
local nthreads = 0

function setup(thread)
  thread:set("id", nthreads)
  nthreads = nthreads + 1
  table.insert(threads, thread)
end

function init(args)
  local file = args[1] or error("pass the bodies file after --")
  label = args[2] or file
  local headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
  reqs = {}
  -- bodies with the marker @SEQ@ are made anew per request, the marker replaced by a
  -- value unique to the thread and request (a tool call's id must never repeat)
  templates, hdrs = {}, headers
  for line in io.lines(file) do
    if #line > 0 then
      if string.find(line, "@SEQ@", 1, true) then
        templates[#reqs + 1] = line
      end
      reqs[#reqs + 1] = wrk.format("POST", wrk.path, headers, line)
    end
  end
  seq = 0
  if #reqs == 0 then error("no bodies in " .. file) end
  -- each thread starts at a different offset so threads do not walk in lockstep
  idx = ((id or 0) * 7) % #reqs
  responses, gql_errors, bytes_body = 0, 0, 0
end

function request()
  idx = idx % #reqs + 1
  local template = templates[idx]
  if template then
    seq = seq + 1
    local unique = string.gsub(template, "@SEQ@", (id or 0) .. "_" .. seq)
    return wrk.format("POST", wrk.path, hdrs, unique)
  end
  return reqs[idx]
end

function response(status, headers, body)
  responses = responses + 1
  bytes_body = bytes_body + #body
  if string.find(body, '"errors":', 1, true) then
    gql_errors = gql_errors + 1
  end
end

function done(summary, latency, requests)
  local gql, resp = 0, 0
  for _, t in ipairs(threads) do
    gql = gql + (t:get("gql_errors") or 0)
    resp = resp + (t:get("responses") or 0)
  end
  local label = threads[1] and threads[1]:get("label") or "?"
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"label":"%s","duration_s":%.3f,"requests":%d,"rps":%.1f,' ..
    '"p50_ms":%.3f,"p90_ms":%.3f,"p95_ms":%.3f,"p99_ms":%.3f,"p999_ms":%.3f,' ..
    '"max_ms":%.3f,"mean_ms":%.3f,' ..
    '"non2xx":%d,"connect_err":%d,"read_err":%d,"write_err":%d,"timeouts":%d,' ..
    '"gql_errors":%d,"responses_seen":%d,"bytes":%d}\n',
    label, secs, summary.requests, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    latency.max / 1000, latency.mean / 1000,
    e.status, e.connect, e.read, e.write, e.timeout, gql, resp, summary.bytes))
end
