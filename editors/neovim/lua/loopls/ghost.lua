-- Ghost text on Neovim 0.11, which has no vim.lsp.inline_completion: textDocument/inlineCompletion
-- asked after a pause in insert mode, drawn with extmarks at the cursor. Typing what the
-- suggestion says keeps the rest of it; typing anything else, moving away or leaving insert
-- mode clears it (as copilot.lua does).
local api = vim.api
local util = require('loopls.util')

local M = {}
local ns = api.nvim_create_namespace('loopls.ghost')
local METHOD = 'textDocument/inlineCompletion'
local INVOKED, AUTOMATIC = 1, 2

M.options = { debounce_ms = 75, hl_group = 'LooplsGhostText', filetypes = {} }
M.last_error = nil
M.events = {} -- the last few { kind = 'shown'|'cleared'|'accepted'|..., ... } for :LooplsStatus and tests

-- per buffer: { client_id, items, index, row, col, text (what is left to show), tick, timer, request, cycled }
local buffers = {}

local seq = 0
local function record(kind, data)
  seq = seq + 1
  table.insert(M.events, vim.tbl_extend('force', { kind = kind, seq = seq }, data or {}))
  if #M.events > 50 then
    table.remove(M.events, 1)
  end
end

local function state(bufnr)
  buffers[bufnr] = buffers[bufnr] or { items = {}, index = 1 }
  return buffers[bufnr]
end

local function cursor()
  local pos = api.nvim_win_get_cursor(0)
  return pos[1] - 1, pos[2]
end

local function client_of(bufnr)
  local st = buffers[bufnr]
  local client = st and st.client_id and vim.lsp.get_client_by_id(st.client_id)
  return client and not client:is_stopped() and client or nil
end

local function render(bufnr, st)
  api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
  local lines = vim.split(st.text, '\n', { plain = true })
  local opts = { hl_mode = 'combine', priority = 200 }
  if lines[1] ~= '' then
    opts.virt_text = { { lines[1], M.options.hl_group } }
    opts.virt_text_pos = 'inline'
  end
  if #lines > 1 then
    opts.virt_lines = vim.tbl_map(function(l)
      return { { l, M.options.hl_group } }
    end, vim.list_slice(lines, 2))
  end
  st.mark = api.nvim_buf_set_extmark(bufnr, ns, st.row, st.col, opts)
end

--- Remove the suggestion (and cancel what is pending) in `bufnr`.
function M.clear(bufnr, reason)
  bufnr = bufnr or api.nvim_get_current_buf()
  local st = buffers[bufnr]
  if not st then
    return
  end
  if st.timer then
    st.timer:stop()
  end
  local client = client_of(bufnr)
  if st.request and client then
    client:cancel_request(st.request)
  end
  st.request = nil
  if st.text then
    record('cleared', { reason = reason, text = st.text })
  end
  st.items, st.index, st.text, st.cycled = {}, 1, nil, false
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
  end
end

function M.visible(bufnr)
  local st = buffers[bufnr or api.nvim_get_current_buf()]
  return st ~= nil and st.text ~= nil and st.text ~= ''
end

