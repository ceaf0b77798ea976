"""User-facing compile errors: `path:line:col: error: message`, the line, a caret."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    line: int
    column: int
    end_line: int
    end_column: int


class CompileError(Exception):
    """An error in the user's kernel or in how it is compiled for a machine."""

    def __init__(self, message: str, span: Span | None = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.path = "<kernel>"
        self.source = ""
        self.attached = False

    def attach(self, path: str, source: str) -> "CompileError":
        """Name the file the span refers to (the innermost file wins: an error inside
        an imported kernel points into that kernel's file)."""
        if not self.attached:
            self.path, self.source, self.attached = path, source, True
        return self

    def format(self) -> str:
        if self.span is None:
            return f"{self.path}: error: {self.message}"
        head = f"{self.path}:{self.span.line}:{self.span.column}: error: {self.message}"
        lines = self.source.splitlines()
        if not 1 <= self.span.line <= len(lines):
            return head
        text = lines[self.span.line - 1]
        width = 1
        if self.span.end_line == self.span.line:
            width = max(1, self.span.end_column - self.span.column)
        caret = " " * (self.span.column - 1) + "^" + "~" * (width - 1)
        return f"{head}\n    {text}\n    {caret}"

    def __str__(self) -> str:
        return self.format()
