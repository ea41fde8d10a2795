import assert from "node:assert/strict";
import { test } from "node:test";
import { resolveServerCommand } from "../src/serverCommand";

const existing = new Set(["/venv/bin/loopls", "/usr/bin/loopls"]);
const executable = (file: string) => existing.has(file);

test("a bare name is looked up on PATH, first match wins", () => {
  assert.deepEqual(resolveServerCommand(["loopls", "lsp"], "/nowhere:/venv/bin:/usr/bin", executable),
    { ok: true, command: "/venv/bin/loopls", args: ["lsp"] });
});

test("a missing server says what to set", () => {
  const result = resolveServerCommand(["loopls", "lsp"], "/nowhere", executable);
  assert.equal(result.ok, false);
  assert.match(!result.ok ? result.message : "", /not found on PATH.*loopls\.server\.command/);
});

test("an absolute path is checked as it is", () => {
  assert.equal(resolveServerCommand(["/venv/bin/loopls"], "", executable).ok, true);
  const missing = resolveServerCommand(["/opt/loopls"], "/usr/bin", executable);
  assert.match(!missing.ok ? missing.message : "", /\/opt\/loopls does not exist/);
});

test("an empty command is an error, not a crash", () => {
  assert.equal(resolveServerCommand([], "/usr/bin", executable).ok, false);
});
