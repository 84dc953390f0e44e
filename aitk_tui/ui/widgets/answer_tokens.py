"""A finished top-level Markdown block kept as its markdown-it tokens until it must be a widget.

Measured under benchmarks/tui_bench.py (issue 10): making Textual's widgets for every block
of each append (``Markdown._parse_markdown``: a widget per paragraph, four per list item)
was most of an append's time, and the ~1,800 widgets a 4,000-token answer made and dropped
were most of the garbage the full collections walked. The blocks ``BlockDrawer`` draws
(paragraphs, lists of one-paragraph items, code blocks, tables) are drawn from their tokens;
only a block that must be mounted (the one still being written, or one the drawer declines)
is made into its widget, once (``block``).
"""

from __future__ import annotations

from collections.abc import Callable

from markdown_it.token import Token
from textual.widgets._markdown import MarkdownBlock

# The first token of each top-level block kind drawn from tokens.
KINDS = ("paragraph_open", "bullet_list_open", "ordered_list_open", "fence", "code_block", "table_open")


class BlockTokens:
    """One top-level block's tokens; ``kind`` is the type of its first token."""

    def __init__(self, tokens: list[Token], make: Callable[[list[Token]], MarkdownBlock]) -> None:
        self.tokens = tokens
        self.kind = tokens[0].type
        self._make = make
        first = tokens[0].map or (0, 0)
        self.source_range: tuple[int, int] = (first[0], first[1])
        self._block: MarkdownBlock | None = None

    def block(self) -> MarkdownBlock:
        """The block's widget, as ``Markdown._parse_markdown`` makes it (made once)."""
        if self._block is None:
            self._block = self._make(self.tokens)
            self._block.source_range = self.source_range
        return self._block

    def paragraph(self) -> Token | None:
        """A paragraph's inline token."""
        tokens = self.tokens
        if self.kind == "paragraph_open" and len(tokens) == 3 and tokens[1].type == "inline":
            return tokens[1]
        return None

    def list_items(self) -> tuple[list[str], list[Token]] | None:
        """A list whose items are one paragraph each: the items' ``info`` (an ordered item's
        number, else empty) and their inline tokens; None for any other list."""
        if self.kind not in ("bullet_list_open", "ordered_list_open"):
            return None
        body = self.tokens[1:-1]
        if not body or len(body) % 5:
            return None
        infos: list[str] = []
        inlines: list[Token] = []
        for i in range(0, len(body), 5):
            item = body[i:i + 5]
            if [t.type for t in item] != ["list_item_open", "paragraph_open", "inline", "paragraph_close",
                                          "list_item_close"]:
                return None
            infos.append(item[0].info)
            inlines.append(item[2])
        return infos, inlines

    def code(self) -> tuple[str, str] | None:
        """A code block's code and language, as ``Markdown._parse_markdown`` gives them to
        ``MarkdownFence``."""
        if self.kind not in ("fence", "code_block") or len(self.tokens) != 1:
            return None
        token = self.tokens[0]
        return token.content.rstrip(), token.info

