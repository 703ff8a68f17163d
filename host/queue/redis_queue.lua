-- The Redis queue backend, a Redis function library (Redis 7.0 or later). host/queue/redis.c
-- embeds this file and, on every connection, loads it with FUNCTION LOAD (a server that has
-- it already keeps it) under a name made from its SHA-1 (it puts the library's shebang line
-- and `local LUAR_FUNCTION = 'luar_<sha1>'` before it), then calls FCALL luar_<sha1> 0 <op>
-- <prefix> <now> ...: one function, one operation per call, each call atomic (Redis runs
-- one function at a time), which is what makes a claim hand a job to one claimer only and a
-- dedupe key and its jobs one step. The name changes with the text, so builds of different
-- scripts sharing a Redis during a rolling upgrade each call their own.
--
-- Why a function and not a script (EVAL/EVALSHA): a script's whole body runs on every call
-- — its tables and the closures of its ~25 helpers made anew each time — which cost Redis
-- 120-150 µs per call on the test VM, against 11 µs for the same no-op operation as FCALL
-- (redis-benchmark, INFO commandstats). A library's body runs once, at FUNCTION LOAD; only
-- `main` runs per call. So its top-level locals live as long as the library: the per-call
-- state below (gathered writes, known ready sets) is reset at the start of every call, in
-- case the previous call ended in an error halfway. At load Redis offers only
-- redis.register_function and a few others: `call` and NEXT_ATTEMPT are set on the first
-- call.
--
-- This is Lua 5.1 inside Redis: numbers are doubles. Times therefore travel as strings
-- that C formatted with %.17g (exact round trips) and are stored as given; the function only
-- compares them (tonumber) and never prints a computed time, except through fmt (%.17g).
-- GCRA times are integer nanoseconds beyond 2^53: see the rate operation.
--
-- Keys (P is the URL's prefix, "luar:" by default; docs/queue-backends.md has the table):
--   P job:<id>             hash: the job's fields (MUTABLE below, spec and the immutable
--                          fields other operations read); absent fields are NULL
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
--   P expiry               zset: the seconds that have an expiry list, score = the second
--   P expiry:<second>      list: ids of jobs that finished (succeeded or dead) with
--                          floor(expires_at) = second, for the sweep to delete once that
--                          second is past. An entry is not removed when its job moves on
--                          (retried, deleted, finished again): the sweep checks the job
--                          before deleting it. Why lists: a finished job was a member of one
--                          sorted set holding every finished job (50,000 in a drain, millions
--                          with a day of results), and inserting into it cost ~2 µs a job;
--                          an RPUSH costs a fraction and the sweep pops whole seconds.
--                          (the scores of ready, waiting, leases and dedupe are integer
--                          microseconds: us below)
--   P keys                 hash unique key -> id of the unfinished job holding it
--   P dedupe               zset score expires_at (us): dedupe keys (webhooks, events, cron
--                          ticks)
--   P rate                 hash rate key -> GCRA TAT (unix ns, decimal string)
--   P rate:tat             zset score TAT in seconds: what the sweep deletes
--   P cache:<key>          string: a luar.cache value (SET PX / GET / DEL from C; incr here)
--   P kv:<key>             string: a durable key-value record (luar_queue_kv; op 'kv')

-- A call may also be a batch: FCALL <function> 0 batch <n> then n operations, each as its
-- argument count followed by its arguments (<op> <prefix> <now> ...). The operations run in
-- order, each with its own prefix and time, and the answer is the array of their answers.
-- Completions in a row of one prefix and owner come as one entry, `completes <prefix>
-- <owner>` then 6 arguments a job (id, now, has_result, result, expires_at, its second), with
-- an answer each in that array.
-- C batches the hot-path writes that arrive in one loop iteration (enqueue, complete, fail,
-- release, rate: see BATCHABLE in redis.c), so their fixed cost (one FCALL, the
-- argument table) is paid once for many.
--
-- Cost model. Inside a function each redis.call costs about as much as a whole command from a
-- client (~1-3 µs on the test VM), so the hot paths do as few as they can: per job, a claim
-- and a completion are one HMGET and one HSET each. Writes that many jobs of one call make
-- to the same sorted set (ready:<queue>:<prio>, ids, waiting, leases, expiry) or expiry list
-- are gathered and sent as one variadic ZADD/ZREM/RPUSH when the call ends (`later` below),
-- and per-state counts are summed and written once per field. Deferring is safe because no
-- operation reads those sets back in the same call except claim and sweep, which flush first
-- (`flush`), and because within one call a set only ever gets ZADDs or only ZREMs of the
-- gathered kind.

