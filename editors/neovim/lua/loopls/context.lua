-- loopls/explainContext (what `loopls context --json` prints) as Markdown lines.
local M = {}

local function read_lines(root, path, first, last)
  local ok, lines = pcall(vim.fn.readfile, vim.fs.joinpath(root or '.', path))
  if not ok then
    return nil
  end
  return vim.list_slice(lines, first, last)
end

function M.render(explained, file, pos, root)
  local snippets = explained.snippets or {}
  local out = {
    string.format('# Context packed for %s:%d:%d', file, pos[1], pos[2] + 1),
    '',
    string.format('%s prompt tokens of a %s-token budget, %d cross-file snippet(s) (%d tokens in labels).',
      explained.prompt_tokens or '?', explained.budget or '?', #snippets, explained.header_tokens or 0),
  }
  if #snippets == 0 then
    table.insert(out, 'No cross-file snippets: the prompt is the file around the cursor (the index may still be building).')
    return out
  end
  vim.list_extend(out, { '', '| # | file | lines | why | tokens | score |', '|---|---|---|---|---|---|' })
  for i, s in ipairs(snippets) do
    table.insert(out, string.format('| %d | %s | %d–%d | %s | %d | %s |', i, s.path, s.start_line, s.end_line, s.source,
      s.tokens, s.score))
  end
  for i, s in ipairs(snippets) do
    local lines = read_lines(root, s.path, s.start_line, s.end_line)
    if lines then
      vim.list_extend(out, { '', string.format('## %d. %s:%d–%d (%s)', i, s.path, s.start_line, s.end_line, s.source), '', '```' })
      vim.list_extend(out, lines)
      table.insert(out, '```')
    end
  end
  return out
end

return M
