---@meta
-- luar.events: durable publish/subscribe. Each subscriber is a job ("event:<name>") with
-- its own retries and dead letters. Patterns follow AMQP topic rules: words separated by
-- ".", "*" matches one word, "#" zero or more.

---@class luar.events
local events = {}

---@class luar.EventMeta
---@field id string the event id (one per publish)
---@field topic string
---@field published_at number
---@field job_id string
---@field attempt integer

---Subscribes `fn` to topics matching `pattern`. `opts` takes the options of jobs.define
---(retries, backoff, timeout, queue — default queue "events").
---@param pattern string
---@param name string subscriber name, unique
---@param opts luar.JobOptions|fun(payload: any, meta: luar.EventMeta)
---@param fn? fun(payload: any, meta: luar.EventMeta)
function events.subscribe(pattern, name, opts, fn) end

---⏸ Publishes an event: one durable job per matching subscriber, in one commit.
---@param topic string
---@param payload any JSON-encodable
---@return integer|nil subscribers the number of jobs enqueued
---@return luar.Error|nil err
function events.publish(topic, payload) end

return events
