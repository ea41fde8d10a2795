"""What an editor is shown: the model's raw text, cut and cleaned for the place it goes.

`Site` describes the place (the cursor's line, what follows, whether a multi-line suggestion
fits there: decided from the syntax tree); `finish` runs the filters in order. Each filter is
a plain function of text and site, tested on its own (tests/lsp/test_postprocess.py):

1. `strip_control`: control characters (`\\b`, `\\x15`, ...) and undecodable bytes go.
2. `single_line` for single-line sites: the first line, or, where the model ends the
   cursor's line at once, the next line (a line break and that line).
3. `normalise_indentation`: no indentation typed twice; the document's tabs or spaces.
4. `stop_on_repetition`: repeated lines, repeated blocks of lines, a repeated phrase in a line
   (with spaces too: `x = x = x =`); `drop_line_above`: a suggestion that writes the line
   above the cursor's once more.
5. `cut_at_scope_end`: nothing past the end of the enclosing block (indentation, braces).
6. `drop_suffix_duplicates`: stop where the suggestion starts repeating the code that follows.
7. `max_lines`.
8. `balance_brackets`: a closing bracket or quote the suggestion writes and the text after
   the cursor already has (auto-closed) is replaced, not doubled: `area(|)` + `radius)` is
   `area(radius)`; a closer that does not fit is cut.
9. Whitespace-only suggestions are dropped.
10. A suggestion that breaks the syntax of the cursor's line, which parsed before, is
   dropped (`line_check.py`: `def f() -> float:` + `:`); a multi-line one whose first line
   opens what a later line closes (`x = [` ... `]`) is kept. At the end of the line, a
   multi-line one keeps what follows its first line break if that fits (`:` + a body is
   the body); at a single-line site, one that the check rejects for a bracket it leaves
   open is cut before it (`sound_start`).
11. At a single-line site, a line that ends in code with an operator, a comma, a dot, an
   opening bracket or a keyword that wants an operand (`dangles`) is cut back to its longest
   start that ends with an operand and, where the line parsed, keeps it parsing
   (`items.` + `append(` is `append`; `self.k1, se` + `lf.k1, self.k2 = ` is
   `lf.k1, self.k2`), or dropped: the model meant to go on over the next lines.

A generation still running may be shown in part (`answered_part`): its complete lines,
through the same filters, never a line the model is still writing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .line_check import LineCheck

# Characters after the cursor that do not make the position "mid-line": editors insert them.
AUTO_CLOSED = set(")]}\"'`;,: \t")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]")
_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {v: k for k, v in _OPENERS.items()}
_QUOTES = set("\"'`")
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|\S")
# a short unit four times in a row, or a longer one three times
_LOOPED_CHARS = re.compile(r"(\S{2,3}?)\1{3,}|(\S{4,24}?)\2{2,}")
_OPERAND_END = re.compile(r"[\w)\]}\"'`]$")
# what wants an operand after it at a line's end: an operator, a comma, a dot, a keyword
_WANTS_OPERAND = ("and", "or", "not", "in", "is", "if", "elif", "else", "for", "while", "with", "as", "from", "import",
                  "lambda", "await", "assert", "del", "def", "class", "async")
_DANGLING_END = re.compile(r"(?:[=+\-*/%&|^<>!~@,.(\[{]|(?<![\w.])(?:" + "|".join(_WANTS_OPERAND) + r"))\s*$")
_NOT_DANGLING = re.compile(r"(?:\.\.\.|\bimport\s+\*)\s*$")  # `...` (a stub), `from m import *`
_TRIVIAL_LINE = re.compile(r"^[\s)\]};,]*$|^(?:end|pass|break|continue|fi|done|esac|else:?|\*/)$")
AUTOMATIC_BLOCK_TOKENS = 32  # see token_limit
_CUTS_TRIED = 4  # shorter starts of a dangling line that `sound_start` asks the line check about
BLOCK_OPENER = re.compile(r"(?::|\{|\(|\[|=>|->|\bdo|\bthen|\bbegin)\s*(?:#.*|//.*)?$")
_DEFINITION = re.compile(
    r"\s*(?:export\s+|pub(?:\(\w+\))?\s+|public\s+|private\s+|static\s+|async\s+)*"
    r"(?:def|class|function|fn|func|interface|struct|enum|impl|trait)\b")


@dataclass(frozen=True)
class Site:
    prefix_line: str  # the cursor's line up to the cursor
    suffix_line: str  # the cursor's line after the cursor (no line break)
    following: str  # the lines after the cursor's line (a window)
    multiline: bool  # whether a suggestion of several lines fits here
    indent_unit: str  # the document's indentation step: "\t" or some spaces
    braces: bool  # a language whose blocks are braces (not indentation)
    block_closed: bool  # the block holding the cursor already has its closing brace
    line_check: LineCheck | None = None  # the cursor's line parsed: whether a suggestion keeps it so
    literal: bool = False  # the cursor is inside a string or a comment
    enclosed: bool = False  # inside a bracket opened on an earlier line (items written one a line)
    above: str = ""  # the nearest line before the cursor's with text on it (a window)


@dataclass(frozen=True)
class Suggestion:
    text: str
    replace: int  # characters after the cursor the suggestion replaces (auto-closed brackets)


def finish(raw: str, site: Site, max_lines: int) -> Suggestion | None:
    """The suggestion to show for the model's text `raw` at `site`, or None."""
    lines = _filtered_lines(raw, site, max_lines)
    while lines and not lines[-1].strip():
        lines.pop()
    text, replace = balance_brackets("\n".join(lines), site)
    if not text.strip():
        return None
    if site.line_check is not None and not site.line_check.accepts(text, replace):
        # `float:` + `:`: the line parsed and would not any more. At the line's end, what the
        # model wrote after its own line break may still fit: `:` + a body is the body.
        rest = text[text.find("\n"):] if "\n" in text and not site.suffix_line else ""
        if rest.strip() and site.line_check.accepts(rest):
            return Suggestion(rest, 0)
        return sound_start(text, site, rejected=True)
    if not site.multiline and _stops_short(text, site):
        return sound_start(text, site)  # never a line that stops short: `x =`, `f(a,`, `items.append(`
    return Suggestion(text, replace)


