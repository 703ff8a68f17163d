---@meta
-- luar.metrics: Prometheus counters, gauges and histograms, exposed on /metrics.

---@class luar.metrics
local metrics = {}

---@class luar.metrics.Metric
local Metric = {}

---Adds `n` (default 1; counters: n >= 0). `labels` maps every label name to its value.
---@param n? number|table
---@param labels? table<string, string|number|boolean>
function Metric:inc(n, labels) end

---Gauges: subtracts `n` (default 1).
---@param n? number|table
---@param labels? table<string, string|number|boolean>
function Metric:dec(n, labels) end

---Gauges: sets the value.
---@param v number
---@param labels? table<string, string|number|boolean>
function Metric:set(v, labels) end

---Histograms: records one observation.
---@param v number
---@param labels? table<string, string|number|boolean>
function Metric:observe(v, labels) end

---Registers (or finds, when the same name, type and labels exist) a counter.
---@param name string
---@param help string
---@param labels? string[] label names, at most 8
---@return luar.metrics.Metric
function metrics.counter(name, help, labels) end

---@param name string
---@param help string
---@param labels? string[] label names, at most 8
---@return luar.metrics.Metric
function metrics.gauge(name, help, labels) end

---@param name string
---@param help string
---@param labels? string[] label names, at most 8
---@param buckets? number[] 1 to 64 increasing upper bounds; default 0.005 .. 10 s
---@return luar.metrics.Metric
function metrics.histogram(name, help, labels, buckets) end

return metrics
