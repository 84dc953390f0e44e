"""Drawing the commonest finished Markdown blocks straight to lines, with no widgets.

Paragraphs, lists whose items are one paragraph each, code blocks and tables are most of
a chat answer, and creating Textual's widgets for them (four per list item, one per table
cell) costs more than a fast stream leaves time for. ``StyleRig`` holds one small mounted
sample of each (hidden), so the styles come from the same CSS as the real widgets; ``BlockDrawer`` lays the text out
as Textual's ``Markdown`` does (the bullet in its column, the text wrapped beside it; a
code block's lines inside its label's padding; tables in answer_table.py) and renders it
with those styles. Any other block returns None and is drawn by its widgets.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.style import Style as RichStyle
from textual.content import Content
from textual.strip import Strip
from textual.visual import Visual
from textual.widget import Widget
from textual.widgets import Label
from textual.widgets import Markdown
from textual.widgets._markdown import (
    MarkdownBlock,
    MarkdownBullet,
    MarkdownBulletList,
    MarkdownFence,
    MarkdownList,
    MarkdownListItem,
    MarkdownOrderedList,
    MarkdownOrderedListItem,
    MarkdownParagraph,
    MarkdownTable,
    MarkdownTableCellContents,
    MarkdownTableContent,
)

from .answer_table import Cells, TableTokens, draw_table

Lines = list[Strip]


class StyleRig(Markdown):
    """Never shown: a paragraph, a bullet list, an ordered list and a table to take styles from."""

    DEFAULT_CSS = "StyleRig { display: none; }"

    def __init__(self) -> None:
        super().__init__("p\n\n- a\n\n1. b\n\n| h |\n| - |\n| c |\n\n```\nx\n```\n")

    def samples(self) -> tuple[MarkdownParagraph, MarkdownBulletList, MarkdownOrderedList] | None:
        """The samples, once mounted, with their table in ``table_samples``."""
        try:
            paragraph = self.query_children(MarkdownParagraph).first()
            bullets = self.query_children(MarkdownBulletList).first()
            ordered = self.query_children(MarkdownOrderedList).first()
            bullets.query_one(MarkdownBullet)
            bullets.query_one(MarkdownParagraph)
            self.table_samples()
            self.fence_samples()
        except Exception:  # noqa: BLE001 - not mounted yet (or taken apart): no shortcut
            return None
        return paragraph, bullets, ordered

    def table_samples(self) -> tuple[MarkdownTable, MarkdownTableContent, Widget, Widget]:
        table = self.query_children(MarkdownTable).first()
        grid = table.query_one(MarkdownTableContent)
        header = grid.query(MarkdownTableCellContents).filter(".header").first()
        cell = grid.query(MarkdownTableCellContents).filter(".cell").first()
        return table, grid, header, cell


    def fence_samples(self) -> tuple[MarkdownFence, Label]:
        fence = self.query_children(MarkdownFence).first()
        return fence, fence.query_one(Label)


def _text(widget: Widget, content: Content, width: int) -> Lines:
    """``content`` as ``widget`` renders it at ``width`` (a widget with no padding or border)."""
    style = widget.visual_style
    strips = Visual.to_strips(widget, content, width, None, style, apply_selection=False)
    pad = RichStyle(bgcolor=style.rich_style.bgcolor)  # what Textual fills the rest of a line with
    return [strip.extend_cell_length(width, pad) for strip in strips] or [Strip.blank(width, pad)]


class BlockDrawer:
    """Lines for one finished top-level block, or None when its widgets must draw it."""

    def __init__(self, rig: StyleRig, gap: Strip) -> None:
        self._samples = rig.samples()
        self._table = rig.table_samples() if self._samples is not None else None
        self._cells = Cells()
        self._fence = rig.fence_samples() if self._samples is not None else None
        self._gap = gap  # one line of the space between blocks, as the answer paints it
        self._marks: dict[tuple[str, int], Strip] = {}  # a bullet's line, by symbol and list type

    @property
    def ready(self) -> bool:
        return self._samples is not None

    def margins(self, block: MarkdownBlock | TableTokens) -> tuple[int, int]:
        assert self._samples is not None
        paragraph, bullets, ordered = self._samples
        sample = paragraph if isinstance(block, MarkdownParagraph) else \
            self._table[0] if isinstance(block, (MarkdownTable, TableTokens)) and self._table is not None else \
            self._fence[0] if isinstance(block, MarkdownFence) and self._fence is not None else \
            bullets if isinstance(block, MarkdownBulletList) else ordered
        margin = sample.styles.margin
        return margin.top, margin.bottom

    def draw(self, block: MarkdownBlock | TableTokens, width: int) -> Lines | None:
        if self._samples is None or width < 8:
            return None
        paragraph, bullets, ordered = self._samples
        if isinstance(block, TableTokens):
            if self._table is None:
                return None
            _table, grid, header, cell = self._table
            # Cells' text as MarkdownTH/TD.build_from_token makes it (the method reads only its token).
            headers, rows = block.headers_and_rows(paragraph._token_to_content)
            return draw_table(headers, rows, width, grid, header, cell, self._cells)
        if block.is_mounted:
            return None
        if type(block) is MarkdownParagraph:
            return _text(paragraph, block._content, width)
        if type(block) in (MarkdownBulletList, MarkdownOrderedList):
            return self._list(block, bullets if isinstance(block, MarkdownBulletList) else ordered, width)
        if type(block) is MarkdownFence and self._fence is not None:
            return self._code(block, width)
        if type(block) is MarkdownTable and self._table is not None:
            _table, grid, header, cell = self._table
            return draw_table(*block._get_headers_and_rows(), width, grid, header, cell, self._cells)
        return None

    def _list(self, block: MarkdownList, sample: MarkdownList, width: int) -> Lines | None:
        items = block._blocks
        if not items or not all(isinstance(i, MarkdownListItem) and len(i._blocks) == 1
                                and type(i._blocks[0]) is MarkdownParagraph for i in items):
            return None
        symbols = self._symbols(block, items)
        bullet = sample.query_one(MarkdownBullet)
        text = sample.query_one(MarkdownParagraph)
        lines: Lines = []
        for item, symbol in zip(items, symbols):
            size = cell_len(symbol)
            if size >= width:
                return None
            key = (symbol, id(sample))
            mark = self._marks.get(key)
            if mark is None:
                mark = self._marks[key] = _text(bullet, Content(symbol), size)[0]
            body = _text(text, item._blocks[0]._content, width - size)
            for y, line in enumerate(body):
                lines.append(Strip.join([mark if y == 0 else self._gap.crop(0, size), line]))
        return lines

    def _code(self, block: MarkdownFence, width: int) -> Lines | None:
        """A code block whose lines fit: the label's padding around the highlighted code (a
        longer line would scroll sideways, and is left to the widgets)."""
        assert self._fence is not None
        _fence, label = self._fence
        content = block._highlighted_code
        padding = label.styles.padding
        inner = width - padding.width
        plain = content.plain
        if not plain or not plain.replace("\n", "").isprintable() \
                or inner < 1 or max(cell_len(line) for line in plain.split("\n")) > inner:
            return None
        body = _text(label, content, inner)
        if len(body) != plain.count("\n") + 1:
            return None  # wrapped after all
        pad = RichStyle(bgcolor=label.visual_style.rich_style.bgcolor)
        blank = Strip.blank(width, pad)
        left, right = Strip.blank(padding.left, pad), Strip.blank(padding.right, pad)
        return [*[blank] * padding.top, *[Strip.join([left, line, right]) for line in body],
                *[blank] * padding.bottom]

    @staticmethod
    def _symbols(block: MarkdownList, items: list[MarkdownBlock]) -> list[str]:
        """The bullets as MarkdownBulletList / MarkdownOrderedList.compose make them."""
        if isinstance(block, MarkdownBulletList):
            return [item.bullet for item in items]  # type: ignore[attr-defined]
        start = 1
        if isinstance(items[0], MarkdownOrderedListItem):
            try:
                start = int(items[0].bullet)
            except ValueError:
                pass
        numbers = [f"{n}. " for n in range(start, start + len(items))]
        size = max(len(n) for n in numbers)
        return [n.rjust(size + 1) for n in numbers]
