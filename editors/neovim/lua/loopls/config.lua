-- Defaults of require('loopls').setup{}. `settings` are the server's options: the same keys
-- and defaults as the server's lsp/options.py and VS Code's `loopls.*` (a test checks that).
local M = {}

M.defaults = {
  cmd = { 'loopls', 'lsp' },
  filetypes = {
    'python', 'javascript', 'javascriptreact', 'typescript', 'typescriptreact',
    'go', 'rust', 'java', 'c', 'cpp',
  },
  root_markers = { '.git', 'pyproject.toml', 'package.json', 'go.mod', 'Cargo.toml', 'pom.xml' },
  settings = {
    model = {
      name = 'loopls-coder-small', device = 'auto',
      -- where the model runs: native (in the server), openai (a server at url), vllm (in process)
      backend = 'native', url = '', apiKeyEnv = '', tokenizer = '',
      contextLimit = 0, timeout = 30.0, tensorParallelSize = 1, cpuWeights = 'int8',
    },
    completion = { enabled = true, maxTokens = 48, temperature = 0.0, contextTokens = 2048, maxLines = 8, candidates = 3,
      fimLayout = 'auto', lineBestOf = 1 },
    smells = { enabled = true, disabled = {}, thresholds = vim.empty_dict() },
  },
  ghost_text = {
    enabled = true,
    debounce_ms = 75, -- after the last keystroke in insert mode
    hl_group = 'LooplsGhostText', -- linked to Comment unless defined
    filetypes = {}, -- filetype -> false switches ghost text off there, e.g. { markdown = false }
  },
  -- insert-mode keys; false leaves one unmapped. A key the user already mapped is never taken.
  keymaps = {
    accept = '<Tab>', -- without a suggestion: what the key did before (a tab, or snippet jump)
    accept_word = '<M-Right>',
    accept_line = '<M-Down>',
    next = '<M-]>',
    prev = '<M-[>',
    dismiss = '<C-]>',
  },
  -- textDocument/completion in the popup menu: on <C-x><C-o>, or as you type with autotrigger.
  completion_menu = { enabled = true, autotrigger = false },
}

--- Defaults deep-merged with the user's options (lists are replaced, not merged).
function M.resolve(opts)
  return vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
end

return M
