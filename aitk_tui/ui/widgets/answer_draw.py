"""Drawing the commonest finished Markdown blocks straight to lines, with no widgets.

Paragraphs, lists whose items are one paragraph each, code blocks and tables are most of
a chat answer, and creating Textual's widgets for them (four per list item, one per table
cell) costs more than a fast stream leaves time for. ``StyleRig`` holds one small mounted
sample of each (hidden), so the styles come from the same CSS as the real widgets;
``BlockDrawer`` takes a block as its markdown-it tokens (answer_tokens.py), lays its text
out as Textual's ``Markdown`` does (the bullet in its column, the text wrapped beside it;
a code block's lines inside its label's padding; tables in answer_table.py) and renders it
with those styles. Any other block returns None and is drawn by its widgets.
"""
from __future__ import annotations

from rich.cells import cell_len
from rich.style import Style as RichStyle
from textual.content import Content
from textual.strip import Strip
from textual.visual import RenderOptions, Visual
from textual.widget import Widget
from textual.widgets import Label, Markdown
from textual.widgets._markdown import (
    MarkdownBlock,
    MarkdownBullet,
    MarkdownBulletList,
    MarkdownFence,
    MarkdownList,
    MarkdownOrderedList,
    MarkdownParagraph,
    MarkdownTable,
    MarkdownTableCellContents,
    MarkdownTableContent,
)

from .answer_table import Cells, TableTokens, draw_table
from .answer_tokens import BlockTokens

Lines = list[Strip]


class StyleRig(Markdown):
    """Never shown: a paragraph, a bullet list, an ordered list and a table to take styles from."""

    DEFAULT_CSS = "StyleRig { display: none; }"

    def __init__(self) -> None:
        # The fence names its language: without one, highlighting guesses it, and the first
        # guess imports every Pygments lexer (~250 ms, measured as the first answer's stall).
        super().__init__("p\n\n- a\n\n1. b\n\n| h |\n| - |\n| c |\n\n```text\nx\n```\n")

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


class _Painter:
    """Content as one sample widget renders it (a widget with no padding or border).

    ``Visual.to_strips`` looks the widget's styles up again on every call (its link style
    walks the widget's ancestors for their backgrounds): measured, that was a third of
    drawing a paragraph. A drawer lives for one width and theme, so it looks them up once.
    """

    def __init__(self, widget: Widget) -> None:
        self.widget = widget
        self.style = widget.visual_style
        self.options = RenderOptions(widget._get_style, widget.styles, None, None)
        # As to_strips styles links (its check for a selection being dragged aside: the
        # frozen lines are drawn as the screen shows them when none is).
        self.link = widget.link_style if widget.auto_links and not widget.is_container else None
        self.aligned = widget.styles.content_align != ("left", "top")
        self.pad = RichStyle(bgcolor=self.style.rich_style.bgcolor)  # what Textual fills the rest of a line with

    def lines(self, content: Content, width: int) -> Lines:
        if self.aligned:  # not so in the shipped CSS: the general path
            strips = Visual.to_strips(self.widget, content, width, None, self.style, apply_selection=False)
        else:
            strips = content.render_strips(width, None, self.style, self.options)
            if self.link is not None:
                strips = [strip._apply_link_style(self.link) for strip in strips]
        pad = self.pad
        return [strip.extend_cell_length(width, pad) for strip in strips] or [Strip.blank(width, pad)]


