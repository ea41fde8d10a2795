// The server's options are declared once, in package.json: every `loopls.*` property except
// the client-only groups is forwarded, nested, as the whole `loopls` section.

/** Top-level groups of `loopls.*` that configure this extension, not the server. */
export const CLIENT_ONLY = ["server", "client"];

export type Section = { [key: string]: unknown };

/** Dotted property names (`loopls.model.name`) as declared in a package.json. */
export function declaredServerKeys(properties: Record<string, unknown>): string[] {
  return Object.keys(properties)
    .filter((key) => key.startsWith("loopls."))
    .map((key) => key.slice("loopls.".length))
    .filter((key) => !CLIENT_ONLY.includes(key.split(".")[0]));
}

/** The nested `loopls` section for the server from dotted keys and a value getter. */
export function serverSection(keys: string[], get: (key: string) => unknown): Section {
  const section: Section = {};
  for (const key of keys) {
    const value = get(key);
    if (value === undefined) {
      continue;
    }
    const parts = key.split(".");
    let node = section;
    for (const part of parts.slice(0, -1)) {
      if (typeof node[part] !== "object" || node[part] === null) {
        node[part] = {};
      }
      node = node[part] as Section;
    }
    node[parts[parts.length - 1]] = value;
  }
  return section;
}

/** Whether inline completions are asked for in a document of `languageId`. */
export function languageEnabled(languageId: string, disabled: readonly string[]): boolean {
  return !disabled.includes(languageId);
}

/** The disabled-language list after toggling `languageId`. */
export function toggleLanguage(languageId: string, disabled: readonly string[]): string[] {
  return disabled.includes(languageId) ? disabled.filter((l) => l !== languageId) : [...disabled, languageId];
}
