---@meta
-- luar.redis: commands, publish/subscribe and locks on Redis. Which Redis: `redis = { url }`
-- in the configuration, else the queue's server when the queue is Redis. See docs/redis.md.

---@class luar.redis
---Stands for a nil inside an array reply (MGET of a missing key); the same value as
---json.null, so json.encode writes null.
---@field null lightuserdata
local redis = {}

---@class luar.RedisError: luar.Error
---@field kind "redis"|"backend"|"locked" "redis": the server answered an error; "backend": no connection (outage, none configured); "locked": redis.lock gave up waiting
---@field code? string kind "redis": the error's first word ("ERR", "WRONGTYPE", "NOPERM", "NOSCRIPT" …)

---A reply: status ("OK", "PONG") and bulk strings as strings, integers as integers, a nil
---reply as nil, arrays as sequences (nested; nil elements as redis.null, error elements as
---luar.RedisError tables).
---@alias luar.RedisReply string|integer|luar.RedisReply[]|nil

---⏸ Runs one command on the process's pipelined connection: the commands of every
---coroutine share round trips. Arguments are strings or numbers (sent as text); other types
---raise. Keys are used as given: no prefix is added. Refused (raises): MULTI/EXEC/WATCH
---(use EVAL), SELECT, AUTH, HELLO, RESET, QUIT, MONITOR, SUBSCRIBE and friends (use
---redis.subscribe), CLIENT REPLY, and blocking commands (BLPOP, BRPOP, BLMOVE, BZPOPMIN,
---WAIT, XREAD BLOCK …), which would hold the connection every coroutine shares.
---A nil reply is `nil` with no error: test the second value to tell it from a failure.
---@param command string
---@param ... string|number
---@return luar.RedisReply reply
---@return luar.RedisError? err kind "redis" (an error reply) or "backend" (no connection; fails at once during an outage)
function redis.call(command, ...) end

---⏸ PUBLISH: returns how many subscribers (connections) received the message.
---@param channel string
---@param message string
---@return integer|nil receivers
---@return luar.RedisError? err
function redis.publish(channel, message) end

---Runs `fn(message, channel)` in a coroutine of its own for every message published on
---`channel`, in the order they arrive. Declared while the scripts load (like http.route);
---a reload's scripts replace the subscriptions without dropping the connection. Every
---worker process of every instance runs the handler (broadcast); at most once: messages
---published while the connection is down are lost. A handler that raises is logged and
---counted in luar_lua_errors_total{where="redis"}; the next messages still run.
---@param channel string
---@param fn fun(message: string, channel: string)
function redis.subscribe(channel, fn) end

---Like redis.subscribe for every channel matching a glob-style `pattern` ("orders.*");
---the handler also receives the pattern.
---@param pattern string
---@param fn fun(message: string, channel: string, pattern: string)
function redis.psubscribe(pattern, fn) end

---@class luar.RedisLockOptions
---@field ttl number seconds the lock lives without renewal (0.1 to 30 days); renewed every ttl/3 while fn runs
---@field wait? number seconds to wait for a lock held by another (default ttl; 0: try once)

---@class luar.RedisLock
---@field name string
---@field key string "<prefix>lock:<name>" (the prefix of the URL, default "luar:")
---@field token string 32 hex characters, unique to this holding (for fencing your own writes)

---⏸ Takes the lock `name` across every process sharing the Redis, runs `fn(lock)` (which
---may yield) while holding it, releases it, and returns fn's results. Gives up with nil,
---err (kind "locked") after `wait` seconds, or nil, err (kind "backend") when Redis cannot
---be reached. An error in fn releases the lock and is raised again. The release deletes the
---key only while it still holds this holding's token: a holder whose lock expired (Redis
---unreachable for longer than ttl, the process frozen) cannot release another's.
---@generic R
---@param name string 1 to 1024 bytes
---@param ttl number|luar.RedisLockOptions seconds, or { ttl = s, wait = s }
---@param fn fun(lock: luar.RedisLock): R
---@return R|nil ...
---@return luar.RedisError? err
function redis.lock(name, ttl, fn) end

return redis
