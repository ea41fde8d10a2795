// loopls for VS Code: starts the language server, forwards the `loopls` settings, shows the
// server's status, and offers the commands. Inline completions, diagnostics and code actions
// come through vscode-languageclient's standard features.
import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";
import { LanguageClient, State } from "vscode-languageclient/node";
import { createClient, currentSection } from "./client";
import { Explained, renderContext } from "./contextView";
import { resolveServerCommand } from "./serverCommand";
import { toggleLanguage } from "./settings";
import { formatStatus, Status } from "./status";
import { StatusBar } from "./statusBar";

class Loopls implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private readonly output = vscode.window.createOutputChannel("loopls", { log: true });
  readonly statusBar = new StatusBar(() => this.request<Status>("loopls/status", {}));
  private readonly disposables: vscode.Disposable[] = [];

  constructor(private readonly extension: vscode.Extension<unknown>) {
    this.disposables.push(
      this.output,
      this.statusBar,
      vscode.workspace.onDidChangeConfiguration((event) => void this.configurationChanged(event)),
      vscode.window.onDidChangeActiveTextEditor(() => this.statusBar.render()),
    );
  }

  async start(): Promise<void> {
    const command = vscode.workspace.getConfiguration("loopls").get<string[]>("server.command", ["loopls", "lsp"]);
    const resolved = resolveServerCommand(command, process.env.PATH);
    if (!resolved.ok) {
      await this.startFailed(resolved.message);
      return;
    }
    this.output.info(`starting ${resolved.command} ${resolved.args.join(" ")}`);
    const client = createClient(this.extension, resolved, this.output, { onLatency: (ms) => this.statusBar.latencyMs(ms) });
    this.client = client;
    client.onNotification("loopls/status", (status: Status) => this.statusBar.push(status));
    client.onDidChangeState((event) => {
      if (event.newState === State.Stopped && this.client === client) {
        this.statusBar.failed("the loopls server stopped; see the logs (loopls: Show Logs)");
      }
    });
    try {
      await client.start();
    } catch (error) {
      this.client = undefined;
      await this.startFailed(`the server ${resolved.command} did not start: ${String(error)}`);
      return;
    }
    this.statusBar.startPolling();
  }

  private async startFailed(reason: string): Promise<void> {
    this.output.info(`cannot start the server: ${reason}`);
    this.statusBar.failed(reason);
    const choice = await vscode.window.showErrorMessage(`loopls: cannot start the language server: ${reason}`, "Open Settings", "Show Logs");
    if (choice === "Open Settings") {
      await vscode.commands.executeCommand("workbench.action.openSettings", "loopls.server.command");
    } else if (choice === "Show Logs") {
      this.output.show();
    }
  }

  async restart(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client) {
      await client.stop().catch(() => undefined);
    }
    await this.start();
  }

  private async configurationChanged(event: vscode.ConfigurationChangeEvent): Promise<void> {
    if (event.affectsConfiguration("loopls.server")) {
      await this.restart();
    } else if (event.affectsConfiguration("loopls.client")) {
      this.statusBar.render();
    } else if (event.affectsConfiguration("loopls") && this.client?.isRunning()) {
      await this.client.sendNotification("workspace/didChangeConfiguration", { settings: { loopls: currentSection(this.extension) } });
      this.statusBar.startPolling();
    }
  }

  async request<T>(method: string, params: unknown): Promise<T | undefined> {
    if (!this.client?.isRunning()) {
      return undefined;
    }
    return this.client.sendRequest<T>(method, params);
  }

  async showContext(): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    if (!editor || !this.client?.isRunning()) {
      void vscode.window.showInformationMessage("loopls: open a file the server handles first.");
      return;
    }
    const position = editor.selection.active;
    const explained = await this.request<Explained>("loopls/explainContext", {
      textDocument: { uri: editor.document.uri.toString() },
      position: { line: position.line, character: position.character },
    });
    const folder = vscode.workspace.getWorkspaceFolder(editor.document.uri)?.uri.fsPath;
    const readLines = (file: string, start: number, end: number): string | undefined => {
      try {
        const full = path.resolve(folder ?? "", file);
        return fs.readFileSync(full, "utf8").split("\n").slice(start - 1, end).join("\n");
      } catch {
        return undefined;
      }
    };
    const where = { file: vscode.workspace.asRelativePath(editor.document.uri), line: position.line, character: position.character };
    const content = renderContext(explained ?? {}, where, readLines);
    const doc = await vscode.workspace.openTextDocument({ language: "markdown", content });
    await vscode.window.showTextDocument(doc, { preview: true });
  }

  async showStatus(): Promise<void> {
    const status = await this.request<Status>("loopls/status", {}).catch((error: unknown): Status => ({ state: "error", message: String(error) }));
    if (status) {
      this.statusBar.update(status);
    }
    const view = formatStatus(status ?? { state: "error", message: "the server is not running" });
    const content = `${view.tooltip.split("\n").slice(0, -1).join("\n")}\n\n${JSON.stringify(status ?? {}, null, 2)}\n`;
    const doc = await vscode.workspace.openTextDocument({ language: "markdown", content });
    await vscode.window.showTextDocument(doc, { preview: true });
  }

  showLogs(): void {
    (this.client?.outputChannel ?? this.output).show();
  }

  async toggleCompletions(): Promise<void> {
    const config = vscode.workspace.getConfiguration("loopls");
    const enabled = !config.get<boolean>("completion.enabled", true);
    await config.update("completion.enabled", enabled, vscode.ConfigurationTarget.Global);
    void vscode.window.showInformationMessage(`loopls: inline completions ${enabled ? "on" : "off"}.`);
  }

  async toggleLanguage(): Promise<void> {
    const languageId = vscode.window.activeTextEditor?.document.languageId;
    if (!languageId) {
      return;
    }
    const config = vscode.workspace.getConfiguration("loopls");
    const disabled = toggleLanguage(languageId, config.get<string[]>("client.disabledLanguages", []));
    await config.update("client.disabledLanguages", disabled, vscode.ConfigurationTarget.Global);
    void vscode.window.showInformationMessage(`loopls: inline completions ${disabled.includes(languageId) ? "off" : "on"} for ${languageId}.`);
  }

  async menu(): Promise<void> {
    const picks: { label: string; command: string }[] = [
      { label: "$(info) Show Status", command: "loopls.showStatus" },
      { label: "$(list-tree) Show Context Packed for the Cursor", command: "loopls.showContext" },
      { label: "$(circle-slash) Toggle Inline Completions", command: "loopls.toggleCompletions" },
      { label: "$(symbol-misc) Toggle Inline Completions for This Language", command: "loopls.toggleCompletionsForLanguage" },
      { label: "$(debug-restart) Restart Server", command: "loopls.restartServer" },
      { label: "$(output) Show Logs", command: "loopls.showLogs" },
      { label: "$(gear) Open Settings", command: "loopls.openSettings" },
    ];
    const pick = await vscode.window.showQuickPick(picks, { placeHolder: "loopls" });
    if (pick) {
      await vscode.commands.executeCommand(pick.command);
    }
  }

  async dispose(): Promise<void> {
    for (const disposable of this.disposables) {
      disposable.dispose();
    }
    await this.client?.stop().catch(() => undefined);
  }
}

let loopls: Loopls | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const app = new Loopls(context.extension);
  loopls = app;
  const commands: [string, () => unknown][] = [
    ["loopls.restartServer", () => app.restart()],
    ["loopls.toggleCompletions", () => app.toggleCompletions()],
    ["loopls.toggleCompletionsForLanguage", () => app.toggleLanguage()],
    ["loopls.showContext", () => app.showContext()],
    ["loopls.showStatus", () => app.showStatus()],
    ["loopls.showLogs", () => app.showLogs()],
    ["loopls.openSettings", () => vscode.commands.executeCommand<void>("workbench.action.openSettings", "@ext:loopls.loopls")],
    ["loopls.menu", () => app.menu()],
  ];
  for (const [id, run] of commands) {
    context.subscriptions.push(vscode.commands.registerCommand(id, run));
  }
  await app.start();
}

export async function deactivate(): Promise<void> {
  await loopls?.dispose();
  loopls = undefined;
}
