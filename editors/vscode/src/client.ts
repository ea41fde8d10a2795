// The language client: process, document selector, settings forwarding and the inline
// completion middleware (per-language switch, latency, "shown" signal).
import * as vscode from "vscode";
import { LanguageClient, LanguageClientOptions, ResponseError, ServerOptions } from "vscode-languageclient/node";
import { declaredServerKeys, languageEnabled, Section, serverSection } from "./settings";

export const LANGUAGES = ["python", "javascript", "javascriptreact", "typescript", "typescriptreact", "go", "rust", "java", "c", "cpp"];
const ACCEPT_COMMAND = "loopls.acceptCompletion";

export interface ClientHooks {
  /** Called with the duration of every inline-completion request that returned items. */
  onLatency(ms: number): void;
}

/** The `loopls` section as the server parses it, from the settings package.json declares. */
export function currentSection(extension: vscode.Extension<unknown>): Section {
  const manifest = extension.packageJSON as { contributes?: { configuration?: { properties?: Record<string, unknown> } } };
  const properties = manifest.contributes?.configuration?.properties ?? {};
  const config = vscode.workspace.getConfiguration("loopls");
  return serverSection(declaredServerKeys(properties), (key) => config.get(key));
}

/** The id the server put in an item's accept command (PROTOCOL: arguments [{id}]). */
function itemId(item: vscode.InlineCompletionItem): string | undefined {
  const command = item.command;
  if (!command || command.command !== ACCEPT_COMMAND) {
    return undefined;
  }
  const arg = command.arguments?.[0] as { id?: unknown } | undefined;
  return typeof arg?.id === "string" ? arg.id : undefined;
}

export function createClient(
  extension: vscode.Extension<unknown>,
  server: { command: string; args: string[] },
  output: vscode.LogOutputChannel,
  hooks: ClientHooks,
): LanguageClient {
  const serverOptions: ServerOptions = { command: server.command, args: server.args };
  let client: LanguageClient | undefined = undefined;
  const clientOptions: LanguageClientOptions = {
    documentSelector: LANGUAGES.flatMap((language) => [{ scheme: "file", language }, { scheme: "untitled", language }]),
    initializationOptions: () => currentSection(extension),
    outputChannel: output,
    middleware: {
      workspace: {
        // The server pulls section "loopls": answer with the server's keys only.
        configuration: async (params, token, next) => {
          const result = await next(params, token);
          if (result instanceof ResponseError) {
            return result;
          }
          const values: unknown[] = result;
          return params.items.map((item, i) => (item.section === "loopls" ? currentSection(extension) : values[i]));
        },
      },
      provideInlineCompletionItems: async (document, position, context, token, next) => {
        const disabled = vscode.workspace.getConfiguration("loopls", document).get<string[]>("client.disabledLanguages", []);
        if (!languageEnabled(document.languageId, disabled)) {
          return undefined;
        }
        const started = Date.now();
        const result = await next(document, position, context, token);
        const items = Array.isArray(result) ? result : result?.items ?? [];
        if (items.length > 0 && !token.isCancellationRequested) {
          hooks.onLatency(Date.now() - started);
          // VS Code shows the first item; the stable API has no "shown" callback.
          const id = itemId(items[0]);
          if (id !== undefined) {
            void client?.sendNotification("loopls/didShowCompletion", { id });
          }
        }
        return result;
      },
    },
  };
  client = new LanguageClient("loopls", "loopls", serverOptions, clientOptions);
  return client;
}
