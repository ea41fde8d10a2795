import assert from "node:assert/strict";
import { test } from "node:test";
import { renderContext } from "../src/contextView";

test("snippets become a table and quoted code", () => {
  const md = renderContext(
    { prompt_tokens: 900, budget: 2048, header_tokens: 12,
      snippets: [{ path: "inventory.py", start_line: 3, end_line: 4, source: "definition", tokens: 40, score: 1.5 }] },
    { file: "pricing.py", line: 6, character: 4 },
    (file, start, end) => (file === "inventory.py" && start === 3 && end === 4 ? "class Inventory:\n    pass" : undefined),
  );
  assert.match(md, /^# Context packed for pricing\.py:7:5/);
  assert.match(md, /900 prompt tokens of a 2048-token budget, 1 cross-file snippet /);
  assert.match(md, /\| 1 \| inventory\.py \| 3–4 \| definition \| 40 \| 1\.5 \|/);
  assert.match(md, /```\nclass Inventory:\n {4}pass\n```/);
});

test("no snippets says why", () => {
  assert.match(renderContext({ prompt_tokens: 10, budget: 64, snippets: [] }, { file: "a.py", line: 0, character: 0 }), /No cross-file snippets/);
});
