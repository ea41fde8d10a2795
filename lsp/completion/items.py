"""Suggestions as LSP items: inline completion items and completion items.

Both replace the word being typed before the cursor (and any auto-closed characters the
suggestion closes after it), so the text they insert starts with what the user has typed:
clients keep showing an item while the user types through it, and a completion menu filters
it in. Ranges are in the position encoding negotiated with the client. Every item carries
the `loopls.acceptCompletion` command with its id, for the acceptance counters.
"""

from __future__ import annotations

import re

from lsprotocol import types

from ..positions import LineIndex
from .acceptance import ACCEPT_COMMAND, AcceptanceCounter
from .postprocess import Suggestion

_WORD_TAIL = re.compile(r"[A-Za-z0-9_$]*$")


def _word_before(index: LineIndex, offset: int) -> str:
    line_start = index.starts[index.line_of(offset)]
    return _WORD_TAIL.search(index.text[line_start:offset]).group(0)


def _command(item_id: str) -> types.Command:
    return types.Command(title="loopls: accepted", command=ACCEPT_COMMAND, arguments=[{"id": item_id}])


def inline_items(index: LineIndex, offset: int, encoding: str, suggestions: list[Suggestion],
                 acceptance: AcceptanceCounter) -> types.InlineCompletionList:
    word = _word_before(index, offset)
    items = []
    for s in suggestions:
        text = word + s.text
        items.append(types.InlineCompletionItem(
            insert_text=text,
            filter_text=text,
            range=index.range(offset - len(word), offset + s.replace, encoding),
            command=_command(acceptance.issue(text)),
        ))
    return types.InlineCompletionList(items=items)


def completion_items(index: LineIndex, offset: int, encoding: str, suggestions: list[Suggestion],
                     acceptance: AcceptanceCounter, untrained: bool) -> list[types.CompletionItem]:
    word = _word_before(index, offset)
    items = []
    for rank, s in enumerate(suggestions):
        text = word + s.text
        first = text.split("\n", 1)[0]
        items.append(types.CompletionItem(
            label=first.strip() or "⏎ " + text.strip().split("\n", 1)[0],
            kind=types.CompletionItemKind.Text,
            detail="loopls (untrained model: random text)" if untrained else "loopls",
            sort_text=f"{rank:02d}",
            filter_text=text,
            text_edit=types.TextEdit(range=index.range(offset - len(word), offset + s.replace, encoding),
                                     new_text=text),
            insert_text_format=types.InsertTextFormat.PlainText,
            command=_command(acceptance.issue(text)),
        ))
    return items
