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
