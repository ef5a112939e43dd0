-- haiku.lua: asks an instruct model (Qwen2.5) for a haiku that contains a
-- given word, prints it, and fails unless the word appears, the text is
-- valid UTF-8 without U+FFFD, and no token repeats more than 4 times in a row.
--   xfdb MODEL.gguf --lua-timeout 900 --script scripts/haiku.lua [WORD] [MAX_TOKENS] [TEMP] [SEED]
-- WORD defaults to the current minute spelled out ("thirty-seven").
local ones = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
              "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"}
local tens = {[2] = "twenty", [3] = "thirty", [4] = "forty", [5] = "fifty"}

local function spell(n)
  if n == 0 then return "zero" end
  if n < 20 then return ones[n] end
  local t, o = n // 10, n % 10
  return o == 0 and tens[t] or (tens[t] .. "-" .. ones[o])
end

local word = arg[1] or spell(tonumber(os.date("%M")))
local max_tokens = tonumber(arg[2] or "80")
local temp = tonumber(arg[3] or "0")
local seed = tonumber(arg[4] or "0")

local prompt = xf.chat_format({
  {role = "user", content = 'Write a haiku that contains the word "' .. word .. '". Reply with the haiku only.'},
})
xf.run(xf.tokenize(prompt))
local ids, text = xf.generate(max_tokens, {temp = temp, seed = seed})
text = text:gsub("<|im_end|>$", "")
print(text)

local problems = {}
if not text:lower():find(word:lower(), 1, true) then
  problems[#problems + 1] = 'the word "' .. word .. '" does not appear'
end
if utf8.len(text) == nil then
  problems[#problems + 1] = "the text is not valid UTF-8"
end
if text:find("\xEF\xBF\xBD", 1, true) then
  problems[#problems + 1] = "the text holds U+FFFD"
end
local run = 1
for i = 2, #ids do
  run = ids[i] == ids[i - 1] and run + 1 or 1
  if run > 4 then
    problems[#problems + 1] = "token " .. ids[i] .. " repeats more than 4 times in a row"
    break
  end
end
if #problems > 0 then
  error("haiku test failed: " .. table.concat(problems, "; "), 0)
end
print(string.format("haiku test passed: %q appears, %d tokens, valid UTF-8", word, #ids))
