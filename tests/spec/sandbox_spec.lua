describe("the sandbox", function()
  local function refused(f, message)
    local ok, err = pcall(f)
    assert.is_false(ok)
    assert.truthy(tostring(err):find(message, 1, true), "got: " .. tostring(err))
  end

  it("forbids os.exit", function()
    refused(function() os.exit(0) end,
            "os.exit is not allowed in luar scripts (it would stop the host)")
    refused(function() os.exit(true, true) end, "os.exit is not allowed")
  end)

  it("forbids os.execute", function()
    refused(function() os.execute("true") end,
            "os.execute is not allowed in luar scripts (it would block the host)")
  end)

  it("forbids io.popen", function()
    refused(function() io.popen("ls") end,
            "io.popen is not allowed in luar scripts (it would block the host)")
  end)

  it("forbids reading stdin", function()
    refused(function() io.read() end,
            "io.read is not allowed in luar scripts (reading stdin would block the host)")
    refused(function() io.lines() end, "io.lines without a file name is not allowed")
    refused(function() io.stdin:read("l") end, "reading stdin is not allowed")
    refused(function() io.stdin:lines() end, "reading stdin is not allowed")
  end)

  it("forbids replacing the CPU budget hook", function()
    refused(function() debug.sethook() end, "debug.sethook is not allowed")
  end)

  it("reports the caller's line", function()
    local ok, err = pcall(function() os.exit(1) end)
    assert.is_false(ok)
    assert.truthy(err:find("sandbox_spec.lua:%d+: os.exit"))
  end)

  it("allows small file reads and writes with io.open", function()
    local name = os.tmpname()
    local f = assert(io.open(name, "w"))
    f:write("hello\nworld\n")
    f:close()
    local lines = {}
    for line in io.lines(name) do lines[#lines + 1] = line end
    assert.are.same({ "hello", "world" }, lines)
    f = assert(io.open(name))
    assert.are.equal("hello", f:read("l"))
    f:close()
    assert.is_true(os.remove(name))
  end)

  it("keeps the rest of the standard library", function()
    assert.is_function(os.getenv)
    assert.is_function(os.time)
    assert.is_function(string.format)
    assert.is_function(load)
    assert.is_function(dofile)
    assert.is_function(loadfile)
  end)
end)