def sound_start(text: str, site: Site, rejected: bool = False) -> Suggestion | None:
    """What to show of the single-line `text` that stops short (the model meant to go on over
    the next lines), or that the site's line check rejects for it: ending in code with an
    operator, a comma, a dot, an opening bracket or a keyword that wants an operand
    (`self.k1, se` + `lf.k1, self.k2 = `, `items.` + `append(`, `if a and`), or leaving a
    bracket open that the check rejects: its longest start that ends with an operand,
    dangles no more and that the line check, where there is one, accepts (`lf.k1, self.k2`,
    `append`; with a check, before the first bracket left open); else None (a few starts are
    asked of the check at most). A `text` that ends the cursor's line and writes the next one
    (`next_line`) is cut in that line. Not at a multi-line site: there a one-line suggestion
    the check rejects misreads the line (`float:` + `ance:`), and a shorter one would too."""
    if site.multiline or ("\n" in text and not next_line(text, site)):
        return None
    body = text.lstrip(" \t\n")
    lead = text[:len(text) - len(body)] if "\n" in text else ""
    body = body if lead else text
    before = "" if lead else site.prefix_line
    enclosed = _next_line_enclosed(site) if lead else site.enclosed
    left_open = _first_left_open(body)
    colon = rejected and body.rstrip().endswith(":")  # `retur` + `n text:`: the check's, not a block's
    if "\n" in body or (left_open is None and not colon and not dangles(before, body, site, enclosed)):
        return None  # nothing left open or dangling: a start of it is no better
    # the check rejects a line that leaves a bracket open: no start past it is tried
    end = left_open if site.line_check is not None and left_open is not None else len(body)
    tried = 0
    tokens = list(_TOKEN.finditer(body[:end]))
    for k in range(len(tokens) - 1, -1, -1):
        # cut only before what wants an operand (an operator, a bracket, a keyword), not
        # between two names: `async wi` + `rn context = f(` is not `rn`
        after = tokens[k + 1].group(0) if k + 1 < len(tokens) else body[end:].lstrip()[:1]
        if (after[:1].isalnum() or after[:1] == "_") and after not in _WANTS_OPERAND:
            continue
        token = tokens[k]
        head, replace = (body[:token.end()], 0) if lead else balance_brackets(body[:token.end()], site)
        if not _OPERAND_END.search(head) or dangles(before, head, site, enclosed) or head == body:
            continue
        # it must add something to the line, not only type over the closers after the cursor
        # (`f(a|):` + `):` is not `)`)
        if len(head) <= replace:
            return None
        if site.line_check is None or site.line_check.accepts(lead + head, replace):
            return Suggestion(lead + head, replace)
        tried += 1
        if tried == _CUTS_TRIED:
            break
    return None


