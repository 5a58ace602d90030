-- wrk script: replays pre-built raw requests (NUL-separated) from the file named by the
-- first script argument, in order, wrapping around at the end.
local requests = {}
local next_index = 0

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local data = file:read("*a")
  file:close()
  for request in string.gmatch(data, "([^%z]+)%z") do
    requests[#requests + 1] = request
  end
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end
