import assert from "node:assert/strict";
import { test } from "node:test";
import { formatStatus, shortModelName, stateOf } from "../src/status";

test("status pushed by the server (PROTOCOL.md)", () => {
  const view = formatStatus({
    state: "ready", version: "0.1.0", lastLatencyMs: 183.4,
    model: { name: "/models/IQuest-Coder-7B", device: "cuda:0", backend: "native", loaded: true },
    index: { state: "ready", files: 42 }, acceptance: { shown: 5, accepted: 2, partiallyAccepted: 1 },
  });
  assert.equal(view.text, "$(sparkle) loopls: IQuest-Coder-7B · cuda:0 · 183 ms");
  assert.match(view.tooltip, /index ready \(42 files\)/);
  assert.match(view.tooltip, /shown 5, accepted 2, partly 1/);
  assert.equal(view.severity, "normal");
});

test("an older server's status reply: state derived from model.loaded and stats", () => {
  assert.equal(stateOf({ model: { name: "tiny", loaded: false } }), "loading");
  assert.equal(stateOf({ model: { name: "tiny", loaded: true }, stats: { active_generations: 1 } }), "busy");
  assert.equal(stateOf({ model: { name: "tiny", loaded: true }, options: { completion: { enabled: false } } }), "disabled");
  const view = formatStatus({ model: { name: "tiny", loaded: true, untrained: true, device: "cpu" } }, 95);
  assert.equal(view.text, "$(sparkle) loopls: tiny · cpu · 95 ms");
  assert.equal(view.severity, "warning");
  assert.match(view.tooltip, /untrained model/);
});

test("errors, indexing progress and a language switched off are visible in the text", () => {
  const error = formatStatus({ state: "error", message: "model missing: /x", model: { name: "/x" } });
  assert.equal(error.severity, "error");
  assert.match(error.text, /error/);
  assert.match(error.tooltip, /model missing/);
  assert.equal(formatStatus({ state: "error", message: "loopls was not found on PATH" }).text, "$(error) loopls · error");
  const indexing = formatStatus({ state: "loading", model: { name: "tiny" }, index: { state: "indexing", done: 3, total: 10 } });
  assert.match(indexing.text, /indexing 3\/10 files/);
  assert.match(formatStatus({ state: "ready", model: { name: "tiny" } }, undefined, true).text, /off here/);
});

test("short model names keep hub ids, shorten paths", () => {
  assert.equal(shortModelName({ model: { name: "IQuestLab/IQuest-Coder-V1-7B" } }), "IQuestLab/IQuest-Coder-V1-7B");
  assert.equal(shortModelName({ model: { name: "/home/me/models/ckpt" } }), "ckpt");
});
