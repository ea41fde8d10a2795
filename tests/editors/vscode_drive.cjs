// Drives a real VS Code (code-server in Debian's chromium, through playwright-core) the way a
// user would, and prints one JSON object of what it saw. The pytest side asserts on it.
// usage: node vscode_drive.cjs '<json: {playwrightDir, chromium, url, shots, file}>'
"use strict";
const path = require("node:path");

const cfg = JSON.parse(process.argv[2]);
const { chromium } = require(path.join(cfg.playwrightDir, "node_modules", "playwright-core"));
const seen = { steps: [], errors: [] };
let shot = 0;

function log(step, data) {
  seen.steps.push({ step, ...data });
  process.stderr.write(`[vscode] ${step} ${JSON.stringify(data)}\n`);
}

async function screenshot(page, name) {
  shot += 1;
  const file = path.join(cfg.shots, `${String(shot).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

// the editor area (the chat input is a Monaco editor too)
const EDITOR = ".part.editor .monaco-editor";
const norm = (s) => (s || "").replace(/\u00a0/g, " ");

// Only the part of the suggestion drawn inside the cursor's line.
async function ghostInline(page) {
  return norm(await page.evaluate(() =>
    [...document.querySelectorAll(".part.editor .monaco-editor .view-lines .ghost-text-decoration")].map((p) => p.textContent).join("")));
}

async function ghostText(page) {
  return page.evaluate(() => {
    const parts = [...document.querySelectorAll(".part.editor .monaco-editor .ghost-text-decoration, .part.editor .monaco-editor .ghost-text")];
    return parts.map((p) => p.textContent).join("");
  });
}

async function waitGhost(page, timeout) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    const text = norm(await ghostText(page));
    if (text.trim()) {
      return text;
    }
    await page.waitForTimeout(200);
  }
  return "";
}

// The text of the editor line holding the cursor (Monaco renders only visible lines).
async function cursorLine(page) {
  return norm(await page.evaluate(() => {
    const current = document.querySelector(".part.editor .monaco-editor .view-overlays .current-line");
    if (!current) {
      return "";
    }
    const top = current.parentElement.style.top;
    const line = [...document.querySelectorAll(".part.editor .monaco-editor .view-lines .view-line")].find((l) => l.style.top === top);
    if (!line) {
      return "";
    }
    // the document's text only: ghost text is rendered inside the line
    const copy = line.cloneNode(true);
    copy.querySelectorAll("[class*='ghost-text']").forEach((n) => n.remove());
    return copy.textContent;
  }));
}

async function command(page, name) {
  await page.keyboard.press("F1");
  await page.waitForSelector(".quick-input-widget input", { state: "visible" });
  await page.keyboard.type(name, { delay: 10 });
  await page.waitForTimeout(500);
  await page.keyboard.press("Enter");
}

async function gotoLine(page, line) {
  await page.keyboard.press("Control+G");
  await page.waitForSelector(".quick-input-widget input", { state: "visible" });
  await page.keyboard.type(String(line));
  await page.keyboard.press("Enter");
  await page.waitForTimeout(300);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: cfg.chromium,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on("pageerror", (e) => seen.errors.push(String(e)));
  try {
    await page.goto(cfg.url, { waitUntil: "domcontentloaded" });
    await page.waitForSelector(".monaco-workbench", { timeout: 120000 });
    log("workbench", { shot: await screenshot(page, "workbench") });

    // open the file through Quick Open, as a user would
    await page.keyboard.press("Control+P");
    await page.waitForSelector(".quick-input-widget input", { state: "visible" });
    await page.keyboard.type(cfg.file, { delay: 20 });
    await page.locator(".quick-input-list .monaco-list-row", { hasText: cfg.file }).first().waitFor({ timeout: 30000 });
    await page.keyboard.press("Enter");
    await page.locator(".tabs-container .tab", { hasText: cfg.file }).first().waitFor({ timeout: 60000 });
    await page.waitForSelector(`${EDITOR} .view-lines`, { timeout: 60000 });
    if (cfg.scenario === "missing-server") {
      await missingServer(page);
    } else {
      await completions(page);
    }
  } catch (error) {
    seen.errors.push(String(error && error.stack || error));
    await screenshot(page, "failure").catch(() => undefined);
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(seen));
}

// The server command points nowhere: the user is told why and can open the setting.
async function missingServer(page) {
  const toast = page.locator(".notification-toast", { hasText: "loopls" }).first();
  await toast.waitFor({ timeout: 60000 });
  const message = norm(await toast.textContent());
  const status = norm(await page.locator(".statusbar-item", { hasText: "loopls" }).first().textContent());
  log("message", { message, status, shot: await screenshot(page, "cannot-start") });
  await toast.locator(".monaco-button", { hasText: "Open Settings" }).first().click();
  await page.waitForSelector(".settings-editor", { timeout: 30000 });
  await page.waitForTimeout(1500);
  const shown = await page.locator(".settings-editor .setting-item-label").allTextContents();
  log("settings", { labels: shown.map(norm), shot: await screenshot(page, "open-settings") });
}

async function completions(page) {
  {

    // the status bar item shows the model once the server has loaded it
    const status = page.locator(".statusbar-item", { hasText: "loopls" }).first();
    let statusText = "";
    const until = Date.now() + 180000;
    while (Date.now() < until) {
      statusText = norm(await status.textContent({ timeout: 5000 }).catch(() => ""));
      if (/loopls: tiny/.test(statusText) && /ms|cpu/.test(statusText)) {
        break;
      }
      await page.waitForTimeout(500);
    }
    log("status", { text: statusText, shot: await screenshot(page, "status-bar") });

    // type in a function: ghost text appears
    await page.locator(`${EDITOR} .view-lines`).first().click();
    await gotoLine(page, 10);
    await page.keyboard.press("End");
    await page.keyboard.press("Enter");
    await page.keyboard.type("tot", { delay: 80 });
    const ghost = await waitGhost(page, 90000);
    const inline = await ghostInline(page);
    const before = await cursorLine(page);
    log("ghost", { ghost, inline, line: before, shot: await screenshot(page, "ghost-text") });

    // Tab accepts it into the document (saved, so that the test reads the file)
    await page.keyboard.press("Tab");
    await page.waitForTimeout(700);
    const after = await cursorLine(page);
    await page.keyboard.press("Control+S");
    await page.waitForTimeout(1000);
    log("accepted", { line: after, shot: await screenshot(page, "accepted") });

    // the explicit trigger (Alt+\) brings a suggestion back without typing
    await page.keyboard.press("End");
    await page.keyboard.press("Enter");
    await page.keyboard.type("rate = ", { delay: 80 });
    const automatic = await waitGhost(page, 90000);
    await page.keyboard.press("Escape");
    await page.waitForTimeout(500);
    const dismissed = norm(await ghostText(page));
    await screenshot(page, "dismissed");
    await command(page, "Trigger Inline Suggestion");
    const triggered = await waitGhost(page, 90000);
    log("explicit", { automatic, dismissed, triggered, shot: await screenshot(page, "explicit-trigger") });
    await page.keyboard.press("Escape");

    // diagnostics in the Problems panel
    await page.keyboard.press("Control+Shift+M");
    let problems = [];
    const pUntil = Date.now() + 90000;
    while (Date.now() < pUntil) {
      problems = await page.locator(".markers-panel .monaco-list-row").allTextContents().catch(() => []);
      if (problems.some((p) => /loopls/.test(p))) {
        break;
      }
      await page.waitForTimeout(500);
    }
    log("problems", { rows: problems.map(norm), shot: await screenshot(page, "problems") });

    // a quick fix for the smell on `def quote`
    await page.locator(`${EDITOR} .view-lines`).first().click();
    await gotoLine(page, 6);
    await page.keyboard.press("Home");
    await page.keyboard.press("Control+Period");
    let actions = [];
    const aUntil = Date.now() + 60000;
    while (Date.now() < aUntil) {
      actions = await page.locator(".action-widget .monaco-list-row").allTextContents().catch(() => []);
      if (actions.length) {
        break;
      }
      await page.waitForTimeout(300);
    }
    log("quickfix", { actions: actions.map(norm), shot: await screenshot(page, "quick-fix") });
    await page.keyboard.press("Escape");

    // the status bar item after a completion shows the latency too
    log("status-after", { text: norm(await status.textContent().catch(() => "")), shot: await screenshot(page, "status-after") });

    await command(page, "loopls: Show Context Packed for the Cursor");
    await page.waitForTimeout(3000);
    const tabs = await page.locator(".tabs-container .tab").allTextContents();
    log("context", { tabs: tabs.map(norm), shot: await screenshot(page, "context") });
  }
}

main().catch((error) => {
  process.stdout.write(JSON.stringify({ ...seen, errors: [...seen.errors, String(error)] }));
  process.exitCode = 1;
});
