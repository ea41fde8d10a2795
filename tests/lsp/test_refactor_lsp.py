"""Refactoring code actions end to end: the real server over stdio, a real client with the
capabilities VS Code and Neovim announce, real files in a git repository. Every refactor
kind is listed, resolved and applied as an editor applies it; the extract and inline round
trips then run the refactored code's own tests (pytest for Python, node's test runner for
JavaScript), which pass before and after. Stale resolves, refused edits, the `only` filter,
clients without lazy edits and the model-driven path (with the embedded default model) too."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from refactor_session import (EDITOR_CAPABILITIES, apply_workspace_edit, code_actions, make_repo, open_document,
                              selection)

pytestmark = pytest.mark.asyncio(loop_scope="module")
SERVER = [sys.executable, "-m", "loopls.lsp", "lsp"]

PRICING = '''import os
import math
from decimal import Decimal
import sys


def total_price(items, tax_rate):
    subtotal = 0
    count = 0
    for item in items:
        line = item["price"] * item["qty"]
        subtotal += line
        count += 1
    tax = subtotal * tax_rate
    return round(subtotal + tax, 2), count


def label(name, price):
    return f"{name}: {price:.2f} EUR"


def describe(name, qty):
    return "{} x{}".format(name, qty)


class Basket:
    def __init__(self, items):
        self.items = items

    def heaviest(self):
        weights = [item["weight"] for item in self.items]
        best = max(weights)
        return best * math.ceil(len(self.items) / 2)
'''
TESTS = '''from shop.pricing import Basket, describe, label, total_price


def test_total_price():
    items = [{"price": 2.5, "qty": 2}, {"price": 1.0, "qty": 3}]
    assert total_price(items, 0.1) == (8.8, 2)


def test_label_and_describe():
    assert label("tea", 3) == "tea: 3.00 EUR"
    assert describe("tea", 2) == "tea x2"


def test_basket():
    assert Basket([{"weight": 3}, {"weight": 5}, {"weight": 1}]).heaviest() == 10
'''
CART = '''import { readFileSync } from "node:fs";
import { strictEqual } from "node:assert";

export function cartTotal(lines, discount) {
  const gross = lines.reduce((sum, l) => sum + l.price * l.qty, 0);
  const rate = 1 - discount;
  return Math.round(gross * rate * 100) / 100;
}
'''
CART_TEST = '''import { test } from "node:test";
import assert from "node:assert";
import { cartTotal } from "./cart.js";

test("cart total", () => {
  assert.strictEqual(cartTotal([{ price: 2, qty: 3 }, { price: 1.5, qty: 2 }], 0.5), 4.5);
});
'''
FILES = {
    "shop/__init__.py": "", "shop/pricing.py": PRICING, "tests/test_pricing.py": TESTS,
    "web/package.json": '{"type": "module"}\n', "web/cart.js": CART, "web/cart.test.js": CART_TEST,
    "web/view.ts": "export function view(user: { name: string }): string {\n  const name = user.name;\n"
                   "  return `<b>${name}</b>`;\n}\n",
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("refactor") / "ws", FILES)


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(server_command=SERVER))
async def client(lsp_client: LanguageClient, workspace: Path):
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=EDITOR_CAPABILITIES, root_uri=workspace.as_uri(),
        initialization_options={"completion": {"maxTokens": 4}}))
    yield
    await lsp_client.shutdown_session()


def run_python_tests(root: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def run_node_tests(root: Path) -> None:
    node = shutil.which("node")
    assert node is not None, "node is needed to run the JavaScript round trip (Debian: apt-get install nodejs)"
    proc = subprocess.run([node, "--test", "cart.test.js"], cwd=root / "web", capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


class Editor:
    """One open document: ask for actions, resolve one, apply it, save it, tell the server."""

    def __init__(self, client: LanguageClient, path: Path, language: str) -> None:
        self.client, self.path = client, path
        self.text = path.read_text(encoding="utf-8")
        self.version = 1
        self.uri = open_document(client, path, language)

    async def actions(self, needle: str, occurrence: int = 0, cursor: bool = False, only: list[str] | None = None):
        return await code_actions(self.client, self.uri, selection(self.text, needle, occurrence, cursor), only)

    async def apply(self, kind: str, needle: str, occurrence: int = 0, cursor: bool = False) -> types.CodeAction:
        (action,) = [a for a in await self.actions(needle, occurrence, cursor) if a.kind == kind]
        assert action.disabled is None and action.edit is None  # listed lazily
        resolved = await self.client.code_action_resolve_async(action)
        assert resolved.disabled is None, resolved.disabled
        (doc_edit,) = resolved.edit.document_changes
        assert doc_edit.text_document.version == self.version
        assert resolved.edit.change_annotations["loopls.refactor"].label == resolved.title
        assert all(e.annotation_id == "loopls.refactor" for e in doc_edit.edits)
        self.change(apply_workspace_edit(self.text, resolved.edit))
        return resolved

    def change(self, text: str) -> None:
        self.text = text
        self.version += 1
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))
        self.path.write_text(text, encoding="utf-8")


async def test_python_round_trips_keep_the_tests_passing(client: LanguageClient, workspace: Path):
    run_python_tests(workspace)
    doc = Editor(client, workspace / "shop" / "pricing.py", "python")
    await doc.apply("refactor.extract.variable", "subtotal + tax")
    assert "    value = subtotal + tax\n    return round(value, 2), count\n" in doc.text
    run_python_tests(workspace)
    await doc.apply("refactor.inline.variable", "value", cursor=True)
    assert "    return round(subtotal + tax, 2), count\n" in doc.text
    run_python_tests(workspace)
    await doc.apply("refactor.extract.function",
                    'line = item["price"] * item["qty"]\n        subtotal += line\n        count += 1')
    assert "def extracted(item, subtotal, count):\n" in doc.text
    assert "        subtotal, count = extracted(item, subtotal, count)\n" in doc.text
    run_python_tests(workspace)
    await doc.apply("refactor.extract.function", "best = max(weights)")
    assert "        best = self.extracted_2(weights)\n" in doc.text and "    @staticmethod\n" in doc.text
    run_python_tests(workspace)
    await doc.apply("refactor.rewrite.format", "{name}: ", cursor=True)
    assert 'return "{}: {:.2f} EUR".format(name, price)' in doc.text
    await doc.apply("refactor.rewrite.fstring", "format(name, qty)", cursor=True)
    assert 'return f"{name} x{qty}"' in doc.text
    run_python_tests(workspace)
    (organize,) = await doc.actions("import os", cursor=True, only=["source.organizeImports"])
    resolved = await client.code_action_resolve_async(organize)
    doc.change(apply_workspace_edit(doc.text, resolved.edit))
    assert doc.text.startswith("import math\n\n\ndef extracted(")  # os, sys and Decimal were unused
    run_python_tests(workspace)


async def test_javascript_round_trips_keep_the_tests_passing(client: LanguageClient, workspace: Path):
    run_node_tests(workspace)
    doc = Editor(client, workspace / "web" / "cart.js", "javascript")
    await doc.apply("refactor.inline.variable", "rate", cursor=True)
    assert "return Math.round(gross * (1 - discount) * 100) / 100;" in doc.text
    run_node_tests(workspace)
    await doc.apply("refactor.extract.variable", "gross * (1 - discount) * 100")
    assert "  const value = gross * (1 - discount) * 100;\n  return Math.round(value) / 100;" in doc.text
    run_node_tests(workspace)
    (organize,) = await doc.actions("import", cursor=True, only=["source"])
    resolved = await client.code_action_resolve_async(organize)
    doc.change(apply_workspace_edit(doc.text, resolved.edit))
    assert doc.text.startswith("export function cartTotal")
    run_node_tests(workspace)


async def test_typescript_inline_and_extract(client: LanguageClient, workspace: Path):
    doc = Editor(client, workspace / "web" / "view.ts", "typescript")
    await doc.apply("refactor.inline.variable", "name}</b>", cursor=True)
    assert doc.text == "export function view(user: { name: string }): string {\n  return `<b>${user.name}</b>`;\n}\n"
    await doc.apply("refactor.extract.variable", "user.name", occurrence=0)
    assert "  const name = user.name;\n  return `<b>${name}</b>`;" in doc.text


async def test_stale_resolve_answers_content_modified(client: LanguageClient, workspace: Path):
    path = workspace / "shop" / "stale.py"
    path.write_text("def f(a):\n    return g(a + 1)\n", encoding="utf-8")
    doc = Editor(client, path, "python")
    (action,) = [a for a in await doc.actions("a + 1") if a.kind == "refactor.extract.variable"]
    doc.change("def f(a):\n    return g(a + 2)\n")
    with pytest.raises(JsonRpcException) as raised:
        await client.code_action_resolve_async(action)
    assert raised.value.code == -32801
    with pytest.raises(JsonRpcException) as raised:  # data the server never made
        await client.code_action_resolve_async(types.CodeAction(title="x", data={"uri": doc.uri}))
    assert raised.value.code == -32602


async def test_refused_edits_are_listed_disabled_with_the_reason(client: LanguageClient, workspace: Path):
    path = workspace / "shop" / "refused.py"
    path.write_text('def f(x):\n    while x.more():\n        x.step()\n    key = "AKIAABCDEFGHIJKLMNOP"\n'
                    '    return key\n', encoding="utf-8")
    doc = Editor(client, path, "python")
    (loop,) = [a for a in await doc.actions("x.more()") if a.kind == "refactor.extract.variable"]
    assert loop.edit is None and "loop condition" in loop.disabled.reason
    (secret,) = [a for a in await doc.actions("key", occurrence=1, cursor=True) if a.kind == "refactor.inline.variable"]
    assert secret.edit is None and "secret-looking" in secret.disabled.reason
    broken = Editor(client, workspace / "shop" / "broken.py", "python") if (workspace / "shop" / "broken.py").write_text(
        "def f(a):\n    return g(a + 1)\n\ndef oops(:\n", encoding="utf-8") else None
    (syntax,) = [a for a in await broken.actions("a + 1") if a.kind == "refactor.extract.variable"]
    assert "syntax error" in syntax.disabled.reason


async def test_only_filters_and_the_light_bulb(client: LanguageClient, workspace: Path):
    path = workspace / "shop" / "kinds.py"
    path.write_text("import os\n\n\ndef f(a):\n    b = a + 1\n    return b\n", encoding="utf-8")
    doc = Editor(client, path, "python")
    refactor = await doc.actions("a + 1", only=["refactor"])
    assert refactor and all(a.kind.startswith("refactor.") for a in refactor)
    assert {a.kind for a in await doc.actions("a + 1", only=["refactor.extract"])} == {
        "refactor.extract.variable", "refactor.extract.function"}
    assert [a.kind for a in await doc.actions("a + 1", only=["source"])] == ["source.organizeImports"]
    bulb = await code_actions(client, doc.uri, selection(doc.text, "a + 1"), trigger=types.CodeActionTriggerKind.Automatic)
    assert bulb and not any(a.kind.startswith("source") or "(model)" in a.title for a in bulb)
    (extract,) = [a for a in bulb if a.kind == "refactor.extract.variable"]
    resolved = await client.code_action_resolve_async(extract)  # verified now, on resolve
    assert resolved.disabled is None and "value = a + 1" in apply_workspace_edit(doc.text, resolved.edit)


async def test_model_driven_rewrites_are_verified_or_refused(client: LanguageClient, workspace: Path):
    path = workspace / "shop" / "model.py"
    path.write_text("def area(w, h):\n    return w * h\n\n\ndef wide(a, b, c, d, e, f):\n    return a\n", encoding="utf-8")
    doc = Editor(client, path, "python")
    actions = await doc.actions("return w * h", cursor=True)
    model = [a for a in actions if a.kind in ("refactor.rewrite.docstring", "refactor.rewrite.typeHints",
                                              "refactor.rewrite.simplify")]
    assert {a.kind for a in model} == {"refactor.rewrite.docstring", "refactor.rewrite.typeHints",
                                       "refactor.rewrite.simplify"}
    diagnostics = (await client.text_document_diagnostic_async(types.DocumentDiagnosticParams(
        text_document=types.TextDocumentIdentifier(uri=doc.uri)))).items
    (smell,) = [d for d in diagnostics if d.code == "LS104"]
    fixes = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=doc.uri), range=smell.range,
        context=types.CodeActionContext(diagnostics=[smell], only=["quickfix"])))
    (fix,) = fixes
    assert fix.kind == "quickfix" and "too-many-arguments" in fix.title
    for action in [*model, fix]:
        resolved = await client.code_action_resolve_async(action)
        if resolved.edit is not None:  # a model that wrote valid code: verified, and marked for preview
            assert resolved.disabled is None
            assert resolved.edit.change_annotations["loopls.refactor"].needs_confirmation is True
            compile(apply_workspace_edit(doc.text, resolved.edit), "model.py", "exec")
        else:
            assert resolved.disabled.reason, action.title
    status = await client.protocol.send_request_async("loopls/status", {})
    assert status.stats.generated_tokens > 0  # the model did run


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(server_command=SERVER))
async def plain_client(lsp_client: LanguageClient, workspace: Path):
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=types.ClientCapabilities(), root_uri=workspace.as_uri()))
    yield
    await lsp_client.shutdown_session()


async def test_a_client_without_lazy_edits_gets_them_listed(plain_client: LanguageClient, workspace: Path):
    path = workspace / "shop" / "plain.py"
    path.write_text("def f(a):\n    while a.more():\n        a.step(a + 1)\n", encoding="utf-8")
    doc = Editor(plain_client, path, "python")
    actions = await doc.actions("a + 1")
    (extract,) = [a for a in actions if a.kind == "refactor.extract.variable"]
    assert extract.edit is not None and extract.edit.changes  # no documentChanges support: plain changes
    (text_edit, *_) = extract.edit.changes[doc.uri]
    assert isinstance(text_edit, types.TextEdit) and not hasattr(text_edit, "annotation_id")
    assert not any("(model)" in a.title for a in actions)  # they need resolve
    assert not [a for a in await doc.actions("a.more()") if a.kind == "refactor.extract.variable"]  # no disabled
