-- A plain Lua module next to main.lua: `require "lib.greeting"` finds it in scripts/.
local M = {}

local words = { en = "hello", pt = "olá", es = "hola", fr = "bonjour" }

function M.say(name, lang)
  return (words[lang or "en"] or words.en) .. ", " .. name
end

return M