def _stops_short(text: str, site: Site) -> bool:
    """Whether the last line of the single-line site's `text` dangles (`dangles`)."""
    if "\n" in text:
        return dangles("", text[text.rfind("\n") + 1:], site, _next_line_enclosed(site))
    return dangles(site.prefix_line, text, site, site.enclosed)


def _next_line_enclosed(site: Site) -> bool:
    """Whether the line after the cursor's is still in the brackets the cursor's line is in
    (`enclosed`): the cursor's line closes none that it did not open."""
    if not site.enclosed:
        return False
    depth, quote = 0, None
    for i, ch in enumerate(site.prefix_line):
        if quote:
            if ch == quote and site.prefix_line[i - 1] != "\\":
                quote = None
        elif ch in _QUOTES:
            quote = ch
        elif ch in _OPENERS:
            depth += 1
        elif ch in _CLOSERS:
            depth -= 1
            if depth < 0:
                return False
    return True


def dangles(before: str, text: str, site: Site, enclosed: bool) -> bool:
    """Whether the line `before` + `text` ends in code (not in a string or a comment) with an
    operator, a comma, a dot, an opening bracket or a keyword that wants an operand after it
    (`x =`, `f(a,`, `append(`, `if a and`; not `...` nor `import *`; nor, when the line is
    `enclosed` in brackets opened on an earlier line, a comma that ends an item of a list or
    call written one item a line; nor, in a language of braces, a block's `{` or a `>` that
    ends a type or a tag: `if (x) {`, `Vec<u8>`, `<div>`)."""
    line = (before + text).rstrip()
    if site.literal or not _DANGLING_END.search(line) or _NOT_DANGLING.search(line):
        return False
    if (enclosed and line.endswith(",")) or (site.braces and line.endswith(("{", ">"))):
        return False
    scan = _CodeScan(line, "//" if site.braces else "#")
    for _ in scan:
        pass
    return scan.quote is None and not scan.comment  # not in a string, nor in a comment


def _first_left_open(text: str) -> int | None:
    """Where the outermost bracket that `text` opens and leaves open is, if any (brackets in
    the strings it opens and closes are skipped)."""
    stack: list[int] = []
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = None
        elif ch in _QUOTES:
            quote = ch
        elif ch in _OPENERS:
            stack.append(i)
        elif ch in _CLOSERS and stack and text[stack[-1]] == _CLOSERS[ch]:
            stack.pop()
    return stack[0] if stack else None


def answered_part(raw: str, site: Site, max_lines: int) -> Suggestion | None:
    """What may be shown of the text `raw` that a generation is still writing at the
    multi-line `site`: its complete lines, finished as a whole suggestion would be (never the
    line being written, which the next token may still change), or None."""
    if not site.multiline or "\n" not in raw:
        return None
    return finish(raw[:raw.rfind("\n")], site, max_lines)


def _filtered_lines(raw: str, site: Site, max_lines: int) -> list[str]:
    text = strip_control(raw)
    if not site.multiline:
        text = single_line(text, site)
    lines = normalise_indentation(text, site).split("\n")
    lines = stop_on_repetition(lines)
    lines = drop_line_above(lines, site)
    lines = cut_at_scope_end(lines, site)
    lines = drop_suffix_duplicates(lines, site)
    return lines[:max_lines]


