-- The server's status (PROTOCOL: the loopls/status notification and request), kept per client
-- for :LooplsStatus, :checkhealth and a statusline component.
local M = {}

M.by_client = {} -- client id -> last status table

function M.on_notification(params, ctx)
  M.by_client[ctx.client_id] = params
  vim.api.nvim_exec_autocmds('User', { pattern = 'LooplsStatus', modeline = false })
end

--- The server's state; older servers answer without one, so it is derived.
function M.state(status)
  if not status then
    return 'starting'
  end
  if status.state then
    return status.state
  end
  if vim.tbl_get(status, 'options', 'completion', 'enabled') == false then
    return 'disabled'
  end
  if not vim.tbl_get(status, 'model', 'loaded') then
    return 'loading'
  end
  return (vim.tbl_get(status, 'stats', 'active_generations') or 0) > 0 and 'busy' or 'ready'
end

--- Ask the server (synchronously, for commands and health checks); nil on failure.
function M.fetch(client, timeout_ms)
  local res = client:request_sync('loopls/status', vim.empty_dict(), timeout_ms or 2000)
  if res and res.result then
    M.by_client[client.id] = res.result
    return res.result
  end
  return nil, res and res.err and res.err.message or 'no answer'
end

--- A short text for a statusline: `loopls: tiny (cpu) ready`.
function M.statusline(bufnr)
  local client = vim.lsp.get_clients({ bufnr = bufnr or 0, name = 'loopls' })[1]
  if not client then
    return ''
  end
  local status = M.by_client[client.id]
  local model = vim.tbl_get(status or {}, 'model', 'name') or '?'
  local device = vim.tbl_get(status or {}, 'model', 'device')
  return string.format('loopls: %s%s %s', vim.fn.fnamemodify(model, ':t'), device and (' (' .. device .. ')') or '',
    M.state(status))
end

--- Lines for people: state, model, latency, index, acceptance, recent messages.
function M.describe(client, status, last_error)
  local lines = { string.format('loopls %s — %s (client %d, root %s)', status and status.version or '?', M.state(status),
    client.id, client.root_dir or '-') }
  if status and status.message then
    table.insert(lines, status.message)
  end
  local model = status and status.model or {}
  table.insert(lines, string.format('model: %s%s%s%s', model.name or '?', model.modelType and (' (' .. model.modelType .. ')') or '',
    model.device and (' on ' .. model.device) or '', model.loaded == false and ', not loaded yet' or ''))
  if model.untrained then
    table.insert(lines, 'untrained model: completions are random text; set settings.model.name to a real checkpoint')
  end
  if status and status.lastLatencyMs then
    table.insert(lines, string.format('last completion: %d ms', status.lastLatencyMs))
  end
  local index = status and status.index
  if index and index.state and index.state ~= 'none' then
    table.insert(lines, string.format('index: %s%s', index.state,
      index.total and string.format(' %d/%d', index.done or 0, index.total) or ''))
  end
  local acc = status and status.acceptance
  if acc then
    table.insert(lines, string.format('suggestions shown %d, accepted %d, partly %d', acc.shown or 0, acc.accepted or 0,
      acc.partiallyAccepted or 0))
  end
  table.insert(lines, 'position encoding: ' .. client.offset_encoding)
  if last_error then
    table.insert(lines, 'last inline completion error: ' .. last_error)
  end
  local history = require('loopls.messages').history
  if #history > 0 then
    table.insert(lines, 'messages from the server:')
    for i = math.max(1, #history - 9), #history do
      table.insert(lines, string.format('  [%s] %s', history[i].level, history[i].text))
    end
  end
  return lines
end

return M