class BlockDrawer:
    """Lines for one finished top-level block, or None when its widgets must draw it."""

    def __init__(self, rig: StyleRig) -> None:
        self._samples = rig.samples()
        self._table = rig.table_samples() if self._samples is not None else None
        self._cells = Cells()
        self._fence = rig.fence_samples() if self._samples is not None else None
        self._marks: dict[tuple[str, int], Strip] = {}  # a bullet's line, by symbol and list type
        self._painters: dict[int, _Painter] = {}

    def _text(self, widget: Widget, content: Content, width: int) -> Lines:
        painter = self._painters.get(id(widget))
        if painter is None:
            painter = self._painters[id(widget)] = _Painter(widget)
        return painter.lines(content, width)

    @property
    def ready(self) -> bool:
        return self._samples is not None

    def margins(self, block: BlockTokens) -> tuple[int, int]:
        sample = self._sample(block)
        assert sample is not None
        margin = sample.styles.margin
        return margin.top, margin.bottom

    def _sample(self, block: BlockTokens) -> Widget | None:
        """The hidden widget styled as ``block``'s widget would be."""
        if self._samples is None:
            return None
        paragraph, bullets, ordered = self._samples
        return {"paragraph_open": paragraph, "bullet_list_open": bullets, "ordered_list_open": ordered,
                "fence": self._fence and self._fence[0], "code_block": self._fence and self._fence[0],
                "table_open": self._table and self._table[0]}.get(block.kind)

    def draw(self, block: MarkdownBlock | BlockTokens, width: int) -> Lines | None:
        """Lines for a block given as tokens (a widget, or a kind not drawn here: None)."""
        if self._samples is None or width < 8 or not isinstance(block, BlockTokens):
            return None
        paragraph, bullets, ordered = self._samples
        to_content = paragraph._token_to_content  # as build_from_token makes a block's text from its token
        if isinstance(block, TableTokens):
            if self._table is None:
                return None
            _table, grid, header, cell = self._table
            headers, rows = block.headers_and_rows(to_content)
            return draw_table(headers, rows, width, grid, header, cell, self._cells)
        inline = block.paragraph()
        if inline is not None:
            return self._text(paragraph, to_content(inline), width)
        items = block.list_items()
        if items is not None:
            infos, inlines = items
            bulleted = block.kind == "bullet_list_open"
            symbols = self._symbols(bulleted, infos)
            return self._list([to_content(t) for t in inlines], symbols, bullets if bulleted else ordered, width)
        code = block.code()
        if code is not None and self._fence is not None:
            fence = self._fence[0]
            app = fence.app
            # As MarkdownFence.__init__ highlights its code.
            highlighted = type(fence).highlight(code[0], code[1], ansi=app.native_ansi_color,
                                                dark=app.current_theme.dark)
            return self._code(highlighted, width)
        return None

    def _list(self, contents: list[Content], symbols: list[str], sample: MarkdownList, width: int) -> Lines | None:
        bullet = sample.query_one(MarkdownBullet)
        text = sample.query_one(MarkdownParagraph)
        lines: Lines = []
        for content, symbol in zip(contents, symbols):
            size = cell_len(symbol)
            if size >= width:
                return None
            key = (symbol, id(sample))
            mark = self._marks.get(key)
            if mark is None:
                mark = self._marks[key] = self._text(bullet, Content(symbol), size)[0]
            body = self._text(text, content, width - size)
            # Below the symbol, the bullet widget (as tall as its item) paints its own blank.
            under = Strip.blank(size, bullet.rich_style) if len(body) > 1 else mark
            for y, line in enumerate(body):
                lines.append(Strip.join([mark if y == 0 else under, line]))
        return lines

    def _code(self, content: Content, width: int) -> Lines | None:
        """A code block whose lines fit: the label's padding around the highlighted code (a
        longer line would scroll sideways, and is left to the widgets)."""
        assert self._fence is not None
        _fence, label = self._fence
        padding = label.styles.padding
        inner = width - padding.width
        plain = content.plain
        if not plain or not plain.replace("\n", "").isprintable() \
                or inner < 1 or max(cell_len(line) for line in plain.split("\n")) > inner:
            return None
        body = self._text(label, content, inner)
        if len(body) != plain.count("\n") + 1:
            return None  # wrapped after all
        pad = RichStyle(bgcolor=label.visual_style.rich_style.bgcolor)
        blank = Strip.blank(width, pad)
        left, right = Strip.blank(padding.left, pad), Strip.blank(padding.right, pad)
        return [*[blank] * padding.top, *[Strip.join([left, line, right]) for line in body],
                *[blank] * padding.bottom]

    @staticmethod
    def _symbols(bulleted: bool, infos: list[str]) -> list[str]:
        """The bullets of a top-level list as ``Markdown._parse_markdown`` and the lists'
        ``compose`` make them from its items' ``info`` (an ordered item's number)."""
        if bulleted:
            return [info or Markdown.BULLETS[0] for info in infos]
        start = 1
        if infos[0]:
            try:
                start = int(infos[0])
            except ValueError:
                pass
        numbers = [f"{n}. " for n in range(start, start + len(infos))]
        size = max(len(n) for n in numbers)
        return [n.rjust(size + 1) for n in numbers]
