-- The Redis queue backend's script. host/queue/redis.c embeds this file, loads it on every
-- connection with SCRIPT LOAD and calls it with EVALSHA <sha> 0 <op> <prefix> <now> ...:
-- one script, one operation per call, each call atomic (Redis runs one script at a time),
-- which is what makes a claim hand a job to one claimer only and a dedupe key and its
-- jobs one step.
--
-- This is Lua 5.1 inside Redis: numbers are doubles. Times therefore travel as strings
-- that C formatted with %.17g (exact round trips) and are stored as given; the script only
-- compares them (tonumber) and never prints a computed time, except through fmt (%.17g).
-- GCRA times are integer nanoseconds beyond 2^53: see the rate operation.
--
-- Keys (P is the URL's prefix, "luar:" by default; docs/queue-backends.md has the table):
--   P job:<id>             hash: the job's fields (FIELDS below); absent fields are NULL
--   P ids                  zset, all scores 0: every job id, in id (= time) order
--   P state:<s>            zset, scores 0: the ids in state s, for s = 1 scheduled,
--                          4 retrying, 5 dead only: the states people list and repair.
--                          The hot path (queued -> running -> succeeded) keeps no listing
--                          index (as SQLite dropped its index by state): those states are
--                          listed by reading P ids and filtering
--   P counts               hash "<state>:<queue>" -> number of jobs
--   P ready:<queue>:<prio> zset score run_at: claimable jobs (states 0, 1, 4) of a queue
--                          and priority; equal run_at order by id, as SQLite's index does
--   P prios:<queue>        zset: the priorities that have a ready set, score = priority
--   P queues               set: the queues that have claimable jobs
--   P waiting              zset score run_at: scheduled and retrying jobs (next_due)
--   P leases               zset score lease_expires_at: running jobs (sweep)
--   P expiry               zset score expires_at: finished jobs (sweep deletes them)
--   P keys                 hash unique key -> id of the unfinished job holding it
--   P dedupe               zset score expires_at: dedupe keys (webhooks, events, cron ticks)
--   P rate                 hash rate key -> GCRA TAT (unix ns, decimal string)
--   P rate:tat             zset score TAT in seconds: what the sweep deletes
--   P cache:<key>          string: a luar.cache value (SET PX / GET / DEL from C; incr here)
--   P kv:<key>             string: a durable key-value record (luar_queue_kv; op 'kv')

local op, P, now = ARGV[1], ARGV[2], ARGV[3]
local nown = tonumber(now)
local call = redis.call

local FIELDS = { 'name', 'queue', 'args', 'key', 'priority', 'state', 'attempt', 'max_attempts',
    'enqueued_at', 'run_at', 'started_at', 'finished_at', 'lease_expires_at', 'owner', 'result',
    'last_error', 'traceback', 'expires_at' }
local LEASE_EXPIRED = 'lease expired (the worker running it stopped)'
-- Jobs a maintenance call touches at most, so no call blocks Redis for long; the caller
-- calls again with the cursor returned (retry_many, purge) or at its next sweep.
local BATCH = 1000
-- Ids a list call reads at most looking for matches.
local SCAN_BUDGET = 5000
-- Answers that are not an error reply: 0 done, or one of these (C maps them to LUAR_E*).
local NOT_FOUND, BUSY, EXISTS = -1, -2, -3

local function jkey(id) return P .. 'job:' .. id end

local function count(state, queue, delta)
    local f = state .. ':' .. queue
    if call('HINCRBY', P .. 'counts', f, delta) <= 0 then call('HDEL', P .. 'counts', f) end
end

local INDEXED = { ['1'] = true, ['4'] = true, ['5'] = true }

-- Moves a job from state `from` (nil: new) to `to`, writing the extra field/value pairs
-- given in the same HSET.
local function set_state(id, queue, from, to, ...)
    if from ~= to then
        if from then
            if INDEXED[from] then call('ZREM', P .. 'state:' .. from, id) end
            count(from, queue, -1)
        end
        if INDEXED[to] then call('ZADD', P .. 'state:' .. to, 0, id) end
        count(to, queue, 1)
    end
    call('HSET', jkey(id), 'state', to, ...)
end

local function ready_add(id, queue, prio, run_at)
    call('ZADD', P .. 'ready:' .. queue .. ':' .. prio, run_at, id)
    call('ZADD', P .. 'prios:' .. queue, prio, prio)
    call('SADD', P .. 'queues', queue)
end

-- Empty ready sets are forgotten by the claim that finds them empty, not here: this runs
-- for every job.
local function ready_rem(id, queue, prio)
    call('ZREM', P .. 'ready:' .. queue .. ':' .. prio, id)
end

-- A finished or deleted job gives its unique key back.
local function release_key(id, key)
    if key and call('HGET', P .. 'keys', key) == id then call('HDEL', P .. 'keys', key) end
end

-- Sets an optional field: present (flag '1') or deleted.
local function set_opt(k, field, flag, value)
    if flag == '1' then call('HSET', k, field, value) else call('HDEL', k, field) end
end

-- Appends id and its FIELDS (false, i.e. a nil reply, for absent ones) to out.
local function job_reply(out, id)
    local v = call('HMGET', jkey(id), unpack(FIELDS))
    out[#out + 1] = id
    for i = 1, #FIELDS do out[#out + 1] = v[i] end
end

local function drop(id)
    local k = jkey(id)
    local v = call('HMGET', k, 'queue', 'priority', 'state', 'key')
    local queue, prio, state, key = v[1], v[2], v[3], v[4]
    if not state then return false end
    call('ZREM', P .. 'ids', id)
    if INDEXED[state] then call('ZREM', P .. 'state:' .. state, id) end
    count(state, queue, -1)
    if state == '0' or state == '1' or state == '4' then ready_rem(id, queue, prio) end
    call('ZREM', P .. 'waiting', id)
    call('ZREM', P .. 'leases', id)
    call('ZREM', P .. 'expiry', id)
    release_key(id, key)
    call('DEL', k)
    return true
end

-- The fenced writes' check: the job is running and `owner` holds it.
local function owned(id, owner)
    local v = call('HMGET', jkey(id), 'state', 'owner', 'queue', 'priority', 'key')
    if v[1] ~= '2' or v[2] ~= owner then return nil end
    return v
end

-- dead|succeeded|retrying|scheduled -> queued now, attempt 0 (v: state, queue, prio, key).
local function requeue(id, v)
    local state, queue, prio, key = v[1], v[2], v[3], v[4]
    if key then
        local holder = call('HGET', P .. 'keys', key)
        if holder and holder ~= id then return EXISTS end
        call('HSET', P .. 'keys', key, id)
    end
    set_state(id, queue, state, '0', 'attempt', '0', 'run_at', now, 'finished_at', '0',
        'expires_at', '0', 'lease_expires_at', '0')
    call('HDEL', jkey(id), 'owner', 'result')
    call('ZREM', P .. 'waiting', id)
    call('ZREM', P .. 'expiry', id)
    ready_add(id, queue, prio, now)
    return 0
end

-- Calls fn(id) on the jobs whose state is in `states` (a set), from `cursor` (an id,
-- exclusive; '' from the start), reading at most BATCH ids; returns the cursor to go on
-- from, or false when every id was seen. One cold state reads its own index; anything
-- else reads every id and filters. fn may change the job's state.
local function scan(states, cursor, fn)
    local zkey, only = P .. 'ids', nil
    for s in pairs(states) do
        only = only == nil and s or false
    end
    if only and INDEXED[only] then zkey = P .. 'state:' .. only end
    local min = '-'
    if cursor ~= '' then min = '(' .. cursor end
    local ids = call('ZRANGEBYLEX', zkey, min, '+', 'LIMIT', 0, BATCH)
    for _, id in ipairs(ids) do
        if states[call('HGET', jkey(id), 'state')] then fn(id) end
    end
    if #ids < BATCH then return false end
    return ids[#ids]
end

-- Whether a job matches a list filter ('' matches anything; state '-1' too; `err` is
-- text last_error contains; `since`, `till` bound the job's time, '0' for none: finished_at
-- when it finished, else enqueued_at, as in SQLite's FILTER).
local function matches(id, queue, name, state, err, since, till)
    local v = call('HMGET', jkey(id), 'queue', 'name', 'state', 'last_error', 'finished_at',
        'enqueued_at')
    if not ((queue == '' or v[1] == queue) and (name == '' or v[2] == name) and
        (state == '-1' or v[3] == state)) then return false end
    if err ~= '' and not (v[4] and string.find(v[4], err, 1, true)) then return false end
    if since ~= '0' or till ~= '0' then
        local t = tonumber(v[5] or '0') or 0
        if t <= 0 then t = tonumber(v[6] or '0') or 0 end
        if since ~= '0' and t < tonumber(since) then return false end
        if till ~= '0' and t >= tonumber(till) then return false end
    end
    return true
end

-- ---- GCRA on integer nanoseconds ------------------------------------------------------
-- Unix nanoseconds (~1.7e18) do not fit a double exactly, so they are decimal strings
-- here, split into (seconds, nanoseconds) to subtract and add. Everything else is a
-- difference from now, bounded by the tolerance (burst * interval), which C keeps under
-- 2^52: there every double is an exact integer, and the arithmetic below is exactly that
-- of luar_gcra_check in host/ratelimit/gcra.c.
local E9 = 1000000000

local function split(s)
    local n = #s
    if n <= 9 then return 0, tonumber(s) end
    return tonumber(string.sub(s, 1, n - 9)), tonumber(string.sub(s, n - 8))
end

-- a - b for decimal strings; exact while |a - b| < 2^53, else only its sign and size count.
local function ns_sub(a, b)
    local ah, al = split(a)
    local bh, bl = split(b)
    return (ah - bh) * E9 + (al - bl)
end

-- a + d, a a decimal string, d an integer-valued double in [0, 2^53).
local function ns_add(a, d)
    local ah, al = split(a)
    local dl = math.fmod(d, E9)
    local hi, lo = ah + (d - dl) / E9, al + dl
    if lo >= E9 then
        lo = lo - E9
        hi = hi + 1
    end
    if hi == 0 then return string.format('%d', lo) end
    return string.format('%d%09d', hi, lo)
end

-- floor(a / b) for integer-valued doubles, a >= 0, b > 0, corrected for rounding.
local function quot(a, b)
    local q = math.floor(a / b)
    while q * b > a do q = q - 1 end
    while (q + 1) * b <= a do q = q + 1 end
    return q
end

local function int(x) return string.format('%.0f', x) end

local function rate_store(key, tat)
    call('HSET', P .. 'rate', key, tat)
    call('ZADD', P .. 'rate:tat', string.format('%.17g', tonumber(tat) / E9), key)
end

-- ---- the operations -------------------------------------------------------------------

if op == 'enqueue' then
    -- dedupe key ('' none), its expires_at, n, then n × (id, name, queue, args, key ('' none),
    -- priority, state, max_attempts, run_at)
    local dkey = ARGV[4]
    if dkey ~= '' then
        local exp = call('ZSCORE', P .. 'dedupe', dkey)
        if exp and tonumber(exp) > nown then return { 1 } end
        call('ZADD', P .. 'dedupe', ARGV[5], dkey)
    end
    local out = { 0 }
    for i = 0, tonumber(ARGV[6]) - 1 do
        local b = 7 + i * 9
        local id, queue, key, prio = ARGV[b], ARGV[b + 2], ARGV[b + 4], ARGV[b + 5]
        local state, run_at = ARGV[b + 6], ARGV[b + 8]
        local existing = false
        if key ~= '' then existing = call('HGET', P .. 'keys', key) end
        if existing then
            out[#out + 1] = existing
        else
            local k = jkey(id)
            call('HSET', k, 'name', ARGV[b + 1], 'queue', queue, 'args', ARGV[b + 3],
                'priority', prio, 'state', state, 'attempt', '0', 'max_attempts', ARGV[b + 7],
                'enqueued_at', now, 'run_at', run_at, 'started_at', '0', 'finished_at', '0',
                'lease_expires_at', '0', 'expires_at', '0')
            if key ~= '' then
                call('HSET', k, 'key', key)
                call('HSET', P .. 'keys', key, id)
            end
            call('ZADD', P .. 'ids', 0, id)
            if INDEXED[state] then call('ZADD', P .. 'state:' .. state, 0, id) end
            count(state, queue, 1)
            ready_add(id, queue, prio, run_at)
            if state == '1' then call('ZADD', P .. 'waiting', run_at, id) end
            out[#out + 1] = id
        end
    end
    return out

elseif op == 'claim' then
    -- queue ('' any), max, owner, lease_expires_at
    local queue, max, owner, lease_at = ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7]
    local cands = {}
    local function candidates(q)
        local got = 0
        local prios = call('ZREVRANGE', P .. 'prios:' .. q, 0, -1)
        for _, p in ipairs(prios) do
            local rk = P .. 'ready:' .. q .. ':' .. p
            local r = call('ZRANGEBYSCORE', rk, '-inf', now, 'WITHSCORES', 'LIMIT', 0, max - got)
            for i = 1, #r, 2 do
                cands[#cands + 1] = { r[i], tonumber(p), tonumber(r[i + 1]), q, p }
                got = got + 1
            end
            if #r == 0 and call('EXISTS', rk) == 0 then
                -- emptied since: forget the priority, and the queue with its last one
                call('ZREM', P .. 'prios:' .. q, p)
                if call('EXISTS', P .. 'prios:' .. q) == 0 then call('SREM', P .. 'queues', q) end
            end
            if got >= max then break end
        end
    end
    if queue ~= '' then
        candidates(queue)
    else
        for _, q in ipairs(call('SMEMBERS', P .. 'queues')) do candidates(q) end
        table.sort(cands, function(a, b)
            if a[2] ~= b[2] then return a[2] > b[2] end
            if a[3] ~= b[3] then return a[3] < b[3] end
            return a[1] < b[1]
        end)
    end
    local out = {}
    for i = 1, math.min(max, #cands) do
        local id, q, p = cands[i][1], cands[i][4], cands[i][5]
        local k = jkey(id)
        local state = call('HGET', k, 'state')
        ready_rem(id, q, p)
        if state ~= '0' then call('ZREM', P .. 'waiting', id) end
        set_state(id, q, state, '2', 'owner', owner, 'started_at', now, 'lease_expires_at',
            lease_at)
        call('HINCRBY', k, 'attempt', 1)
        call('ZADD', P .. 'leases', lease_at, id)
        job_reply(out, id)
    end
    return out

elseif op == 'heartbeat' then
    -- owner, lease_expires_at, ids...: returns the ids the owner no longer holds
    local owner, lease_at = ARGV[4], ARGV[5]
    local lost = {}
    for i = 6, #ARGV do
        local id = ARGV[i]
        local v = call('HMGET', jkey(id), 'state', 'owner')
        if v[1] == '2' and v[2] == owner then
            call('HSET', jkey(id), 'lease_expires_at', lease_at)
            call('ZADD', P .. 'leases', lease_at, id)
        else
            lost[#lost + 1] = id
        end
    end
    return lost

elseif op == 'complete' then
    -- id, owner, has_result, result, expires_at
    local id, exp = ARGV[4], ARGV[8]
    local v = owned(id, ARGV[5])
    if not v then return NOT_FOUND end
    local k = jkey(id)
    if ARGV[6] == '1' then
        set_state(id, v[3], '2', '3', 'finished_at', now, 'expires_at', exp,
            'lease_expires_at', '0', 'result', ARGV[7])
        call('HDEL', k, 'owner')
    else
        set_state(id, v[3], '2', '3', 'finished_at', now, 'expires_at', exp,
            'lease_expires_at', '0')
        call('HDEL', k, 'owner', 'result')
    end
    call('ZREM', P .. 'leases', id)
    call('ZADD', P .. 'expiry', exp, id)
    release_key(id, v[5])
    return 0

elseif op == 'fail' then
    -- id, owner, has_error, error, has_traceback, traceback, retry_at ('0': dead),
    -- expires_at when dead
    local id, retry_at, exp = ARGV[4], ARGV[10], ARGV[11]
    local v = owned(id, ARGV[5])
    if not v then return NOT_FOUND end
    local k = jkey(id)
    call('ZREM', P .. 'leases', id)
    call('HDEL', k, 'owner')
    call('HSET', k, 'lease_expires_at', '0')
    set_opt(k, 'last_error', ARGV[6], ARGV[7])
    set_opt(k, 'traceback', ARGV[8], ARGV[9])
    if tonumber(retry_at) > 0 then
        set_state(id, v[3], '2', '4')
        call('HSET', k, 'run_at', retry_at)
        ready_add(id, v[3], v[4], retry_at)
        call('ZADD', P .. 'waiting', retry_at, id)
    else
        set_state(id, v[3], '2', '5')
        call('HSET', k, 'finished_at', now, 'expires_at', exp)
        call('ZADD', P .. 'expiry', exp, id)
        release_key(id, v[5])
    end
    return 0

elseif op == 'release' then
    -- id, owner, run_at, state ('0' when run_at <= now, else '1')
    local id, run_at, state = ARGV[4], ARGV[6], ARGV[7]
    local v = owned(id, ARGV[5])
    if not v then return NOT_FOUND end
    local k = jkey(id)
    call('ZREM', P .. 'leases', id)
    call('HDEL', k, 'owner')
    call('HSET', k, 'lease_expires_at', '0', 'run_at', run_at)
    if tonumber(call('HGET', k, 'attempt')) > 0 then call('HINCRBY', k, 'attempt', -1) end
    set_state(id, v[3], '2', state)
    ready_add(id, v[3], v[4], run_at)
    if state == '1' then call('ZADD', P .. 'waiting', run_at, id) end
    return 0

elseif op == 'sweep' then
    -- expires_at for jobs buried now (now + dead_ttl): returns { reclaimed, expired }
    local exp = ARGV[4]
    local reclaimed, expired = 0, 0
    for _, id in ipairs(call('ZRANGEBYSCORE', P .. 'leases', '-inf', '(' .. now, 'LIMIT', 0, BATCH)) do
        local k = jkey(id)
        local v = call('HMGET', k, 'queue', 'priority', 'attempt', 'max_attempts', 'key', 'state')
        call('ZREM', P .. 'leases', id)
        if v[6] == '2' then
            local attempt, max = tonumber(v[3]), tonumber(v[4])
            call('HDEL', k, 'owner', 'traceback')
            call('HSET', k, 'lease_expires_at', '0', 'last_error', LEASE_EXPIRED, 'run_at', now)
            if max > 0 and attempt >= max then
                set_state(id, v[1], '2', '5')
                call('HSET', k, 'finished_at', now, 'expires_at', exp)
                call('ZADD', P .. 'expiry', exp, id)
                release_key(id, v[5])
            else
                set_state(id, v[1], '2', '4')
                call('HSET', k, 'finished_at', '0', 'expires_at', '0')
                ready_add(id, v[1], v[2], now)
                call('ZADD', P .. 'waiting', now, id)
            end
            reclaimed = reclaimed + 1
        end
    end
    for _, id in ipairs(call('ZRANGEBYSCORE', P .. 'expiry', '-inf', '(' .. now, 'LIMIT', 0, BATCH)) do
        call('ZREM', P .. 'expiry', id)
        if drop(id) then expired = expired + 1 end
    end
    local n = call('ZCOUNT', P .. 'dedupe', '-inf', '(' .. now)
    if n > BATCH then n = BATCH end
    if n > 0 then call('ZREMRANGEBYRANK', P .. 'dedupe', 0, n - 1) end
    expired = expired + n
    for _, key in ipairs(call('ZRANGEBYSCORE', P .. 'rate:tat', '-inf', '(' .. now, 'LIMIT', 0, BATCH)) do
        call('ZREM', P .. 'rate:tat', key)
        call('HDEL', P .. 'rate', key)
        expired = expired + 1
    end
    return { reclaimed, expired }

elseif op == 'retry' then
    -- id
    local id = ARGV[4]
    local v = call('HMGET', jkey(id), 'state', 'queue', 'priority', 'key')
    if not v[1] then return NOT_FOUND end
    if v[1] == '2' then return BUSY end -- its worker holds it; retrying would run it twice
    if v[1] == '0' then return 0 end
    return requeue(id, v)

elseif op == 'delete' then
    -- id (a running job's worker then fails its fenced writes)
    if drop(ARGV[4]) then return 0 end
    return NOT_FOUND

elseif op == 'retry_many' or op == 'purge' then
    -- state ('-1' any), queue ('' any), name ('' any), cursor, error ('' any), since, until
    -- ('0' none), max (most jobs to touch, '0' all): returns { count, cursor|false }
    local state, queue, name = ARGV[4], ARGV[5], ARGV[6]
    local err, since, till, max = ARGV[8], ARGV[9], ARGV[10], tonumber(ARGV[11])
    local n = 0
    local states
    if op == 'purge' then
        states = { [state] = true }
    elseif state == '-1' then
        states = { ['1'] = true, ['3'] = true, ['4'] = true, ['5'] = true }
    elseif state == '1' or state == '3' or state == '4' or state == '5' then
        states = { [state] = true }
    else
        return { 0, false }
    end
    local full = false
    local cursor = scan(states, ARGV[7], function(id)
        if full or not matches(id, queue, name, '-1', err, since, till) then return end
        if op == 'purge' then
            if drop(id) then n = n + 1 end
        else
            local v = call('HMGET', jkey(id), 'state', 'queue', 'priority', 'key')
            if requeue(id, v) == 0 then n = n + 1 end
        end
        if max > 0 and n >= max then full = id end
    end)
    -- Full: the caller asked for no more; the next batch would start after this id.
    if full then return { n, false } end
    return { n, cursor }

elseif op == 'get' then
    -- id: the job, or an empty array
    local out = {}
    if call('HEXISTS', jkey(ARGV[4]), 'state') == 1 then job_reply(out, ARGV[4]) end
    return out

elseif op == 'list' then
    -- state ('-1' any), queue, name, cursor ('' first page), limit:
    -- returns { next_cursor|false, jobs... }
    -- error ('' any), since, until ('0' none) as for retry_many
    local state, queue, name, cursor, limit = ARGV[4], ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
    local err, since, till = ARGV[9], ARGV[10], ARGV[11]
    local zkey = P .. 'ids'
    if INDEXED[state] then zkey = P .. 'state:' .. state end
    local max = '+'
    if cursor ~= '' then max = '(' .. cursor end
    local out = { false }
    local n, scanned, last_kept = 0, 0, nil
    while true do
        local ids = call('ZREVRANGEBYLEX', zkey, max, '-', 'LIMIT', 0, 200)
        if #ids == 0 then return out end
        for _, id in ipairs(ids) do
            if matches(id, queue, name, state, err, since, till) then
                if n == limit then
                    out[1] = last_kept -- one more than asked: a next page after the last kept
                    return out
                end
                job_reply(out, id)
                n = n + 1
                last_kept = id
            end
            scanned = scanned + 1
            if scanned >= SCAN_BUDGET then
                out[1] = id -- read enough for one call: the page goes on from here
                return out
            end
        end
        max = '(' .. ids[#ids]
    end

elseif op == 'rate' then
    -- key, now_ns, interval_ns, burst, cost (decimal integers):
    -- returns { allowed, store, tat_ns, retry_after_ns, reset_after_ns, remaining }
    local key, now_ns = ARGV[4], ARGV[5]
    local T, burst, cost = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
    local tol = burst * T -- how far the TAT may run ahead of now
    if cost < 1 then cost = 1 end
    if cost > burst then cost = burst end
    local tat = call('HGET', P .. 'rate', key)
    local d = 0 -- TAT - now
    if tat then d = ns_sub(tat, now_ns) end
    if d < 0 then d = 0 end -- idle since: the bucket is full
    local pulled = 0
    if d > tol then
        d = tol -- a clock that went back: no deeper than an empty bucket
        pulled = 1
    end
    local new_d = d + cost * T
    local allow_d = new_d - tol -- the earliest time this request fits, from now
    if allow_d > 0 then
        local at = ns_add(now_ns, d)
        if pulled == 1 then rate_store(key, at) end
        return { 0, pulled, at, int(allow_d), int(d), '0' }
    end
    local new_tat = ns_add(now_ns, new_d)
    rate_store(key, new_tat)
    return { 1, 1, new_tat, '0', int(new_d), int(quot(-allow_d, T)) }
end

if op == 'cache_incr' then
    -- key, delta, ttl_ms (decimal integers): { 1, value as text } or { 0 } when the value
    -- is not an integer or the sum is out of range. The ttl applies only to a key this
    -- call creates. The value is read back with GET: INCRBY's integer reply would pass
    -- through a Lua double here and lose precision beyond 2^53.
    local k, delta, ttl = P .. 'cache:' .. ARGV[4], ARGV[5], tonumber(ARGV[6])
    local existed = call('EXISTS', k)
    local r = redis.pcall('INCRBY', k, delta)
    if type(r) == 'table' and r.err then return { 0 } end
    if existed == 0 and ttl > 0 then call('PEXPIRE', k, ttl) end
    return { 1, call('GET', k) }
end

if op == 'kv' then
    -- mode (get, put, add, delete, take), key, has_value ('1'/'0'), value, ttl_ms:
    -- { applied } or { 1, value } for get and take when found. Expiry runs on Redis's
    -- clock (PX), so an expired record is simply absent.
    local mode, k, has, v, ttl = ARGV[4], P .. 'kv:' .. ARGV[5], ARGV[6] == '1', ARGV[7],
        tonumber(ARGV[8])
    if mode == 'get' or mode == 'take' then
        local cur = call('GET', k)
        if not cur then return { 0 } end
        if mode == 'take' then call('DEL', k) end
        return { 1, cur }
    elseif mode == 'put' or mode == 'add' then
        local args = { 'SET', k, v }
        if mode == 'add' then args[#args + 1] = 'NX' end
        if ttl > 0 then args[#args + 1] = 'PX'; args[#args + 1] = ttl end
        return { call(unpack(args)) and 1 or 0 }
    elseif mode == 'delete' then
        if has and call('GET', k) ~= v then return { 0 } end
        return { call('DEL', k) }
    end
    return redis.error_reply('luar: unknown kv mode ' .. tostring(mode))
end

return redis.error_reply('luar: unknown queue operation ' .. tostring(op))
