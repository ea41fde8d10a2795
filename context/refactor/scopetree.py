"""What the scope models of every language share: a tree of scopes rooted at the module and
the list of every use of a name, bindings and reads."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar


class _Scope(Protocol):
    children: list


class _Use(Protocol):
    bind: bool


S = TypeVar("S", bound=_Scope)
U = TypeVar("U", bound=_Use)


class ScopeTree(Generic[S, U]):
    def __init__(self, module: S) -> None:
        self.module = module
        self.uses: list[U] = []

    @property
    def reads(self) -> list[U]:
        return [u for u in self.uses if not u.bind]

    def all_scopes(self) -> list[S]:
        """Every scope, the module first, each before its children."""
        out, stack = [], [self.module]
        while stack:
            scope = stack.pop()
            out.append(scope)
            stack.extend(scope.children)
        return out