def token_limit(site: Site, invoked: bool, max_tokens: int) -> int:
    """Tokens to generate: `max_tokens`, but at most `AUTOMATIC_BLOCK_TOKENS` for an automatic
    request at a multi-line site. Its suggestion must arrive while the user pauses (a
    pause is often under a second, and each token costs ~25 ms on a CPU): a block's first
    few lines, which the user types through or accepts, and the next pause continues it
    (16 tokens were tried too: the suggestions were too short to type through, and fewer
    pauses showed one: docs/benchmarks.md, issue 10).
    A single-line site stops at the line break anyway; an explicit request waits for all."""
    if invoked or not site.multiline:
        return max_tokens
    return min(max_tokens, AUTOMATIC_BLOCK_TOKENS)


def complete_lines(raw: str) -> str:
    """A multi-line text the token limit cut: without its unfinished last line, unless no
    line before it has any text (the first line, unfinished, is all there is)."""
    head, _, _ = raw.rpartition("\n")
    return head if head.strip() else raw


def is_final(raw: str, site: Site, max_lines: int) -> bool:
    """Whether more generated text can no longer change the suggestion (so the engine request
    can stop early): the site takes one line and it is complete, or the filters cut it short
    already (`cut_short`), or a filter cut before the last complete line, or the line being
    written already leaves the block."""
    if not site.multiline:
        return "\n" in (raw[1:] if next_line(raw, site) else raw) or cut_short(raw, site)
    if "\n" not in raw:
        return False
    complete = strip_control(raw[:raw.rfind("\n")]).split("\n")
    if len(complete) >= max_lines or len(_filtered_lines("\n".join(complete), site, max_lines)) < len(complete):
        return True
    partial = normalise_indentation(raw[raw.rfind("\n"):], site)[1:]
    return bool(partial.strip()) and len(cut_at_scope_end([*complete, partial], site)) <= len(complete)


def cut_short(raw: str, site: Site) -> bool:
    """Whether the filters of a single-line site cut the line being written before its last
    whole token (a phrase it repeats, a closer that closes nothing): what is shown of it
    can no longer grow, whatever the model writes next. The last token is left out, as the
    next one may extend it (`sel` + `f`)."""
    text = normalise_indentation(single_line(strip_control(raw), site), site)
    tokens = list(_TOKEN.finditer(text))
    if not tokens:
        return False
    stable = text[:tokens[-1].start()].rstrip()
    kept, _ = balance_brackets("\n".join(stop_on_repetition(stable.split("\n"))), site)
    return len(kept.rstrip()) < len(stable)


# -- the filters -----------------------------------------------------------------------------

def strip_control(text: str) -> str:
    """No control characters but tab and line feed; CRLF and CR become LF."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def first_line(text: str) -> str:
    return text.split("\n", 1)[0]


def next_line(text: str, site: Site) -> bool:
    """Whether `text` at a single-line site goes on to the next line: the cursor ends a line
    with code on it, and the model ends that line at once (it holds a whole statement)."""
    return text.startswith("\n") and not site.suffix_line and bool(site.prefix_line.strip())


def single_line(text: str, site: Site) -> str:
    """What a single-line site shows of `text`: its first line; or, when it ends the
    cursor's line at once (`next_line`), a line break and the line after it."""
    if next_line(text, site):
        return "\n" + first_line(text[1:])
    return first_line(text)


def _indent(line: str) -> str:
    return line[:len(line) - len(line.lstrip(" \t"))]


def _width(indent: str) -> int:
    return len(indent.expandtabs(4))


def normalise_indentation(text: str, site: Site) -> str:
    lines = text.split("\n")
    if site.prefix_line and not site.prefix_line.strip() and lines[0][:1] in (" ", "\t"):
        lines[0] = lines[0].lstrip(" \t")  # the cursor is already indented: do not indent twice
    if site.indent_unit == "\t":
        lines = [_retab(line, "    ", "\t") for line in lines]
    elif site.indent_unit:
        lines = [_retab(line, "\t", site.indent_unit) for line in lines]
    return "\n".join(lines)


def _retab(line: str, old: str, new: str) -> str:
    indent = _indent(line)
    return indent.replace(old, new) + line[len(indent):] if old in indent else line


