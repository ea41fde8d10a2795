-- loopls for Neovim 0.11+: require('loopls').setup{} registers the server with vim.lsp.config,
-- shows its inline completions as ghost text (extmarks on 0.11, vim.lsp.inline_completion on
-- 0.12+), maps the accept/cycle/dismiss keys and adds :LooplsStatus, :LooplsToggle,
-- :LooplsContext. Options: lua/loopls/config.lua; :help-style notes in the README.
local config = require('loopls.config')
local ghost = require('loopls.ghost')

local M = {}
M.options = config.resolve()
local native = vim.lsp.inline_completion ~= nil -- Neovim 0.12+

local function clients(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr, name = 'loopls' })
end

local function use_ghost(bufnr)
  return M.options.ghost_text.enabled and M.options.ghost_text.filetypes[vim.bo[bufnr].filetype] ~= false
end

-- The completion menu inserts the whole suggestion: 0.11 makes the menu word of a plain-text
-- item only its first word, so the rest of the text edit is put in after the menu closes.
local function complete_done(bufnr)
  local item = vim.tbl_get(vim.v.completed_item or {}, 'user_data', 'nvim', 'lsp', 'completion_item')
  local client_id = vim.tbl_get(vim.v.completed_item or {}, 'user_data', 'nvim', 'lsp', 'client_id')
  local client = client_id and vim.lsp.get_client_by_id(client_id)
  if not item or not client or client.name ~= 'loopls' or not item.textEdit then
    return
  end
  local edit = item.textEdit
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  row = row - 1
  if edit.range.start.line ~= row then
    return
  end
  local line = vim.api.nvim_get_current_line()
  local start = require('loopls.util').byte_col(line, edit.range.start.character, client.offset_encoding)
  local inserted = line:sub(start + 1, col)
  if inserted == edit.newText or edit.newText:sub(1, #inserted) ~= inserted then
    return
  end
  local lines = vim.split(edit.newText, '\n', { plain = true })
  vim.api.nvim_buf_set_text(bufnr, row, start, row, col, lines)
  local end_row = row + #lines - 1
  vim.api.nvim_win_set_cursor(0, { end_row + 1, #lines == 1 and start + #lines[1] or #lines[#lines] })
end

local function attach_completion_menu(client, bufnr)
  local menu = M.options.completion_menu
  if not menu.enabled or not client:supports_method('textDocument/completion') then
    return
  end
  vim.lsp.completion.enable(true, client.id, bufnr, {
    autotrigger = menu.autotrigger,
    convert = function(item)
      local text = item.textEdit and item.textEdit.newText or item.insertText or item.label
      return { word = vim.split(text, '\n', { plain = true })[1] }
    end,
  })
  -- never insert a suggestion by itself (the menu opens with nothing selected), and show the
  -- menu for our single item too ('menu' alone waits for two)
  local cot = vim.split(vim.bo[bufnr].completeopt ~= '' and vim.bo[bufnr].completeopt or vim.o.completeopt, ',')
  if not vim.list_contains(cot, 'noselect') and not vim.list_contains(cot, 'noinsert') then
    table.insert(cot, 'noselect')
  end
  if not vim.list_contains(cot, 'menuone') then
    table.insert(cot, 'menuone')
  end
  vim.bo[bufnr].completeopt = table.concat(cot, ',')
  vim.api.nvim_create_autocmd('CompleteDone', {
    group = vim.api.nvim_create_augroup('loopls.menu.' .. bufnr, { clear = true }),
    buffer = bufnr,
    callback = function()
      complete_done(bufnr)
    end,
  })
end

--- Called when the server attaches to a buffer (lsp/loopls.lua's on_attach).
function M.attach(client, bufnr)
  if use_ghost(bufnr) and client:supports_method('textDocument/inlineCompletion') then
    if native then
      vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
    else
      ghost.attach(bufnr)
    end
  end
  attach_completion_menu(client, bufnr)
end

-- Actions behind the keymaps and commands -------------------------------------------------

local function accept_part(what)
  if not native then
    return ghost.accept_part(nil, what)
  end
  return vim.lsp.inline_completion.get({
    on_accept = function(item)
      local text = require('loopls.util').item_text(item)
      local part = what == 'line' and (text:match('^[^\n]*\n?') or text) or (text:match('^%s*[%w_]+') or text:sub(1, 1))
      vim.api.nvim_put({ part }, 'c', false, true)
    end,
  })
end

function M.visible()
  if native then
    return vim.lsp.inline_completion.is_enabled({ bufnr = 0 }) and next(clients(0)) ~= nil
  end
  return ghost.visible()
end

function M.accept()
  return native and vim.lsp.inline_completion.get() or ghost.accept()
end

function M.accept_word()
  return accept_part('word')
end

function M.accept_line()
  return accept_part('line')
end

function M.next()
  return native and vim.lsp.inline_completion.select({ count = 1 }) or ghost.cycle(nil, 1)
end

function M.prev()
  return native and vim.lsp.inline_completion.select({ count = -1 }) or ghost.cycle(nil, -1)
end

function M.dismiss()
  return not native and ghost.dismiss()
end

--- Turn completions on or off (the server's completion.enabled), for every loopls client.
function M.toggle()
  local enabled = not M.options.settings.completion.enabled
  M.options.settings.completion.enabled = enabled
  for _, client in ipairs(vim.lsp.get_clients({ name = 'loopls' })) do
    client.settings = { loopls = M.options.settings }
    client:notify('workspace/didChangeConfiguration', { settings = client.settings })
  end
  if not enabled then
    for _, buf in ipairs(vim.api.nvim_list_bufs()) do
      ghost.clear(buf, 'disabled')
    end
  end
  vim.api.nvim_echo({ { 'loopls: completions ' .. (enabled and 'on' or 'off') } }, false, {})
end

local function scratch(name, lines, filetype)
  vim.cmd('botright new')
  local buf = vim.api.nvim_get_current_buf()
  vim.bo[buf].buftype, vim.bo[buf].bufhidden, vim.bo[buf].swapfile = 'nofile', 'wipe', false
  pcall(vim.api.nvim_buf_set_name, buf, name)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable, vim.bo[buf].filetype = false, filetype
end

function M.status_lines(bufnr)
  local found = clients(bufnr or 0)
  if #found == 0 then
    return { 'loopls is not attached to this buffer (:checkhealth loopls tells why)' }
  end
  local lines = {}
  for _, client in ipairs(found) do
    local status, err = require('loopls.status').fetch(client)
    vim.list_extend(lines, require('loopls.status').describe(client, status, ghost.last_error or err))
  end
  return lines
end

function M.show_context()
  local client = clients(0)[1]
  if not client then
    vim.api.nvim_echo({ { 'loopls is not attached to this buffer', 'WarningMsg' } }, false, {})
    return
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  local file = vim.fn.expand('%:.')
  local pos = vim.api.nvim_win_get_cursor(0)
  client:request('loopls/explainContext', params, function(err, result)
    if err then
      vim.api.nvim_echo({ { 'loopls: ' .. err.message, 'ErrorMsg' } }, false, {})
      return
    end
    scratch('loopls://context', require('loopls.context').render(result or {}, file, pos, client.root_dir), 'markdown')
  end, 0)
end

local function commands()
  local function cmd(name, fn, desc)
    vim.api.nvim_create_user_command(name, fn, { desc = desc, force = true })
  end
  cmd('LooplsStatus', function()
    scratch('loopls://status', M.status_lines(0), 'markdown')
  end, 'loopls: server state, model, latency, index, messages')
  cmd('LooplsToggle', M.toggle, 'loopls: turn completions on or off')
  cmd('LooplsContext', M.show_context, 'loopls: the context packed for the cursor, and why')
end

--- Set up loopls; `opts` as in lua/loopls/config.lua (`settings` are the server's options).
function M.setup(opts)
  M.options = config.resolve(opts)
  ghost.options = vim.tbl_extend('force', ghost.options, M.options.ghost_text)
  if vim.fn.hlexists('LooplsGhostText') == 0 or vim.tbl_isempty(vim.api.nvim_get_hl(0, { name = 'LooplsGhostText' })) then
    vim.api.nvim_set_hl(0, 'LooplsGhostText', { link = 'Comment', default = true })
  end
  vim.lsp.config('loopls', {
    cmd = M.options.cmd,
    filetypes = M.options.filetypes,
    root_markers = M.options.root_markers,
    init_options = M.options.settings,
    settings = { loopls = M.options.settings },
  })
  vim.lsp.enable('loopls')
  require('loopls.keymaps').setup(M.options.keymaps, function()
    return M.visible()
  end, function()
    return next(clients(0)) ~= nil
  end)
  commands()
end

return M
