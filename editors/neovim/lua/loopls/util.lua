-- Small helpers shared by the ghost text and the completion menu.
local M = {}

local ACCEPT = 'loopls.acceptCompletion'

--- Byte column of an LSP `character` on `line` in the client's position encoding.
function M.byte_col(line, character, encoding)
  local ok, col = pcall(vim.str_byteindex, line, encoding, character, false)
  return ok and col or #line
end

function M.utf16_len(text)
  return (vim.str_utfindex(text, 'utf-16'))
end

function M.item_text(item)
  local text = item.insertText
  return type(text) == 'table' and text.value or text or ''
end

--- The id the server put in the item's accept command (PROTOCOL: arguments [{id}]).
function M.item_id(item)
  local command = item and item.command
  if type(command) ~= 'table' or command.command ~= ACCEPT then
    return nil
  end
  local arg = (command.arguments or {})[1]
  return type(arg) == 'table' and arg.id or nil
end

--- Run the item's command on accept, if the server offers it (older servers do not).
function M.run_accept_command(client, item, bufnr)
  local command = item and item.command
  if type(command) ~= 'table' then
    return
  end
  local provider = client.server_capabilities.executeCommandProvider
  local commands = type(provider) == 'table' and provider.commands or {}
  if vim.list_contains(commands, command.command) then
    client:request('workspace/executeCommand', { command = command.command, arguments = command.arguments },
      function() end, bufnr)
  end
end

return M
