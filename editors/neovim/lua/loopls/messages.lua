-- Server messages without "Press ENTER": the editor shows one line that fits the command line
-- (a burst at start-up shows the last one with a count), the full texts stay in
-- :LooplsStatus. Long or consecutive echoes are what make Neovim stop at the hit-enter prompt.
local M = {}

M.history = {} -- { level = 'Error'|'Warning'|'Info'|'Log', text = string }, oldest first
local pending = {}
local scheduled = false
local LEVELS = { 'Error', 'Warning', 'Info', 'Log', 'Debug' }
local HL = { Error = 'ErrorMsg', Warning = 'WarningMsg' }

local function one_line(text, width)
  text = text:gsub('%s*\n%s*', ' ')
  if vim.fn.strdisplaywidth(text) <= width then
    return text
  end
  return vim.fn.strcharpart(text, 0, math.max(width - 1, 1)) .. '…'
end

local function flush()
  scheduled = false
  local last, count = pending[#pending], #pending
  pending = {}
  if not last then
    return
  end
  local suffix = count > 1 and string.format(' (+%d, :LooplsStatus)', count - 1) or ''
  local width = math.max(vim.v.echospace - vim.fn.strdisplaywidth(suffix) - 1, 10)
  vim.api.nvim_echo({ { one_line(last.text, width) .. suffix, HL[last.level] or 'None' } }, true, {})
end

--- Handler of window/showMessage.
function M.show(params, _)
  local entry = { level = LEVELS[params.type] or 'Info', text = params.message }
  table.insert(M.history, entry)
  if #M.history > 50 then
    table.remove(M.history, 1)
  end
  if entry.level == 'Log' or entry.level == 'Debug' then
    return
  end
  table.insert(pending, entry)
  if not scheduled then
    scheduled = true
    -- after start-up screen updates, so that one short echo is all that is drawn
    vim.defer_fn(flush, 50)
  end
end

return M
