import assert from "node:assert/strict";
import { test } from "node:test";
import { declaredServerKeys, languageEnabled, serverSection, toggleLanguage } from "../src/settings";
import packageJson from "../package.json";

test("every declared server option is forwarded, nested, client-only keys left out", () => {
  const keys = declaredServerKeys(packageJson.contributes.configuration.properties);
  assert.ok(keys.includes("model.name") && keys.includes("smells.thresholds"));
  assert.ok(!keys.some((k) => k.startsWith("server.") || k.startsWith("client.")));
  const values: Record<string, unknown> = { "model.name": "/ckpt", "completion.maxTokens": 12, "smells.thresholds": { maxCyclomatic: 15 } };
  const section = serverSection(keys, (k) => values[k] ?? null);
  assert.deepEqual((section.model as Record<string, unknown>).name, "/ckpt");
  assert.deepEqual((section.completion as Record<string, unknown>).maxTokens, 12);
  assert.deepEqual((section.smells as Record<string, unknown>).thresholds, { maxCyclomatic: 15 });
  assert.equal(Object.keys(section).sort().join(","), "completion,model,smells");
});

test("undefined values (unknown keys) are left out rather than sent as null", () => {
  assert.deepEqual(serverSection(["model.name", "model.device"], (k) => (k === "model.name" ? "tiny" : undefined)), { model: { name: "tiny" } });
});

test("per-language switch", () => {
  assert.equal(languageEnabled("python", []), true);
  assert.equal(languageEnabled("python", ["python"]), false);
  assert.deepEqual(toggleLanguage("go", ["python"]), ["python", "go"]);
  assert.deepEqual(toggleLanguage("python", ["python", "go"]), ["go"]);
});
