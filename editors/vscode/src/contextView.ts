// `loopls/explainContext` (what `loopls context --json` prints) as a Markdown document.

export interface Snippet {
  path: string;
  start_line: number;
  end_line: number;
  source: string;
  tokens: number;
  score: number;
}

export interface Explained {
  prompt_tokens?: number;
  budget?: number;
  header_tokens?: number;
  snippets?: Snippet[];
}

/** `readLines(path, start, end)` gives the snippet's text (1-based, inclusive), or undefined. */
export function renderContext(
  explained: Explained,
  where: { file: string; line: number; character: number },
  readLines: (path: string, start: number, end: number) => string | undefined = () => undefined,
): string {
  const snippets = explained.snippets ?? [];
  const out = [
    `# Context packed for ${where.file}:${where.line + 1}:${where.character + 1}`,
    "",
    `${explained.prompt_tokens ?? "?"} prompt tokens of a ${explained.budget ?? "?"}-token budget, ` +
      `${snippets.length} cross-file snippet${snippets.length === 1 ? "" : "s"} ` +
      `(${explained.header_tokens ?? 0} tokens in their labels). Most stable first, as the model reads them.`,
    "",
  ];
  if (snippets.length === 0) {
    out.push("No cross-file snippets: the prompt is the file around the cursor (the index may still be building).");
    return out.join("\n") + "\n";
  }
  out.push("| # | file | lines | why | tokens | score |", "|---|---|---|---|---|---|");
  snippets.forEach((s, i) => {
    out.push(`| ${i + 1} | ${s.path} | ${s.start_line}–${s.end_line} | ${s.source} | ${s.tokens} | ${s.score} |`);
  });
  snippets.forEach((s, i) => {
    const text = readLines(s.path, s.start_line, s.end_line);
    if (text !== undefined) {
      const fence = text.includes("```") ? "~~~~" : "```";
      out.push("", `## ${i + 1}. ${s.path}:${s.start_line}–${s.end_line} (${s.source})`, "", fence, text, fence);
    }
  });
  return out.join("\n") + "\n";
}
