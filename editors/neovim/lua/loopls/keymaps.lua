-- Insert-mode keys for the suggestion. A key the user already mapped is left alone (and
-- :checkhealth says so); Neovim's own default on it (e.g. <Tab>'s snippet jump) still runs
-- when no suggestion is shown.
local M = {}

M.skipped = {} -- action -> the lhs that was left to the user's mapping
M.mapped = {} -- action -> lhs

local function is_neovim_default(map)
  return map.desc ~= nil and map.desc:match('^vim%.snippet') ~= nil
end

local function fallback_keys(lhs, previous)
  if previous and previous.callback and previous.expr == 1 then
    return previous.callback() -- Neovim's default expr mapping computes its own keys
  end
  return lhs
end

--- Map `lhs` to `action` (a Lua expression run through <Cmd>) while a suggestion is shown.
local function map(name, lhs, action, available)
  local previous = vim.fn.maparg(lhs, 'i', false, true)
  if next(previous) ~= nil and not is_neovim_default(previous) then
    M.skipped[name] = lhs
    return
  end
  previous = next(previous) ~= nil and previous or nil
  vim.keymap.set('i', lhs, function()
    if available() then
      return '<Cmd>lua ' .. action .. '<CR>'
    end
    return fallback_keys(lhs, previous)
  end, { expr = true, replace_keycodes = true, silent = true, desc = 'loopls: ' .. name:gsub('_', ' ') })
  M.mapped[name] = lhs
end

function M.setup(keymaps, visible, any_client)
  local actions = {
    accept = { "require('loopls').accept()", visible },
    accept_word = { "require('loopls').accept_word()", visible },
    accept_line = { "require('loopls').accept_line()", visible },
    next = { "require('loopls').next()", any_client },
    prev = { "require('loopls').prev()", any_client },
    dismiss = { "require('loopls').dismiss()", visible },
  }
  for name, spec in pairs(actions) do
    local lhs = keymaps[name]
    if lhs and lhs ~= '' and M.mapped[name] ~= lhs then
      map(name, lhs, spec[1], spec[2])
    end
  end
end

return M
