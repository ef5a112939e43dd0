-- compare.lua: every tensor of a pass against a reference dump, in program
-- order, as a table; the first tensor over tolerance is marked. Fails (exit
-- status 1 under --script) when any tensor is over tolerance.
--
-- usage: xfdb [MODEL] --script scripts/compare.lua [REF.safetensors] [PROMPT]
--        (xfdb) source scripts/compare.lua REF [PROMPT]
--   REF     default: tests/fixtures/tiny-shakespeare-gpt2.ref.safetensors
--   PROMPT  text to run; default: the pass in progress if it is complete,
--           else the reference's prompt.tokens

local ref, prompt = arg[1], arg[2]
if not ref then
  local root = (arg[0] or ""):match("^(.*)/scripts/[^/]*$")
  ref = (root and root .. "/" or "") .. "tests/fixtures/tiny-shakespeare-gpt2.ref.safetensors"
end
xf.ref_load(ref)
local in_ref = {}
for _, name in ipairs(xf.ref_names()) do in_ref[name] = true end

local w = xf.where()
if prompt then
  xf.run(prompt)
elseif not (w.active and w.complete) then
  if not in_ref["prompt.tokens"] then error(ref .. " has no prompt.tokens: give a PROMPT", 0) end
  local ids = {}
  for i, v in ipairs(xf.tensor("prompt.tokens@ref"):values()) do ids[i] = math.tointeger(v) end
  xf.run(ids)
end
if not xf.where().complete then xf.finish() end

local function fmt(x)
  if x ~= x then return "nan" end
  if x == math.huge then return "inf" end
  if x == -math.huge then return "-inf" end
  return string.format("%.4g", x)
end

print(string.format("%-20s %-8s %-8s %-11s %-11s %-11s %-10s %s", "tensor", "kind", "variant", "max_abs", "tol",
                    "nmse", "cosine", "status"))
local compared, over, first = 0, 0, nil
for _, op in ipairs(xf.ops()) do
  if in_ref[op.name] and op.ready then
    local ok, d = pcall(xf.diff, op.name, op.name .. "@ref")
    compared = compared + 1
    if not ok then
      over = over + 1
      first = first or op
      print(string.format("%-20s %-8s %-8s %s", op.name, op.kind, op.variant, d))
    else
      local status = "ok"
      if not d.ok then
        over = over + 1
        status = first and "OVER" or "OVER <- first"
        first = first or op
      end
      print(string.format("%-20s %-8s %-8s %-11s %-11s %-11s %-10s %s", op.name, op.kind, op.variant,
                          fmt(d.max_abs), fmt(d.tol), fmt(d.nmse), fmt(d.cosine), status))
    end
  end
end
if compared == 0 then error("no computed tensor of this pass is in " .. ref, 0) end
if first then
  error(string.format("%d of %d tensors over tolerance; first: %s (%s/%s)", over, compared, first.name, first.kind,
                      first.variant), 0)
end
print(string.format("%d tensors compared, all within tolerance", compared))