local P, now
local call -- redis.call, set by the first call (see above)

-- A job's hash (key layout 3). `spec` holds, packed by C at the enqueue in the reply format
-- below, the fields that never change: name, queue, args, key, priority, max_attempts,
-- enqueued_at, trace. Of those, the ones other operations read (filters, fences, counts)
-- are also fields of their own: name, queue, key, priority, max_attempts, enqueued_at. args
-- and trace are in `spec` only. The rest change as the job runs: MUTABLE, in reply order.
local MUTABLE = { 'state', 'attempt', 'run_at', 'started_at', 'finished_at', 'lease_expires_at',
    'owner', 'result', 'last_error', 'traceback', 'expires_at', 'spec' }
-- What a claim reads: `spec` and the fields it does not set (started_at, lease_expires_at,
-- owner) or know: finished_at and expires_at are '0' and result is absent on a claimable
-- job (enqueue, requeue and reclaim write '0', a failure's retry keeps the running job's;
-- only a completion writes a result, a requeue deletes it). Each field an HMGET reads costs
-- ~0.3-0.5 µs on the test VM, and a claim reads one job each.
local CLAIM_READS = { 'spec', 'state', 'attempt', 'run_at', 'last_error', 'traceback' }
local LEASE_EXPIRED = 'lease expired (the worker running it stopped)'
-- Jobs a maintenance call touches at most, so no call blocks Redis for long; the caller
-- calls again with the cursor returned (retry_many, purge) or at its next sweep.
local BATCH = 1000
-- Ids a list call reads at most looking for matches.
local SCAN_BUDGET = 5000
-- Answers that are not an error reply: 0 done, or one of these (C maps them to LUAR_E*).
local NOT_FOUND, BUSY, EXISTS = -1, -2, -3

local function jkey(id) return P .. 'job:' .. id end

-- Scores of the time-ordered sets (ready, waiting, leases) are integer
-- microseconds, floor(t * 1e6) for stored times and for `now` alike, so the order of times
-- is kept: a job due at `now` is claimable at `now` (possibly up to 1 µs before its exact
-- run_at), and a lease or a dedupe key is reclaimed or deleted only once floor(expiry) <
-- floor(now), never early. Why not the seconds as they are: a set under 128 members is a
-- listpack, and every insert scans it, parsing each stored score back from its text — for
-- times with 7 decimals the slow path of strtod. An integer is stored as one and compared
-- without parsing: a ZADD + ZREM in a set of 100 cost 34-38 µs with such times, 11-14 µs
-- with integers (test VM). The exact times stay in the job's hash (next_due reads them).
-- Formatted with %.0f (int): Redis would pass a Lua number on as %.14g.
local function int(x) return string.format('%.0f', x) end
local function us_n(t) return math.floor(tonumber(t) * 1e6) end -- the same, as a number
local function us(t) return int(us_n(t)) end

-- ---- writes gathered until the call ends ------------------------------------------------
local counts = {}            -- P -> queue -> state -> delta (a batch may mix prefixes)
local zadds, zrems = {}, {}  -- full key -> { score, member, ... } / { member, ... }
local zorder = {}            -- full keys in first-use order (deterministic replies)
local lists, lorder = {}, {} -- expiry list key -> ids to RPUSH; the keys in first-use order

local dirty = false           -- anything gathered since the last flush

local function count(state, queue, delta)
    -- Nested tables, not one '<P>counts\0<state>:<queue>' string: building that string
    -- (a concatenation, i.e. a new interned string) was paid twice per claimed job.
    local byq = counts[P]
    if not byq then
        byq = {}
        counts[P] = byq
    end
    local bys = byq[queue]
    if not bys then
        bys = {}
        byq[queue] = bys
    end
    bys[state] = (bys[state] or 0) + delta
    dirty = true
end

