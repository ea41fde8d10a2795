-- loopls for vim.lsp.config (Neovim 0.11+): with editors/neovim on the runtimepath,
-- `vim.lsp.enable('loopls')` is enough; require('loopls').setup{} adds your options,
-- the keymaps and the commands.
local defaults = require('loopls.config').defaults

return {
  cmd = defaults.cmd,
  filetypes = defaults.filetypes,
  root_markers = defaults.root_markers,
  -- the server reads initializationOptions, pulls section "loopls" and takes
  -- workspace/didChangeConfiguration {settings = {loopls = ...}}: the same table for all three
  init_options = defaults.settings,
  settings = { loopls = defaults.settings },
  -- UTF-16 is every server's encoding; servers that predate position-encoding negotiation
  -- accept Neovim's first offer (utf-8) and still count UTF-16 (issue with non-ASCII lines)
  capabilities = { general = { positionEncodings = { 'utf-16' } } },
  handlers = {
    ['window/showMessage'] = function(_, params, ctx)
      require('loopls.messages').show(params, ctx)
    end,
    ['loopls/status'] = function(_, params, ctx)
      require('loopls.status').on_notification(params, ctx)
    end,
  },
  on_attach = function(client, bufnr)
    require('loopls').attach(client, bufnr)
  end,
}
