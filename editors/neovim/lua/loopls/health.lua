-- :checkhealth loopls — Neovim version, server found and its version, model, status, encoding,
-- keymaps left to the user.
local M = {}
local health = vim.health

local function server_version(cmd)
  local argv = vim.deepcopy(cmd)
  if argv[#argv] == 'lsp' then
    argv[#argv] = '--version'
  else
    table.insert(argv, '--version')
  end
  local ok, proc = pcall(vim.system, argv, { text = true })
  if not ok then
    return nil, tostring(proc)
  end
  local res = proc:wait(30000)
  if res.code ~= 0 then
    return nil, vim.trim((res.stderr or '') .. (res.stdout or ''))
  end
  return vim.trim(res.stdout)
end

function M.check()
  local loopls = require('loopls')
  local opts = loopls.options
  health.start('loopls: editor')
  if vim.fn.has('nvim-0.11') == 1 then
    local v = vim.version()
    health.ok(string.format('Neovim %d.%d.%d; ghost text %s', v.major, v.minor, v.patch,
      vim.lsp.inline_completion and 'through vim.lsp.inline_completion' or 'drawn with extmarks'))
  else
    health.error('Neovim 0.11 or newer is needed')
  end
  local keymaps = require('loopls.keymaps')
  for name, lhs in pairs(keymaps.skipped) do
    health.warn(string.format('%s is already mapped in insert mode, so loopls left it: set keymaps.%s to another key', lhs, name))
  end
  if next(keymaps.mapped) then
    local parts = {}
    for name, lhs in pairs(keymaps.mapped) do
      table.insert(parts, name .. ' ' .. lhs)
    end
    table.sort(parts)
    health.ok('keys: ' .. table.concat(parts, ', '))
  else
    health.info('no keys mapped (call require("loopls").setup{} in your config)')
  end

  health.start('loopls: server')
  local cmd = opts.cmd
  if vim.fn.executable(cmd[1]) ~= 1 then
    health.error(string.format('server command %s not found', cmd[1]),
      { 'install loopls (pip install -e . in its repository) and put it on PATH', 'or set cmd = { "/path/to/.venv/bin/loopls", "lsp" } in setup{}' })
    return
  end
  local version, err = server_version(cmd)
  if version then
    health.ok(string.format('%s: %s', vim.fn.exepath(cmd[1]), version))
  else
    health.error(string.format('%s --version failed: %s', cmd[1], err))
  end
  local model = opts.settings.model
  health.info(string.format('settings: model.name = %s, model.device = %s', model.name, model.device))

  local clients = vim.lsp.get_clients({ name = 'loopls' })
  if #clients == 0 then
    health.info('no loopls client running: open a file of one of these types: ' .. table.concat(opts.filetypes, ', '))
    return
  end
  local status_mod = require('loopls.status')
  for _, client in ipairs(clients) do
    local status, serr = status_mod.fetch(client, 5000)
    if not status then
      health.error(string.format('client %d: loopls/status failed: %s', client.id, serr))
    else
      local state = status_mod.state(status)
      local m = status.model or {}
      local line = string.format('client %d (%s): %s; model %s%s', client.id, client.root_dir or 'no root', state, m.name or '?',
        m.device and (' on ' .. m.device) or '')
      if state == 'error' then
        health.error(line .. (status.message and (': ' .. status.message) or ''))
      elseif m.untrained then
        health.warn(line .. ' — the untrained default model writes random text', { 'set settings.model.name to a checkpoint folder or a cached hub id' })
      else
        health.ok(line)
      end
    end
    health.ok(string.format('client %d: position encoding %s', client.id, client.offset_encoding))
  end
end

return M
