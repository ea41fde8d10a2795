// Finding the server executable before starting it, so that a missing `loopls` gets a message
// that says what to do instead of the language client's "couldn't create connection".
import * as fs from "node:fs";
import * as path from "node:path";

export type Resolved = { ok: true; command: string; args: string[] } | { ok: false; message: string };

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** `command` as an executable path: absolute paths are checked, bare names looked up on PATH. */
export function resolveServerCommand(
  command: readonly string[],
  envPath: string | undefined,
  executable: (file: string) => boolean = isExecutable,
  pathExt: readonly string[] = [""],
): Resolved {
  const [program, ...args] = command;
  if (!program) {
    return { ok: false, message: "loopls.server.command is empty: set it to the loopls executable, e.g. [\"loopls\", \"lsp\"]." };
  }
  if (program.includes("/") || program.includes("\\")) {
    return executable(program)
      ? { ok: true, command: program, args }
      : { ok: false, message: `the loopls server command ${program} does not exist or is not executable.` };
  }
  for (const dir of (envPath ?? "").split(path.delimiter).filter(Boolean)) {
    for (const ext of pathExt) {
      const candidate = path.join(dir, program + ext);
      if (executable(candidate)) {
        return { ok: true, command: candidate, args };
      }
    }
  }
  return {
    ok: false,
    message: `\`${program}\` was not found on PATH. Install loopls (pip install -e . in its repository) ` +
      "and set loopls.server.command to its full path, e.g. [\"/path/to/.venv/bin/loopls\", \"lsp\"].",
  };
}