def stop_on_repetition(lines: list[str]) -> list[str]:
    """Cut at the first line that repeats the line (or block of up to four lines) before it,
    and inside a line at a phrase repeated four times over."""
    for i, line in enumerate(lines):
        cut = _repeated_phrase(line)
        if cut is not None:
            return lines[:i] + ([line[:cut].rstrip()] if line[:cut].strip() else [])
        stripped = line.strip()
        if i >= 1 and stripped and not _TRIVIAL_LINE.match(stripped) and stripped == lines[i - 1].strip():
            return lines[:i]
        for k in (2, 3, 4):
            block = [x.strip() for x in lines[i - 2 * k + 1:i + 1]] if i + 1 >= 2 * k else None
            if block and any(block[:k]) and block[:k] == block[k:]:
                return lines[:i - k + 1]
    return lines


def _repeated_phrase(line: str) -> int | None:
    """Where the second copy of a looped phrase starts, or None. A phrase of 1 to 8 tokens,
    one a name, looped when it comes three times in a row if it is flat (two tokens or more,
    brackets it opens closed, no `,`, `.` or `;` between its parts: `x = x = x =`,
    `and not and not and not`, `foo(a, b) foo(a, b) foo(a, b)`), else four times (a list's
    items repeat legitimately: `None, None, None`, `self.a, self.a, self.a`); or a run of
    characters with a letter in it (`VeVeVeVe`, `abcdabcdabcd`). `0, 0, 0, 0` and `=====` are data, not a loop."""
    looped = _LOOPED_CHARS.search(line)
    if looped is not None:
        unit = looped.group(1) or looped.group(2)
        if len({c for c in unit if c.isalpha()}) >= 2:  # not hex runs, `\\d\\d\\d`, `%02d%02d`
            return looped.start() + len(unit)
    tokens = [(m.group(0), m.start()) for m in _TOKEN.finditer(line)]
    words = [t for t, _ in tokens]
    for n in range(1, 9):
        for start in range(0, len(words) - 3 * n + 1):
            unit = words[start:start + n]
            flat = n >= 2 and _flat(unit)
            if not any(_names(w, flat) for w in unit):
                continue  # `_, _, _, _` and `v   v   v` are not loops
            copies = 3 if flat else 4
            if start + copies * n <= len(words) and \
                    all(words[start + k * n:start + (k + 1) * n] == unit for k in range(1, copies)):
                return tokens[start + n][1]
    return None


def drop_line_above(lines: list[str], site: Site) -> list[str]:
    """Nothing that writes the line before it once more: a suggestion whose first line
    (the cursor's line's start with it) is the line above the cursor's (`import` + ` os`
    under `import os`), or whose next line (`next_line`) is the cursor's own line."""
    if not lines:
        return lines
    first = (site.prefix_line + lines[0]).strip()
    if first and first == site.above.strip() and not _TRIVIAL_LINE.match(first):
        return []
    if len(lines) > 1 and not lines[0].strip() and not site.suffix_line:
        own = site.prefix_line.strip()
        if own and lines[1].strip() == own and not _TRIVIAL_LINE.match(own):
            return lines[:1]
    return lines


def _names(word: str, flat: bool) -> bool:
    """Whether `word` is a name that makes a phrase a possible loop: one of two characters or
    more (`v v v v`, `v, v, v, v` are patterns), any but `_` in a flat phrase (`x = x = x =`)."""
    return (word[0].isalpha() or word[0] == "_") and (len(word) > 1 or (flat and word != "_"))


def _flat(unit: list[str]) -> bool:
    """Whether the tokens `unit` close every bracket they open, close none they do not, and
    hold no `,`, `.` or `;` outside their brackets."""
    depth = 0
    for word in unit:
        if word in _OPENERS:
            depth += 1
        elif word in _CLOSERS:
            depth -= 1
            if depth < 0:
                return False
        elif depth == 0 and word in (",", ".", ";"):
            return False
    return depth == 0


def cut_at_scope_end(lines: list[str], site: Site) -> list[str]:
    """Nothing past the end of the block the cursor is in: a brace that closes it (kept only
    when the document does not close it already), or a line indented less than the cursor's
    block (a `def h()` after the body of `area`). A suggestion that starts a definition ends
    with it: one function or class at a time."""
    cursor_indent = _indent(site.prefix_line) if site.prefix_line.strip() else site.prefix_line
    base = _width(cursor_indent)
    defines = bool(_DEFINITION.match(site.prefix_line + lines[0])) if lines else False
    depth, entered = 0, False
    for i, line in enumerate(lines):
        if site.braces:
            depth, closed_at = _brace_depth(line, depth)
            if closed_at is not None:
                if site.block_closed:
                    head = line[:closed_at]
                    return lines[:i] + ([head] if head.strip() else [])
                return lines[:i + 1]
            entered = entered or depth > 0
            if defines and entered and depth == 0:
                return lines[:i + 1]
            continue
        if i == 0 or not line.strip():
            continue
        width = _width(_indent(line))
        if width < base or (defines and width <= base):
            return lines[:i]
    return lines


