-- bisect.lua: find the kernel variant that makes a pass disagree with a
-- reference dump. Runs the reference prompt with the kernels selected now;
-- if some tensor is over tolerance, switches op kinds to their `ref` variant
-- one at a time (each alone, then cumulatively) until the pass matches, and
-- names the culprit op kind and variant. The selection is restored at the end.
--
-- usage: xfdb [MODEL] --script scripts/bisect.lua [REF.safetensors] [PROMPT] [--logits]
--        (xfdb) source scripts/bisect.lua REF [PROMPT] [--logits]
--   REF      default: tests/fixtures/tiny-shakespeare-gpt2.ref.safetensors
--   PROMPT   text to run; default: the reference's prompt.tokens
--   --logits judge a pass by the logits alone (default: every tensor in the dump)

local ref, prompt, logits_only
for i = 1, #arg do
  local a = arg[i]
  if a == "--logits" then logits_only = true
  elseif not ref then ref = a
  elseif not prompt then prompt = a
  else error("usage: bisect.lua [REF.safetensors] [PROMPT] [--logits]", 0) end
end
if not ref then
  local root = (arg[0] or ""):match("^(.*)/scripts/[^/]*$")
  ref = (root and root .. "/" or "") .. "tests/fixtures/tiny-shakespeare-gpt2.ref.safetensors"
end

local n_ref = xf.ref_load(ref)
local in_ref = {}
for _, name in ipairs(xf.ref_names()) do in_ref[name] = true end

if not prompt then
  if not in_ref["prompt.tokens"] then
    error(ref .. " has no prompt.tokens: give a PROMPT", 0)
  end
  prompt = {}
  for i, v in ipairs(xf.tensor("prompt.tokens@ref"):values()) do prompt[i] = math.tointeger(v) end
end

-- Runs the prompt with the current kernels. Returns nil if the pass matches
-- the reference, else the first tensor over tolerance and its diff.
local compared
local function check()
  xf.run(prompt)
  xf.finish()
  compared = 0
  for _, op in ipairs(xf.ops()) do
    if in_ref[op.name] and (not logits_only or op.name == "logits") then
      local d = xf.diff(op.name, op.name .. "@ref")
      compared = compared + 1
      if not d.ok then return op, d end
    end
  end
  if compared == 0 then error("no tensor of this pass is in " .. ref, 0) end
  return nil
end

-- the variant selected now for each op kind, and the kinds this model runs
local orig, backend = {}, nil
for _, k in ipairs(xf.kernels()) do
  if k.selected then orig[k.op] = k.name; backend = k.backend end
end
local kinds, seen = {}, {}
xf.run(prompt)
for _, op in ipairs(xf.ops()) do
  if not seen[op.kind] then seen[op.kind] = true; kinds[#kinds + 1] = op.kind end
end

local function restore()
  for _, kind in ipairs(kinds) do xf.kernel(kind, orig[kind]) end
end

local function fmt(x)
  if x ~= x then return "nan" end
  return string.format("%.3g", x)
end

print(string.format("reference %s: %d tensors; prompt of %d tokens; judging %s", ref, n_ref, #prompt,
                    logits_only and "the logits" or "every tensor in the dump"))
local op, d = check()
if not op then
  print(string.format("the pass matches the reference (%d tensors compared) with the kernels selected now: "
                      .. "nothing to bisect", compared))
  return
end
print(string.format("baseline: %s (%s/%s) over tolerance: max_abs %s > %s, nmse %s",
                    op.name, op.kind, orig[op.kind], fmt(d.max_abs), fmt(d.tol), fmt(d.nmse)))

local candidates = {}
for _, kind in ipairs(kinds) do
  if orig[kind] ~= "ref" then candidates[#candidates + 1] = kind end
end
if #candidates == 0 then
  print("every op kind already runs its ref variant: the difference is not in a kernel choice")
  return
end

-- each kind alone
local culprits = {}
local ok, err = pcall(function()
  for _, kind in ipairs(candidates) do
    xf.kernel(kind, "ref")
    local o, dd = check()
    xf.kernel(kind, orig[kind])
    if o then
      print(string.format("  %-8s %s -> ref: still differs (first over: %s, max_abs %s)", kind, orig[kind], o.name,
                          fmt(dd.max_abs)))
    else
      print(string.format("  %-8s %s -> ref: matches", kind, orig[kind]))
      culprits[#culprits + 1] = kind
    end
  end
end)
if not ok then restore(); error(err, 0) end

if #culprits > 0 then
  for _, kind in ipairs(culprits) do
    print(string.format("culprit: op kind %s, variant %s (backend %s); `kernel %s ref` makes the pass match",
                        kind, orig[kind], backend, kind))
  end
  restore()
  return culprits
end

-- no single kind: switch them to ref cumulatively until the pass matches,
-- then put back each one the pass does not need
local needed
ok, err = pcall(function()
  local switched = {}
  for _, kind in ipairs(candidates) do
    xf.kernel(kind, "ref")
    switched[#switched + 1] = kind
    local o = check()
    print(string.format("  + %-8s -> ref: %s", kind, o and ("still differs at " .. o.name) or "matches"))
    if not o then break end
    if #switched == #candidates then return end
  end
  needed = {}
  for i, kind in ipairs(switched) do
    if i == #switched then
      needed[#needed + 1] = kind
    else
      xf.kernel(kind, orig[kind])
      if check() then
        xf.kernel(kind, "ref")
        needed[#needed + 1] = kind
      end
    end
  end
end)
restore()
if not ok then error(err, 0) end
if needed then
  local names = {}
  for i, kind in ipairs(needed) do names[i] = kind .. "/" .. orig[kind] end
  for _, kind in ipairs(needed) do
    print(string.format("culprit: op kind %s, variant %s (backend %s); only together with the others: %s",
                        kind, orig[kind], backend, table.concat(names, ", ")))
  end
  return needed
end
print("the pass differs even with every op kind on ref: the difference is not in a kernel choice")
