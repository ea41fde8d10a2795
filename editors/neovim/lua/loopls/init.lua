-- loopls for Neovim 0.11+: registers the server with vim.lsp.config and enables it.
-- On 0.11 completions arrive through textDocument/completion (vim.lsp.completion);
-- on 0.12+ native inline completion (vim.lsp.inline_completion) is switched on as well.
local M = {}

M.defaults = {
  cmd = { 'loopls', 'lsp' },
  filetypes = { 'python', 'javascript', 'javascriptreact', 'typescript', 'typescriptreact', 'go', 'rust', 'java', 'c', 'cpp', 'lua' },
  root_markers = { '.git', 'pyproject.toml', 'package.json', 'go.mod', 'Cargo.toml' },
  -- the same keys as the server's initializationOptions (see the top-level README)
  init_options = {
    model = { name = 'tiny', device = 'auto' },
    completion = { maxTokens = 48 },
  },
  autocomplete = true, -- vim.lsp.completion autotrigger on 0.11
}

function M.setup(opts)
  local config = vim.tbl_deep_extend('force', M.defaults, opts or {})
  vim.lsp.config('loopls', {
    cmd = config.cmd,
    filetypes = config.filetypes,
    root_markers = config.root_markers,
    init_options = config.init_options,
    on_attach = function(client, bufnr)
      if vim.lsp.inline_completion and client:supports_method('textDocument/inlineCompletion') then
        vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
      elseif client:supports_method('textDocument/completion') then
        vim.lsp.completion.enable(true, client.id, bufnr, { autotrigger = config.autocomplete })
      end
    end,
  })
  vim.lsp.enable('loopls')
end

return M
