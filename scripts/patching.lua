-- patching.lua [CLEAN] [CORRUPTED]: activation patching, layer by layer.
--
-- Two prompts of the same length that differ in one token (by default
-- ' light' -> ' dark' in the tour's prompt). The clean run is kept (`keep
-- embd blk.*.out`); then, for embd and each blk.L.out, the corrupted prompt
-- runs again with the residual at the changed position written back from
-- the clean run (`set blk.L.out[P] = blk.L.out@pass-K[P]`, right after the
-- op, before anything reads it). The metric is the next-token logit
-- difference logit(A) - logit(B) at the last position, A the clean run's
-- top token and B the corrupted run's (or, when it is A too, the token of
-- its top 10 that the corruption raised most); each row says
-- how much of the clean-minus-corrupted difference the patch restores,
-- once writing the changed row and once the last row: the first falls
-- and the second rises where attention moves the information from the
-- changed token to the last one.
local clean_text = arg[1] or "ROMEO:\nWhat light through yonder window"
local corrupt_text = arg[2] or "ROMEO:\nWhat dark through yonder window"

local function piece(id)
  local s = xf.detokenize({id}):gsub("\\", "\\\\"):gsub("\n", "\\n")
  return "'" .. s .. "'"
end

local clean, corrupt = xf.tokenize(clean_text), xf.tokenize(corrupt_text)
if #clean ~= #corrupt then
  error(string.format("the prompts have %d and %d tokens: they must have the same length", #clean, #corrupt))
end
local pos
for i = 1, #clean do
  if clean[i] ~= corrupt[i] then
    if pos then error("the prompts differ in more than one token") end
    pos = i - 1 -- 0-based row
  end
end
if not pos then error("the prompts are the same") end

local m = xf.model()
local n_vocab, last = m.n_vocab, #clean - 1

-- runs ids to the end, calling at(name) right after op `name` (if given)
local function run(ids, name, at)
  xf.run(ids)
  if name then
    local id = xf.brk(name)
    local w = xf.continue()
    while w.stop == "break" and w.op ~= name do w = xf.continue() end
    xf.delete(id)
    at(w)
  end
  if not xf.where().complete then xf.finish() end
  local t, row = xf.tensor("logits"), {} -- a handle goes stale with the next pass: copy the last row
  for i = 0, n_vocab - 1 do row[i] = t:get(last, i) end
  return row
end

xf.cmd("keep embd blk.*.out --passes " .. (2 * m.n_layer + 6))
local lc = run(clean)
local clean_pass = xf.where().pass
local lx = run(corrupt)

-- A: the clean top token; B: the corrupted top token if it differs, else
-- of the corrupted run's top 10 the one the corruption raised most
local function top(row, k)
  local ids = {}
  for i = 0, n_vocab - 1 do ids[#ids + 1] = i end
  table.sort(ids, function(x, y) return row[x] > row[y] end)
  return {table.unpack(ids, 1, k)}
end
local a, tx = top(lc, 1)[1], top(lx, 10)
local b = tx[1]
if b == a then
  b = tx[2]
  for _, i in ipairs(tx) do
    if i ~= a and lx[i] - lc[i] > lx[b] - lc[b] then b = i end
  end
end
local function metric(row) return row[a] - row[b] end
local m_clean, m_corrupt = metric(lc), metric(lx)

print(string.format("activation patching: position %d %s -> %s, %d layers", pos, piece(clean[pos + 1]),
  piece(corrupt[pos + 1]), m.n_layer))
print(string.format("metric: logit(%s) - logit(%s) at the last position (row %d)", piece(a), piece(b), last))
print(string.format("  clean %.4f  corrupted %.4f", m_clean, m_corrupt))
local function bar(frac)
  local n = math.max(0, math.min(10, math.floor(frac * 10 + 0.5)))
  return "|" .. string.rep("#", n) .. string.rep(".", 10 - n) .. "|"
end
-- the metric with name's row `row` written back from the clean run
local function patched(name, row)
  local lg = run(corrupt, name, function(w)
    xf.set(name, "[" .. row .. "]", string.format("%s@pass-%d[%d]", name, w.pass - clean_pass, row))
  end)
  local v = metric(lg)
  return v, (v - m_corrupt) / (m_clean - m_corrupt)
end
print(string.format("%-11s %-31s %s", "residual", "written at row " .. pos .. " " .. piece(clean[pos + 1]),
  "at the last row " .. piece(clean[last + 1])))
local names = {"embd"}
for l = 0, m.n_layer - 1 do names[#names + 1] = "blk." .. l .. ".out" end
for _, name in ipairs(names) do
  local v1, f1 = patched(name, pos)
  local v2, f2 = patched(name, last)
  print(string.format("%-11s %8.4f %6.1f%% %s   %8.4f %6.1f%% %s", name, v1, 100 * f1, bar(f1), v2, 100 * f2, bar(f2)))
end
