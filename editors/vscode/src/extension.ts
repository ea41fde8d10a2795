// Starts the loopls language server and hands it the `loopls.*` settings.
// Inline completions, completions, code actions and diagnostics all come through the
// standard LSP client; this file only wires the process and the settings.
import * as vscode from "vscode";
import { LanguageClient, LanguageClientOptions, ServerOptions } from "vscode-languageclient/node";

let client: LanguageClient | undefined;

const LANGUAGES = ["python", "javascript", "javascriptreact", "typescript", "typescriptreact", "go", "rust", "java", "c", "cpp"];

/** The `loopls` section without the client-only `server` key, as the server parses it. */
function serverSettings(): Record<string, unknown> {
  const config = vscode.workspace.getConfiguration("loopls");
  return {
    model: config.get("model"),
    completion: config.get("completion"),
  };
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const [command, ...args] = vscode.workspace.getConfiguration("loopls").get<string[]>("server.command", ["loopls", "lsp"]);
  const serverOptions: ServerOptions = { command, args };
  const clientOptions: LanguageClientOptions = {
    documentSelector: LANGUAGES.map((language) => ({ scheme: "file", language })),
    initializationOptions: serverSettings(),
    outputChannelName: "loopls",
  };
  client = new LanguageClient("loopls", "loopls", serverOptions, clientOptions);
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (event.affectsConfiguration("loopls.server")) {
        await client?.restart();
      } else if (event.affectsConfiguration("loopls")) {
        await client?.sendNotification("workspace/didChangeConfiguration", { settings: { loopls: serverSettings() } });
      }
    }),
  );
  await client.start();
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}