class _CodeScan:
    """The characters of a line that are code, as (index, character): not in a string (a
    quote to the same quote, backslash escapes), up to a `comment` marker. After the
    iteration, `quote` is the string still open at the line's end (or None) and `comment`
    whether one began."""

    def __init__(self, line: str, comment: str) -> None:
        self.line, self.marker = line, comment
        self.quote: str | None = None
        self.comment = False

    def __iter__(self):
        line, i = self.line, 0
        while i < len(line):
            ch = line[i]
            if self.quote:
                if ch == "\\":
                    i += 1
                elif ch == self.quote:
                    self.quote = None
            elif ch in _QUOTES:
                self.quote = ch
            elif line.startswith(self.marker, i):
                self.comment = True
                return
            else:
                yield i, ch
            i += 1


def _brace_depth(line: str, depth: int) -> tuple[int, int | None]:
    """Brace depth after `line` (strings and `//` comments skipped), and where it first went
    below zero."""
    for i, ch in _CodeScan(line, "//"):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                return depth, i
    return depth, None


def drop_suffix_duplicates(lines: list[str], site: Site) -> list[str]:
    """Stop where the suggestion starts repeating the code after the cursor."""
    after = next((line.strip() for line in site.following.split("\n") if line.strip()), None)
    if not after:
        return lines
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() == after:
            return lines[:i]
    return lines


def balance_brackets(text: str, site: Site) -> tuple[str, int]:
    """(text, characters after the cursor to replace). Closers in `text` that close brackets
    or quotes opened before the cursor replace the same closers already after it; a closer
    that matches nothing open, or one the text after the cursor contradicts, ends the text."""
    if "\n" in text or not text:
        return text, 0
    stack = open_stack(site.prefix_line)
    outer = len(stack)
    closed: list[str] = []
    for i, ch in enumerate(text):
        top = stack[-1] if stack else None
        if top in _QUOTES:
            if ch == top and (i == 0 or text[i - 1] != "\\"):
                stack.pop()
                if len(stack) < outer:
                    outer = len(stack)
                    closed.append(ch)
            continue
        if ch in _OPENERS or ch in _QUOTES:
            stack.append(ch)
        elif ch in _CLOSERS:
            if top != _CLOSERS[ch]:
                return text[:i], 0  # closes nothing that is open: the model lost track
            stack.pop()
            if len(stack) < outer:
                outer = len(stack)
                closed.append(ch)
        if closed and site.suffix_line.strip() and len(closed) > _auto_closed_prefix(site.suffix_line, closed):
            return _cut_before_closer(text, i), 0
    return text, _auto_closed_prefix(site.suffix_line, closed) if closed else 0


def _auto_closed_prefix(suffix: str, closed: list[str]) -> int:
    """How many of `closed` the text after the cursor starts with, in order."""
    n = 0
    while n < len(closed) and n < len(suffix) and suffix[n] == closed[n]:
        n += 1
    return n


def _cut_before_closer(text: str, i: int) -> str:
    return text[:i].rstrip()


def open_stack(prefix: str) -> list[str]:
    """Brackets and quotes open at the end of `prefix` (the line before the cursor)."""
    stack: list[str] = []
    for i, ch in enumerate(prefix):
        top = stack[-1] if stack else None
        if top in _QUOTES:
            if ch == top and (i == 0 or prefix[i - 1] != "\\"):
                stack.pop()
        elif ch in _QUOTES:
            stack.append(ch)
        elif ch in _OPENERS:
            stack.append(ch)
        elif ch in _CLOSERS and top == _CLOSERS[ch]:
            stack.pop()
        elif ch == "#" and not stack:
            break
    return stack
