// The server's status (the `loopls/status` request and notification) as a status bar item.
// Servers that predate the notification answer the request without `state`; it is derived.

export type State = "loading" | "ready" | "busy" | "error" | "disabled";

export interface Status {
  state?: State;
  message?: string;
  model?: { name?: string; path?: string; modelType?: string; device?: string; backend?: string; untrained?: boolean; loaded?: boolean };
  lastLatencyMs?: number;
  index?: { state?: "none" | "indexing" | "ready"; done?: number; total?: number; files?: number };
  acceptance?: { shown?: number; accepted?: number; partiallyAccepted?: number };
  version?: string;
  options?: { completion?: { enabled?: boolean } };
  stats?: { active_generations?: number };
}

export interface StatusView {
  text: string;
  tooltip: string;
  /** "error" and "warning" colour the item. */
  severity: "normal" | "warning" | "error";
}

const ICONS: Record<State, string> = {
  loading: "$(loading~spin)",
  ready: "$(sparkle)",
  busy: "$(sync~spin)",
  error: "$(error)",
  disabled: "$(circle-slash)",
};

export function stateOf(status: Status): State {
  if (status.state) {
    return status.state;
  }
  if (status.options?.completion?.enabled === false) {
    return "disabled";
  }
  if (!status.model?.loaded) {
    return "loading";
  }
  return (status.stats?.active_generations ?? 0) > 0 ? "busy" : "ready";
}

/** A short model name: the last path component of a checkpoint folder, else the name. */
export function shortModelName(status: Status): string {
  const name = status.model?.name ?? "?";
  const parts = name.split(/[\\/]/).filter(Boolean);
  // a hub id is owner/name (maybe @revision); anything else with a separator is a folder
  const hubId = parts.length === 2 && !/^[./~\\]/.test(name);
  return hubId || parts.length < 2 ? name : parts[parts.length - 1];
}

function indexLine(index: Status["index"]): string | undefined {
  if (!index || !index.state || index.state === "none") {
    return undefined;
  }
  if (index.state === "indexing") {
    return index.total ? `indexing ${index.done ?? 0}/${index.total} files` : "indexing";
  }
  return index.files !== undefined ? `index ready (${index.files} files)` : "index ready";
}

export function formatStatus(status: Status, clientLatencyMs?: number, languageDisabled = false): StatusView {
  const state = stateOf(status);
  const model = shortModelName(status);
  const device = status.model?.device;
  const latency = status.lastLatencyMs ?? clientLatencyMs;
  const indexing = status.index?.state === "indexing" ? indexLine(status.index) : undefined;
  const parts = [status.model?.name ? `${ICONS[state]} loopls: ${model}` : `${ICONS[state]} loopls`];
  if (device) {
    parts.push(device);
  }
  if (state === "ready" && latency !== undefined) {
    parts.push(`${Math.round(latency)} ms`);
  }
  if (state === "loading" || state === "error" || state === "disabled") {
    parts.push(state);
  }
  if (indexing) {
    parts.push(indexing);
  }
  if (languageDisabled && state !== "disabled") {
    parts.push("off here");
  }
  const lines = [
    `loopls ${status.version ?? ""}`.trim() + ` — ${state}`,
    status.message,
    `model: ${status.model?.name ?? "?"}` + (status.model?.modelType ? ` (${status.model.modelType})` : "") +
      (device ? ` on ${device}` : "") + (status.model?.backend ? `, ${status.model.backend} backend` : ""),
    status.model?.untrained ? "untrained model: completions are random text; set loopls.model.name to a real checkpoint" : undefined,
    latency !== undefined ? `last completion: ${Math.round(latency)} ms` : undefined,
    indexLine(status.index),
    status.acceptance ? `suggestions shown ${status.acceptance.shown ?? 0}, accepted ${status.acceptance.accepted ?? 0}, partly ${status.acceptance.partiallyAccepted ?? 0}` : undefined,
    languageDisabled ? "inline completions are off for this language (loopls.client.disabledLanguages)" : undefined,
    "click for loopls commands",
  ];
  const severity = state === "error" ? "error" : status.model?.untrained || state === "disabled" ? "warning" : "normal";
  return { text: parts.join(" · "), tooltip: lines.filter((l): l is string => Boolean(l)).join("\n"), severity };
}
