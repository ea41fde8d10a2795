// The status bar item: fed by the server's `loopls/status` notifications, or, from a server
// that does not push them, by asking while the model loads and after each completion.
import * as vscode from "vscode";
import { formatStatus, stateOf, Status } from "./status";

const POLL_MS = 2000;
const POLL_LIMIT_MS = 10 * 60 * 1000;

export class StatusBar implements vscode.Disposable {
  readonly item = vscode.window.createStatusBarItem("loopls.status", vscode.StatusBarAlignment.Right, 100);
  private status: Status = {};
  private latency: number | undefined;
  private pushed = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly ask: () => Promise<Status | undefined>) {
    this.item.name = "loopls";
    this.item.command = "loopls.menu";
    this.item.text = "$(loading~spin) loopls";
    this.item.show();
  }

  /** A status the server pushed: from now on, no polling. */
  push(status: Status): void {
    this.pushed = true;
    this.stopPolling();
    this.update(status);
  }

  update(status: Status): void {
    this.status = status;
    this.render();
  }

  failed(message: string): void {
    this.stopPolling();
    this.update({ ...this.status, state: "error", message });
  }

  latencyMs(ms: number): void {
    this.latency = ms;
    if (!this.pushed) {
      void this.refresh();
    }
    this.render();
  }

  render(): void {
    const editor = vscode.window.activeTextEditor;
    const disabled = vscode.workspace.getConfiguration("loopls").get<string[]>("client.disabledLanguages", []);
    const view = formatStatus(this.status, this.latency, editor ? disabled.includes(editor.document.languageId) : false);
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.backgroundColor = view.severity === "normal" ? undefined
      : new vscode.ThemeColor(view.severity === "error" ? "statusBarItem.errorBackground" : "statusBarItem.warningBackground");
  }

  /** Ask the server until the model is loaded (servers that push their status stop this). */
  startPolling(): void {
    this.stopPolling();
    const until = Date.now() + POLL_LIMIT_MS;
    const tick = async () => {
      await this.refresh();
      const state = stateOf(this.status);
      if (!this.pushed && Date.now() < until && (state === "loading" || state === "busy")) {
        this.timer = setTimeout(() => void tick(), POLL_MS);
      }
    };
    void tick();
  }

  private async refresh(): Promise<void> {
    try {
      const status = await this.ask();
      if (status && !this.pushed) {
        this.update(status);
      }
    } catch {
      // the server is restarting or gone; its error is shown elsewhere
    }
  }

  stopPolling(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  dispose(): void {
    this.stopPolling();
    this.item.dispose();
  }
}