--- The shown item, and the part of it not typed yet, for the statusline or tests.
function M.current(bufnr)
  local st = buffers[bufnr or api.nvim_get_current_buf()]
  if not st or not st.text then
    return nil
  end
  return { text = st.text, item = st.items[st.index], index = st.index, count = #st.items }
end

-- What is left of `item` to insert at the cursor (nil when the typed text disagrees with it).
local function remainder(bufnr, client, item, row, col)
  local text = type(item.insertText) == 'table' and item.insertText.value or item.insertText or ''
  local start_col, end_col = col, col
  if item.range then
    if item.range.start.line ~= row then
      return nil
    end
    local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
    start_col = util.byte_col(line, item.range.start.character, client.offset_encoding)
    if item.range['end'].line == row then
      end_col = math.max(col, util.byte_col(line, item.range['end'].character, client.offset_encoding))
    end
    local typed = line:sub(start_col + 1, col)
    if text:sub(1, #typed) ~= typed then
      return nil
    end
    text = text:sub(#typed + 1)
  end
  return text ~= '' and text or nil, end_col
end

local function show(bufnr, st, client, index)
  local row, col = cursor()
  local item = st.items[index]
  local text, end_col = remainder(bufnr, client, item, row, col)
  if not text then
    return false
  end
  st.index, st.text, st.row, st.col, st.end_col = index, text, row, col, end_col
  st.tick = api.nvim_buf_get_changedtick(bufnr)
  st.accepted_units = 0
  render(bufnr, st)
  record('shown', { text = text, index = index, count = #st.items })
  local id = util.item_id(item)
  if id then
    client:notify('loopls/didShowCompletion', { id = id })
  end
  return true
end

local function request(bufnr, trigger_kind, on_items)
  local client = vim.lsp.get_clients({ bufnr = bufnr, name = 'loopls', method = METHOD })[1]
  if not client or api.nvim_get_mode().mode:sub(1, 1) ~= 'i' or api.nvim_get_current_buf() ~= bufnr then
    return
  end
  local st = state(bufnr)
  st.client_id = client.id
  if st.request then
    client:cancel_request(st.request)
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = trigger_kind }
  local tick, row, col = api.nvim_buf_get_changedtick(bufnr), cursor()
  local ok, id
  ok, id = client:request(METHOD, params, function(err, result)
    if st.request == id then
      st.request = nil
    end
    if err then
      M.last_error = err.message
      return
    end
    M.last_error = nil
    local now_row, now_col = cursor()
    if api.nvim_get_current_buf() ~= bufnr or api.nvim_buf_get_changedtick(bufnr) ~= tick
        or now_row ~= row or now_col ~= col or api.nvim_get_mode().mode:sub(1, 1) ~= 'i' then
      return -- the user moved on; a newer request is on its way
    end
    local items = result and (result.items or result) or {}
    on_items(client, items)
  end, bufnr)
  st.request = ok and id or nil
end

--- Ask for a suggestion now (`invoked` is an explicit request: LSP triggerKind 1).
function M.trigger(bufnr, invoked)
  bufnr = bufnr or api.nvim_get_current_buf()
  local st = state(bufnr)
  request(bufnr, invoked and INVOKED or AUTOMATIC, function(client, items)
    M.clear(bufnr, 'replaced')
    st.items = items
    for i = 1, #items do
      if show(bufnr, st, client, i) then
        return
      end
    end
  end)
end

--- Ask again after a pause in typing.
function M.schedule(bufnr)
  local ft = vim.bo[bufnr].filetype
  if M.options.filetypes[ft] == false then
    return
  end
  local st = state(bufnr)
  st.timer = st.timer or vim.uv.new_timer()
  st.timer:stop()
  st.timer:start(M.options.debounce_ms, 0, vim.schedule_wrap(function()
    if api.nvim_buf_is_valid(bufnr) then
      M.trigger(bufnr, false)
    end
  end))
end

-- Text changed in insert mode: keep the suggestion if the user typed what it says.
function M.on_text_changed(bufnr)
  local st = state(bufnr)
  local tick = api.nvim_buf_get_changedtick(bufnr)
  if st.text and tick == st.tick then
    return -- our own partial accept
  end
  local row, col = cursor()
  if st.text and row == st.row and col > st.col then
    local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
    local typed = line:sub(st.col + 1, col)
    if st.text:sub(1, #typed) == typed and #typed < #st.text then
      st.text, st.col, st.tick = st.text:sub(#typed + 1), col, tick
      st.end_col = math.max(st.end_col + #typed, col)
      render(bufnr, st)
      record('typed_through', { typed = typed })
      return
    end
  end
  M.clear(bufnr, 'typed')
  M.schedule(bufnr)
end

function M.on_cursor_moved(bufnr)
  local st = buffers[bufnr]
  if not st or not st.text or api.nvim_buf_get_changedtick(bufnr) ~= st.tick then
    return
  end
  local row, col = cursor()
  if row ~= st.row or col ~= st.col then
    M.clear(bufnr, 'moved')
  end
end

-- Insert `text` at the cursor, replacing up to `end_col` on the line; the cursor goes after it.
local function insert(bufnr, st, text, end_col)
  local lines = vim.split(text, '\n', { plain = true })
  api.nvim_buf_set_text(bufnr, st.row, st.col, st.row, end_col, lines)
  local row = st.row + #lines - 1
  local col = #lines == 1 and st.col + #lines[1] or #lines[#lines]
  api.nvim_win_set_cursor(0, { row + 1, col })
  return row, col
end

--- Accept the whole suggestion.
function M.accept(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  local st = buffers[bufnr]
  local client = client_of(bufnr)
  if not st or not st.text or not client then
    return false
  end
  local item, text = st.items[st.index], st.text
  M.clear(bufnr, 'accepted')
  st.row, st.col = cursor()
  insert(bufnr, st, text, math.max(st.end_col or st.col, st.col))
  record('accepted', { text = text })
  util.run_accept_command(client, item, bufnr)
  return true
end

-- The next word (leading spaces, then a run of word or of other characters) or line of `text`.
local function next_part(text, what)
  if what == 'line' then
    local nl = text:find('\n', 1, true)
    if nl == 1 then
      local after = text:find('\n', 2, true)
      return after and text:sub(1, after - 1) or text
    end
    return nl and text:sub(1, nl - 1) or text
  end
  return text:match('^\n?%s*[%w_]+') or text:match('^\n?%s*[^%w_%s]+') or text:match('^\n?%s+') or text:sub(1, 1)
end

--- Accept the next word or line of the suggestion; the rest stays shown.
function M.accept_part(bufnr, what)
  bufnr = bufnr or api.nvim_get_current_buf()
  local st = buffers[bufnr]
  local client = client_of(bufnr)
  if not st or not st.text or not client then
    return false
  end
  local part = next_part(st.text, what)
  if #part >= #st.text then
    return M.accept(bufnr)
  end
  local item = st.items[st.index]
  local row, col = insert(bufnr, st, part, st.col)
  st.text, st.row, st.col, st.end_col = st.text:sub(#part + 1), row, col, col
  st.tick = api.nvim_buf_get_changedtick(bufnr)
  st.accepted_units = (st.accepted_units or 0) + util.utf16_len(part)
  render(bufnr, st)
  record('accepted_part', { text = part, what = what })
  local id = util.item_id(item)
  if id then
    client:notify('loopls/didPartiallyAcceptCompletion', { id = id, acceptedLength = st.accepted_units })
  end
  return true
end

--- Show the next (1) or previous (-1) suggestion; the first time, ask the server for more
--- (an invoked request) and keep the distinct ones.
function M.cycle(bufnr, step)
  bufnr = bufnr or api.nvim_get_current_buf()
  local st = state(bufnr)
  local function go(client)
    if #st.items == 0 then
      return
    end
    local index = ((st.index - 1 + step) % #st.items) + 1
    record('cycled', { from = st.index, to = index, count = #st.items })
    show(bufnr, st, client, index)
  end
  if st.cycled then
    local client = client_of(bufnr)
    if client then
      go(client)
    end
    return
  end
  request(bufnr, INVOKED, function(client, items)
    local seen = {}
    for _, it in ipairs(st.items) do
      seen[util.item_text(it)] = true
    end
    for _, it in ipairs(items) do
      if not seen[util.item_text(it)] then
        seen[util.item_text(it)] = true
        table.insert(st.items, it)
      end
    end
    st.cycled = true
    if st.text then
      go(client)
    else
      st.index = 0
      go(client)
    end
  end)
end

--- Hide the suggestion until the next edit.
function M.dismiss(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  if not M.visible(bufnr) then
    return false
  end
  M.clear(bufnr, 'dismissed')
  return true
end

function M.attach(bufnr)
  local group = api.nvim_create_augroup('loopls.ghost.' .. bufnr, { clear = true })
  api.nvim_create_autocmd('TextChangedI', { group = group, buffer = bufnr, callback = function() M.on_text_changed(bufnr) end })
  api.nvim_create_autocmd('CursorMovedI', { group = group, buffer = bufnr, callback = function() M.on_cursor_moved(bufnr) end })
  api.nvim_create_autocmd('InsertEnter', { group = group, buffer = bufnr, callback = function() M.schedule(bufnr) end })
  api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, { group = group, buffer = bufnr,
    callback = function() M.clear(bufnr, 'left') end })
  api.nvim_create_autocmd('LspDetach', { group = group, buffer = bufnr, callback = function(args)
    if buffers[bufnr] and buffers[bufnr].client_id == args.data.client_id then
      M.clear(bufnr, 'detached')
      pcall(api.nvim_del_augroup_by_id, group)
    end
  end })
end

return M