local function zlater(t, key, a, b)
    local l = t[key]
    if not l then
        l = {}
        t[key] = l
        zorder[#zorder + 1] = key
    end
    l[#l + 1] = a
    if b then l[#l + 1] = b end
    dirty = true
end

-- ZADD key score member, sent with the others when the call ends.
local function zadd_later(key, score, id) zlater(zadds, key, score, id) end
-- ZREM key member, likewise.
local function zrem_later(key, id) zlater(zrems, key, id) end

local function send_many(cmd, key, t)
    for i = 1, #t, 1000 do call(cmd, key, unpack(t, i, math.min(i + 999, #t))) end
end

-- Files job id for deletion once second `sec` (floor of its expires_at, a decimal string) is
-- past: RPUSH to that second's list, and the second into P expiry, when the call ends.
local function expire_later(id, sec)
    local k = P .. 'expiry:' .. sec
    local l = lists[k]
    if not l then
        l = {}
        lists[k] = l
        lorder[#lorder + 1] = k
        zadd_later(P .. 'expiry', sec, sec)
    end
    l[#l + 1] = id
    dirty = true
end

local function second(t) return int(math.floor(tonumber(t))) end

-- Sends what was gathered: variadic commands of at most 1,000 arguments, then the counts.
local function flush()
    if not dirty then return end
    for _, key in ipairs(lorder) do send_many('RPUSH', key, lists[key]) end
    for _, key in ipairs(zorder) do
        if zrems[key] then send_many('ZREM', key, zrems[key]) end
        if zadds[key] then send_many('ZADD', key, zadds[key]) end
    end
    for prefix, byq in pairs(counts) do
        local key = prefix .. 'counts'
        for queue, bys in pairs(byq) do
            for state, delta in pairs(bys) do
                if delta ~= 0 then
                    local field = state .. ':' .. queue
                    if call('HINCRBY', key, field, delta) <= 0 then call('HDEL', key, field) end
                end
            end
        end
    end
    zadds, zrems, zorder, counts, lists, lorder = {}, {}, {}, {}, {}, {}
    dirty = false
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

-- The queues and priorities this call registered already (prios:<queue>, queues).
local known = {}

local function ready_add(id, queue, prio, run_at)
    local rk = P .. 'ready:' .. queue .. ':' .. prio
    zadd_later(rk, us(run_at), id)
    if not known[rk] then
        known[rk] = true
        call('ZADD', P .. 'prios:' .. queue, prio, prio)
        call('SADD', P .. 'queues', queue)
    end
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

local F_STATE, F_OWNER, F_SPEC = 1, 7, 12

-- Jobs travel back to C as the reply's last elements: ONE string with the changing fields of
-- all its jobs — per job the id and MUTABLE but spec (12 fields), each a presence flag ('1'
-- present, '0' absent), the value (empty when absent) and a NUL byte — then each job's
-- `spec` as it is stored, one element each (8 fields in the same format). No value can hold
-- a NUL (each came from a C string), so C splits them in place. The pieces of the first
-- string are gathered in a table (`parts`, new_parts) and joined once per reply (`joined`),
-- and a claim writes its pieces inline, those its jobs share made once: with a string built
-- per job a claim cost Redis 4-7 µs a job more (test VM); as 19 replies each, a claim of 256
-- jobs cost ~6 µs a job to encode and hiredis 4,864 reply objects to parse. The specs are
-- not joined: every Lua string Redis makes is hashed over all its bytes (its Lua hashes
-- every byte, not Lua 5.1's sample), so joining a webhook's 2 KB arguments into the reply
-- hashed them once more (17 % of Redis's CPU in the ingest benchmark went to that hash).
-- Pieces of a claim's packed reply (see claim): a NUL then the next field's flag; and what
-- follows a claimed job's id: its NUL, state 2, the flag of attempt.
local NUL1, RUNNING = '\0' .. '1', '\0' .. '12\0' .. '1'
-- The next attempt of a claimed job, without tostring (Lua's %.14g) for the usual ones.
local NEXT_ATTEMPT = {}

-- The pieces of a reply's jobs: the packed changing fields in the array, the specs in .s.
local function new_parts() return { s = {} } end

-- Appends job id with the MUTABLE values v to parts. The owner is only meaningful while the
-- job runs: a completion leaves the field in place (one HSET, no HDEL) and it is not shown.
local function pack_job(parts, id, v)
    if v[F_STATE] ~= '2' then v[F_OWNER] = false end
    local n = #parts
    parts[n + 1], parts[n + 2], parts[n + 3] = '1', id, '\0'
    n = n + 3
    for i = 1, F_SPEC - 1 do
        local x = v[i]
        if x then
            parts[n + 1], parts[n + 2], parts[n + 3] = '1', x, '\0'
            n = n + 3
        else
            n = n + 1
            parts[n] = '0\0'
        end
    end
    parts.s[#parts.s + 1] = v[F_SPEC] or ''
end

-- Appends the jobs gathered in parts to the reply out (nothing when there are none).
local function joined(out, parts)
    if parts[1] then
        local n = #out + 1
        out[n] = table.concat(parts)
        for i, spec in ipairs(parts.s) do out[n + i] = spec end
    end
    return out
end

-- Appends job id to parts.
local function job_reply(parts, id)
    pack_job(parts, id, call('HMGET', jkey(id), unpack(MUTABLE)))
end

-- Deletes job id and its entries; false when there is no such job. With `before` (integer
-- µs), only a job still finished (succeeded or dead) whose expires_at is before it: what the
-- sweep asks of an id it pops from an expiry list.
local function drop(id, before)
    local k = jkey(id)
    local v = call('HMGET', k, 'queue', 'priority', 'state', 'key', 'expires_at')
    local queue, prio, state, key = v[1], v[2], v[3], v[4]
    if not state then return false end
    if before and not ((state == '3' or state == '5') and us_n(v[5]) < before) then
        return false
    end
    call('ZREM', P .. 'ids', id)
    if INDEXED[state] then call('ZREM', P .. 'state:' .. state, id) end
    count(state, queue, -1)
    if state == '0' or state == '1' or state == '4' then ready_rem(id, queue, prio) end
    call('ZREM', P .. 'waiting', id)
    call('ZREM', P .. 'leases', id)
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

-- Whether a job matches a list filter ('' matches anything; state '-1' too).
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

local function rate_store(key, tat)
    call('HSET', P .. 'rate', key, tat)
    call('ZADD', P .. 'rate:tat', string.format('%.17g', tonumber(tat) / E9), key)
end

-- ---- the operations -------------------------------------------------------------------
-- Each reads its arguments from A, laid out as ARGV is for a single call:
-- A[1] the operation, A[2] the prefix, A[3] now, then the operation's own.


-- A completion: id, owner, has_result, result, expires_at, and its whole second (C computes
-- it: tonumber and floor here were ~1 µs a job). The owner field stays (pack_job
-- hides it once the job is not running), and `result` is absent before a completion (a
-- retry deletes it): one HSET. A function of its own: a batch of completions, the drain's
-- hottest call, reads their arguments in place from ARGV (see main, at the end).
local function complete(id, owner, has_result, result, exp, exp_sec)
    local k = jkey(id)
    -- owned()'s fence, without the priority a completion does not need
    local v = call('HMGET', k, 'state', 'owner', 'queue', 'key')
    if v[1] ~= '2' or v[2] ~= owner then return NOT_FOUND end
    count('2', v[3], -1)
    count('3', v[3], 1)
    if has_result == '1' then
        call('HSET', k, 'state', '3', 'finished_at', now, 'expires_at', exp,
            'lease_expires_at', '0', 'result', result)
    else
        call('HSET', k, 'state', '3', 'finished_at', now, 'expires_at', exp,
            'lease_expires_at', '0')
    end
    zrem_later(P .. 'leases', id)
    expire_later(id, exp_sec)
    release_key(id, v[4])
    return 0
end

local function retry_many_or_purge(op, A)
    -- state ('-1' any), queue ('' any), name ('' any), cursor, error ('' any), since, until
    -- ('0' none), max (most jobs to touch, '0' all): returns { count, cursor|false }
    local state, queue, name = A[4], A[5], A[6]
    local err, since, till, max = A[8], A[9], A[10], tonumber(A[11])
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
    local cursor = scan(states, A[7], function(id)
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

end






-- One operation of a call.
local function dispatch(op, A)
    P, now = A[2], A[3] -- (tonumber(now) only where needed: strtod of 17 digits, ~1 µs)
    if op == 'enqueue' then
        -- dedupe key ('' none), its expires_at (us), n, then n × (id, name, queue, spec,
        -- key ('' none), priority, state, max_attempts, run_at)
        local dkey = A[4]
        if dkey ~= '' then
            -- A new key (nearly every webhook) is added in one call; one already there is
            -- read: a duplicate until it expires, renewed after.
            local dk = P .. 'dedupe'
            if call('ZADD', dk, 'NX', A[5], dkey) == 0 then
                if tonumber(call('ZSCORE', dk, dkey)) > us_n(now) then return { 1 } end
                call('ZADD', dk, A[5], dkey)
            end
        end
        local out = { 0 }
        for i = 0, tonumber(A[6]) - 1 do
            local b = 7 + i * 9
            local id, queue, key, prio = A[b], A[b + 2], A[b + 4], A[b + 5]
            local state, run_at = A[b + 6], A[b + 8]
            local existing = false
            if key ~= '' then existing = call('HGET', P .. 'keys', key) end
            if existing then
                out[#out + 1] = existing
            else
                local f = { 'name', A[b + 1], 'queue', queue, 'spec', A[b + 3], 'priority', prio,
                    'state', state, 'attempt', '0', 'max_attempts', A[b + 7], 'enqueued_at', now,
                    'run_at', run_at, 'started_at', '0', 'finished_at', '0', 'lease_expires_at', '0',
                    'expires_at', '0' }
                if key ~= '' then
                    f[#f + 1] = 'key'
                    f[#f + 1] = key
                    call('HSET', P .. 'keys', key, id)
                end
                call('HSET', jkey(id), unpack(f))
                zadd_later(P .. 'ids', 0, id)
                if INDEXED[state] then call('ZADD', P .. 'state:' .. state, 0, id) end
                count(state, queue, 1)
                ready_add(id, queue, prio, run_at)
                if state == '1' then zadd_later(P .. 'waiting', us(run_at), id) end
                out[#out + 1] = id
            end
        end
        return out
    elseif op == 'claim' then
        -- queue ('' any), max, owner, lease_expires_at: the jobs (see pack_job)
        local queue, max, owner, lease_at = A[4], tonumber(A[5]), A[6], A[7]
        -- The candidates, in claim order, as parallel arrays (no table per job): id, its ready
        -- set, its queue. One queue's ready sets are read highest priority first, each in
        -- (run_at, id) order, which is the claim order already; only a claim from every queue
        -- reads the scores and sorts.
        local cid, crk, cq, nc = {}, {}, {}, 0
        local cprio, cscore = {}, {}
        local now_us = us(now)
        local function candidates(q, scores)
            local got = 0
            local prios = call('ZREVRANGE', P .. 'prios:' .. q, 0, -1)
            for _, p in ipairs(prios) do
                local rk = P .. 'ready:' .. q .. ':' .. p
                local r
                if scores then
                    r = call('ZRANGEBYSCORE', rk, '-inf', now_us, 'WITHSCORES', 'LIMIT', 0,
                        max - got)
                    local pn = tonumber(p)
                    for i = 1, #r, 2 do
                        nc = nc + 1
                        cid[nc], crk[nc], cq[nc], cprio[nc], cscore[nc] = r[i], rk, q, pn,
                            tonumber(r[i + 1])
                    end
                    got = got + #r / 2
                else
                    r = call('ZRANGEBYSCORE', rk, '-inf', now_us, 'LIMIT', 0, max - got)
                    for i = 1, #r do
                        nc = nc + 1
                        cid[nc], crk[nc], cq[nc] = r[i], rk, q
                    end
                    got = got + #r
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
            candidates(queue, false)
        else
            for _, q in ipairs(call('SMEMBERS', P .. 'queues')) do candidates(q, true) end
            local order = {}
            for i = 1, nc do order[i] = i end
            table.sort(order, function(a, b)
                if cprio[a] ~= cprio[b] then return cprio[a] > cprio[b] end
                if cscore[a] ~= cscore[b] then return cscore[a] < cscore[b] end
                return cid[a] < cid[b]
            end)
            local id2, rk2, q2 = {}, {}, {}
            for i = 1, nc do
                local o = order[i]
                id2[i], rk2[i], q2[i] = cid[o], crk[o], cq[o]
            end
            cid, crk, cq = id2, rk2, q2
        end
        -- Per job one HMGET (the reply's fields) and one HSET; the ready, waiting and lease
        -- sets change once for all of them. The reply is packed as pack_job does, inline:
        -- the fields every claimed job has alike (started_at .. result) are one piece made
        -- once, and each NUL is joined with the next field's flag (Lua's table writes were
        -- ~2 µs of a claimed job when each was a piece).
        local parts, np = new_parts(), 0
        local specs = parts.s
        local lease_us = us(lease_at)
        -- ends run_at; started_at = now, finished_at 0, lease_expires_at, owner, no result
        local mid = '\0' .. '1' .. now .. '\0' .. '10\0' .. '1' .. lease_at .. '\0' .. '1' ..
            owner .. '\0' .. '0\0'
        local leases = P .. 'leases'
        for i = 1, math.min(max, nc) do
            local id, q, rk = cid[i], cq[i], crk[i]
            local k = jkey(id)
            local v = call('HMGET', k, unpack(CLAIM_READS))
            local state = v[2]
            zrem_later(rk, id)
            if state then -- (a ready entry always has its job; a missing one is only dropped)
                if state ~= '0' then zrem_later(P .. 'waiting', id) end
                if INDEXED[state] then call('ZREM', P .. 'state:' .. state, id) end
                count(state, q, -1)
                count('2', q, 1)
                local attempt = NEXT_ATTEMPT[v[3]] or tostring(tonumber(v[3]) + 1)
                call('HSET', k, 'state', '2', 'owner', owner, 'started_at', now, 'lease_expires_at',
                    lease_at, 'attempt', attempt)
                -- id, state 2, attempt, run_at, then mid
                parts[np + 1], parts[np + 2], parts[np + 3] = '1', id, RUNNING
                parts[np + 4] = attempt
                parts[np + 5], parts[np + 6], parts[np + 7] = NUL1, v[4] or '', mid
                np = np + 7
                for f = 5, 6 do -- last_error, traceback
                    if v[f] then
                        parts[np + 1], parts[np + 2], parts[np + 3] = '1', v[f], '\0'
                        np = np + 3
                    else
                        np = np + 1
                        parts[np] = '0\0'
                    end
                end
                parts[np + 1] = '10\0' -- expires_at
                np = np + 1
                specs[#specs + 1] = v[1] or ''
                zadd_later(leases, lease_us, id)
            end
        end
        return joined({}, parts)
    elseif op == 'heartbeat' then
        -- owner, lease_expires_at, ids...: returns the ids the owner no longer holds
        local owner, lease_at = A[4], A[5]
        local lost = {}
        local lease_us = us(lease_at)
        for i = 6, #A do
            local id = A[i]
            local v = call('HMGET', jkey(id), 'state', 'owner')
            if v[1] == '2' and v[2] == owner then
                call('HSET', jkey(id), 'lease_expires_at', lease_at)
                call('ZADD', P .. 'leases', lease_us, id) -- not gathered: completions ZREM there
            else
                lost[#lost + 1] = id
            end
        end
        return lost
    elseif op == 'complete' then
        return complete(A[4], A[5], A[6], A[7], A[8], A[9])
    elseif op == 'fail' then
        -- id, owner, has_error, error, has_traceback, traceback, retry_at ('0': dead),
        -- expires_at when dead
        local id, retry_at, exp = A[4], A[10], A[11]
        local v = owned(id, A[5])
        if not v then return NOT_FOUND end
        local k = jkey(id)
        zrem_later(P .. 'leases', id)
        call('HDEL', k, 'owner')
        set_opt(k, 'last_error', A[6], A[7])
        set_opt(k, 'traceback', A[8], A[9])
        if tonumber(retry_at) > 0 then
            set_state(id, v[3], '2', '4', 'run_at', retry_at, 'lease_expires_at', '0')
            ready_add(id, v[3], v[4], retry_at)
            zadd_later(P .. 'waiting', us(retry_at), id)
        else
            set_state(id, v[3], '2', '5', 'finished_at', now, 'expires_at', exp,
                'lease_expires_at', '0')
            expire_later(id, second(exp))
            release_key(id, v[5])
        end
        return 0
    elseif op == 'release' then
        -- id, owner, run_at, state ('0' when run_at <= now, else '1')
        local id, run_at, state = A[4], A[6], A[7]
        local v = owned(id, A[5])
        if not v then return NOT_FOUND end
        local k = jkey(id)
        zrem_later(P .. 'leases', id)
        call('HDEL', k, 'owner')
        local attempt = tonumber(call('HGET', k, 'attempt'))
        if attempt > 0 then attempt = attempt - 1 end
        set_state(id, v[3], '2', state, 'lease_expires_at', '0', 'run_at', run_at, 'attempt',
            tostring(attempt))
        ready_add(id, v[3], v[4], run_at)
        if state == '1' then zadd_later(P .. 'waiting', us(run_at), id) end
        return 0
    elseif op == 'sweep' then
        -- expires_at for jobs buried now (now + dead_ttl): returns { reclaimed, expired }
        local exp = A[4]
        local reclaimed, expired = 0, 0
        for _, id in ipairs(call('ZRANGEBYSCORE', P .. 'leases', '-inf', '(' .. us(now), 'LIMIT', 0, BATCH)) do
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
                    expire_later(id, second(exp))
                    release_key(id, v[5])
                else
                    set_state(id, v[1], '2', '4')
                    call('HSET', k, 'finished_at', '0', 'expires_at', '0')
                    ready_add(id, v[1], v[2], now)
                    call('ZADD', P .. 'waiting', us(now), id)
                end
                reclaimed = reclaimed + 1
            end
        end
        -- Finished jobs whose second is past (so each expired before now), BATCH at most.
        -- An id whose job moved on since it was filed (retried, deleted, or finished again
        -- with a later expiry, filed again under that second) is only popped.
        local left, now_us = BATCH, us_n(now)
        local secs = call('ZRANGEBYSCORE', P .. 'expiry', '-inf', '(' .. second(now), 'LIMIT', 0,
            BATCH)
        for _, sec in ipairs(secs) do
            if left <= 0 then break end
            local k = P .. 'expiry:' .. sec
            for _, id in ipairs(call('LPOP', k, left) or {}) do
                left = left - 1
                if drop(id, now_us) then expired = expired + 1 end
            end
            if call('EXISTS', k) == 1 then break end -- the budget ran out within this second
            call('ZREM', P .. 'expiry', sec)
        end
        local n = call('ZCOUNT', P .. 'dedupe', '-inf', '(' .. us(now))
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
        local id = A[4]
        local v = call('HMGET', jkey(id), 'state', 'queue', 'priority', 'key')
        if not v[1] then return NOT_FOUND end
        if v[1] == '2' then return BUSY end -- its worker holds it; retrying would run it twice
        if v[1] == '0' then return 0 end
        return requeue(id, v)

    elseif op == 'delete' then
        -- id (a running job's worker then fails its fenced writes)
        if drop(A[4]) then return 0 end
        return NOT_FOUND

    elseif op == 'get' then
        -- id: the job, or an empty array
        local parts = new_parts()
        if call('HEXISTS', jkey(A[4]), 'state') == 1 then job_reply(parts, A[4]) end
        return joined({}, parts)

    elseif op == 'list' then
        -- state ('-1' any), queue, name, cursor ('' first page), limit:
        -- returns { next_cursor|false, jobs... }
        -- error ('' any), since, until ('0' none) as for retry_many
        local state, queue, name, cursor, limit = A[4], A[5], A[6], A[7], tonumber(A[8])
        local err, since, till = A[9], A[10], A[11]
        local zkey = P .. 'ids'
        if INDEXED[state] then zkey = P .. 'state:' .. state end
        local max = '+'
        if cursor ~= '' then max = '(' .. cursor end
        local out, parts = { false }, new_parts()
        local n, scanned, last_kept = 0, 0, nil
        while true do
            local ids = call('ZREVRANGEBYLEX', zkey, max, '-', 'LIMIT', 0, 200)
            if #ids == 0 then return joined(out, parts) end
            for _, id in ipairs(ids) do
                if matches(id, queue, name, state, err, since, till) then
                    if n == limit then
                        out[1] = last_kept -- one more than asked: a next page after the last kept
                        return joined(out, parts)
                    end
                    job_reply(parts, id)
                    n = n + 1
                    last_kept = id
                end
                scanned = scanned + 1
                if scanned >= SCAN_BUDGET then
                    out[1] = id -- read enough for one call: the page goes on from here
                    return joined(out, parts)
                end
            end
            max = '(' .. ids[#ids]
        end

    elseif op == 'rate' then
        -- key, now_ns, interval_ns, burst, cost (decimal integers):
        -- returns { allowed, store, tat_ns, retry_after_ns, reset_after_ns, remaining }
        local key, now_ns = A[4], A[5]
        local T, burst, cost = tonumber(A[6]), tonumber(A[7]), tonumber(A[8])
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
    elseif op == 'next_due' then
        -- the earliest run_at of a scheduled or retrying job (exact, from its hash), or false
        local first = call('ZRANGE', P .. 'waiting', 0, 0, 'WITHSCORES')
        if #first == 0 then return false end
        local best = false
        for _, id in ipairs(call('ZRANGEBYSCORE', P .. 'waiting', first[2], first[2])) do
            local r = call('HGET', jkey(id), 'run_at')
            if r and (not best or tonumber(r) < tonumber(best)) then best = r end
        end
        return best
    elseif op == 'cache_incr' then
        -- key, delta, ttl_ms (decimal integers): { 1, value as text } or { 0 } when the value
        -- is not an integer or the sum is out of range. The ttl applies only to a key this
        -- call creates. The value is read back with GET: INCRBY's integer reply would pass
        -- through a Lua double here and lose precision beyond 2^53.
        local k, delta, ttl = P .. 'cache:' .. A[4], A[5], tonumber(A[6])
        local existed = call('EXISTS', k)
        local r = redis.pcall('INCRBY', k, delta)
        if type(r) == 'table' and r.err then return { 0 } end
        if existed == 0 and ttl > 0 then call('PEXPIRE', k, ttl) end
        return { 1, call('GET', k) }
    elseif op == 'retry_many' or op == 'purge' then
        return retry_many_or_purge(op, A)
    elseif op == 'kv' then
        -- mode (get, put, add, delete, take), key, has_value ('1'/'0'), value, ttl_ms:
        -- { applied } or { 1, value } for get and take when found. Expiry runs on Redis's
        -- clock (PX), so an expired record is simply absent.
        local mode, k, has, v, ttl = A[4], P .. 'kv:' .. A[5], A[6] == '1', A[7], tonumber(A[8])
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
end

-- The operations whose gathered writes may wait for the end of the call: they read none of
-- the gathered sets, and together they only ZADD to ready, ids, waiting and expiry, RPUSH to
-- expiry lists and only ZREM from leases. Any other operation runs between flushes.
local GATHERS = { enqueue = true, complete = true, fail = true, release = true, rate = true,
    cache_incr = true }

-- A call: one operation, or a batch of them (batch, n, then n × (argument count,
-- arguments...)).
local function main(_, ARGV)
    if not call then
        call = redis.call
        for i = 0, 99 do NEXT_ATTEMPT[tostring(i)] = tostring(i + 1) end
    end
    if dirty then -- the previous call stopped halfway (an error): nothing of it is sent now
        counts, zadds, zrems, zorder, lists, lorder, dirty = {}, {}, {}, {}, {}, {}, false
    end
    if next(known) then known = {} end
    if ARGV[1] ~= 'batch' then
        local reply = dispatch(ARGV[1], ARGV)
        flush()
        return reply
    end
    local reply, r = {}, 0
    local i = 3
    for _ = 1, tonumber(ARGV[2]) do
        local n = tonumber(ARGV[i])
        if ARGV[i + 1] == 'completes' then
            -- A run of completions (see completion_run in redis.c): prefix, owner, then per
            -- job id, now, has_result, result, expires_at and its second; read in place, an
            -- answer each.
            P = ARGV[i + 2]
            local owner = ARGV[i + 3]
            for b = i + 4, i + n, 6 do
                now = ARGV[b + 1]
                r = r + 1
                reply[r] = complete(ARGV[b], owner, ARGV[b + 2], ARGV[b + 3], ARGV[b + 4],
                    ARGV[b + 5])
            end
        else
            local A = {}
            for k = 1, n do A[k] = ARGV[i + k] end
            local op = A[1]
            if not GATHERS[op] then
                flush()
                if next(known) then known = {} end -- a claim may forget a queue's priorities
            end
            r = r + 1
            reply[r] = dispatch(op, A)
            if not GATHERS[op] then flush() end
        end
        i = i + n + 1
    end
    flush()
    return reply
end

-- The operations that only read, also registered as a function flagged no-writes (C calls
-- it with FCALL_RO): Redis refuses a function that may write before it runs once it is out
-- of memory (maxmemory, noeviction), and this one still answers then — `luar jobs list`,
-- show, the dashboard — and on a replica. Redis itself stops it from writing.
local READS = { get = true, list = true, next_due = true }
local function main_ro(keys, ARGV)
    if not READS[ARGV[1]] then
        return redis.error_reply('luar: ' .. tostring(ARGV[1]) .. ' is not a read-only operation')
    end
    return main(keys, ARGV)
end

redis.register_function(LUAR_FUNCTION, main)
redis.register_function{ function_name = LUAR_FUNCTION .. '_ro', callback = main_ro,
    flags = { 'no-writes' } }
