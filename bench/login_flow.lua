-- Complete authorization-code logins with a password, driven by wrk (bench/oidc.py).
--
--   wrk -t N -c N -d 15s -s bench/login_flow.lua http://127.0.0.1:PORT -- DATA.lua
--
-- One connection per wrk thread, so each thread is one browser signing in again and
-- again: GET /oauth2/authorize (the sign-in page), POST /login (argon2id; answered by
-- the redirect to the app with the code), POST /oauth2/token (the code for tokens, with
-- PKCE). Every login starts as a new browser: no SSO session cookie, a fresh CSRF cookie.
-- Each thread signs in as a student of its own (bench/students.py makes one per thread):
-- the sign-in guard checks one password at a time per account.
-- wrk hands a script only the last header of a name, so the CSRF cookie is the
-- browser's own random value sent with the first request (the server then puts its MAC
-- in the form), and the interaction cookie is the form's `ia` field. DATA.lua (written by
-- bench/oidc.py) returns the client's Authorization header, the redirect URI, the
-- students' form-encoded credentials and PKCE verifier/challenge pairs.
-- Each thread counts its logins, its failures and each login's duration (monotonic clock
-- through LuaJIT's ffi); done() prints one line that bench/oidc.py parses:
--   LOGINS ok=<n> failed=<n> seconds=<x> p50_ms=<x> p99_ms=<x> first_error=<text>

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } wrk_timespec;
  int clock_gettime(int clock_id, wrk_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local now_ts = ffi.new("wrk_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, now_ts)
  return tonumber(now_ts.tv_sec) * 1000 + tonumber(now_ts.tv_nsec) / 1e6
end

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local data, step, n, began, state, verifier, csrf, csrf_token, ia, code

ok, failed, first_error, durations = 0, 0, "", {}

function init(args)
  data = dofile(args[1])
  n = thread_id
  step = "authorize"
end

local function urlencode(text)
  return (text:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function fail(why)
  failed = failed + 1
  if first_error == "" then first_error = why end
  step = "authorize"
end

function request()
  if step == "authorize" then
    n = n + 1
    began = now_ms()
    local pair = data.pkce[(n % #data.pkce) + 1]
    verifier = pair[1]
    state = "s" .. thread_id .. "x" .. n
    csrf = "c" .. thread_id .. "x" .. n .. "x" .. pair[2]:sub(1, 16)
    local query = "response_type=code&client_id=" .. urlencode(data.client_id)
      .. "&redirect_uri=" .. urlencode(data.redirect_uri)
      .. "&scope=" .. urlencode(data.scope) .. "&state=" .. state
      .. "&nonce=n" .. thread_id .. "x" .. n
      .. "&code_challenge=" .. pair[2] .. "&code_challenge_method=S256"
    return wrk.format("GET", "/oauth2/authorize?" .. query, {Cookie = "csrf=" .. csrf})
  elseif step == "login" then
    local user = data.users[(thread_id % #data.users) + 1]  -- each browser, its own student
    local body = "csrf_token=" .. urlencode(csrf_token) .. "&ia=" .. urlencode(ia)
      .. "&login=" .. user[1] .. "&password=" .. user[2]
    return wrk.format("POST", "/login", {
      Cookie = "csrf=" .. csrf .. "; idp_ia=" .. ia,
      ["Content-Type"] = "application/x-www-form-urlencoded",
    }, body)
  else
    local body = "grant_type=authorization_code&code=" .. code
      .. "&redirect_uri=" .. urlencode(data.redirect_uri) .. "&code_verifier=" .. verifier
    return wrk.format("POST", "/oauth2/token", {
      Authorization = data.authorization,
      ["Content-Type"] = "application/x-www-form-urlencoded",
    }, body)
  end
end

function response(status, headers, body)
  if step == "authorize" then
    local token = body:match('name="csrf_token"%s+value="([^"]+)"')
    ia = body:match('<input type="hidden" name="ia" value="([^"]*)"')
    if status ~= 200 or not token or not ia or ia == "" then
      return fail("no login form (HTTP " .. status .. ")")
    end
    csrf_token = token
    step = "login"
  elseif step == "login" then
    local location = headers["location"] or headers["Location"] or ""
    code = location:match("[?&]code=([^&]+)")
    local returned_state = location:match("[?&]state=([^&]+)")
    if status ~= 303 and status ~= 302 or not code then
      return fail("no code (HTTP " .. status .. ", location " .. location:sub(1, 80) .. ")")
    end
    if location:sub(1, #data.redirect_uri) ~= data.redirect_uri or returned_state ~= state then
      return fail("redirect to another place or state mismatch")
    end
    step = "token"
  else
    if status ~= 200 or not body:find('"id_token"', 1, true) then
      return fail("token exchange: HTTP " .. status .. " " .. body:sub(1, 120))
    end
    ok = ok + 1
    table.insert(durations, now_ms() - began)
    step = "authorize"
  end
end

function done(summary, latency, requests)
  local all, total_ok, total_failed, why = {}, 0, 0, ""
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_failed = total_failed + thread:get("failed")
    if why == "" then why = thread:get("first_error") end
    for _, ms in ipairs(thread:get("durations")) do table.insert(all, ms) end
  end
  table.sort(all)
  local function at(fraction)
    if #all == 0 then return -1 end
    return all[math.min(#all, math.floor(#all * fraction) + 1)]
  end
  io.write(string.format(
    "LOGINS ok=%d failed=%d seconds=%.3f p50_ms=%.2f p99_ms=%.2f first_error=%s\n",
    total_ok, total_failed, summary.duration / 1e6, at(0.5), at(0.99),
    (why:gsub("%s", "_"))))
end
