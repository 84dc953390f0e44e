"""Drawing a finished Markdown table straight to lines, as Textual's ``MarkdownTable`` draws it.

A table's widgets (one per cell) cost more to make, lay out and draw off screen than a
fast stream leaves time for. Most tables in an answer have one line per cell, and those
are drawn here with Textual's own parts: the grid's column sizing (``_resolve.resolve``,
as ``GridLayout`` calls it for ``MarkdownTableContent``), its keylines (``Canvas``), and
the cells' styles from a hidden sample table (``StyleRig``). A table whose cells would
wrap, or whose rows are ragged, returns None and is drawn by its widgets. The cell and
keyline lines are built from one sample each per column layout (``Cells``): measured,
those were most of the cost of a table.
"""

from __future__ import annotations

from collections.abc import Callable

from markdown_it.token import Token
from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style as RichStyle
from textual._resolve import resolve
from textual.canvas import Canvas, Rectangle
from textual.content import Content
from textual.css.scalar import Scalar
from textual.geometry import Offset, Size
from textual.strip import Strip
from textual.visual import Visual
from textual.widget import Widget
from textual.widgets._markdown import MarkdownTableContent

from .answer_tokens import BlockTokens

Lines = list[Strip]


def _cell(widget: Widget, content: Content, width: int) -> Strip:
    """One line of a cell: its padding either side of its text, as the cell renders it."""
    style = widget.visual_style
    pad_left, pad_right = widget.styles.padding.left, widget.styles.padding.right
    inner = width - pad_left - pad_right
    strips = Visual.to_strips(widget, content, inner, None, style, apply_selection=False)
    pad = RichStyle(bgcolor=style.rich_style.bgcolor)
    line = strips[0].extend_cell_length(inner, pad) if strips else Strip.blank(inner, pad)
    return Strip.join([Strip.blank(pad_left, pad), line, Strip.blank(pad_right, pad)])


class Cells:
    """Cell lines, the plain ones (no inline styles: most cells) built from the styles of one
    sample line per cell kind and width, since laying out each cell's text costs more than
    drawing the rest of the table."""

    def __init__(self) -> None:
        self._looks: dict[tuple[int, int], tuple[Segment, RichStyle, RichStyle, Segment]] = {}
        self._frames: dict[tuple[tuple[tuple[int, int], ...], int], Lines] = {}

    def frame(self, grid: MarkdownTableContent, spans: list[tuple[int, int]], width: int, rows: int) -> Lines:
        """The keylines of ``rows`` rows of one-line cells in columns ``spans``: the lines of
        two rows as the grid's ``Canvas`` draws them, the middle two repeated."""
        key = (tuple(spans), width)
        two = self._frames.get(key)
        if two is None:
            line_style, color = grid.styles.keyline
            color = grid.background_colors[0] + color
            boxes = [Rectangle(Offset(x, 2 * y), w + 2, 3, color, line_style) for y in range(2) for x, w in spans]
            two = self._frames[key] = list(Canvas(width, 5).render(boxes, grid.rich_style)._strips)
        top, row, middle, _row, bottom = two
        return [top, *[row, middle] * (rows - 1), row, bottom]

    def line(self, widget: Widget, content: Content, width: int) -> Strip:
        text = content.plain
        size = cell_len(text)
        inner = width - widget.styles.padding.width
        if content.spans or not text.isprintable() or inner < 2 or size > inner:
            return _cell(widget, content, width)
        key = (id(widget), width)
        look = self._looks.get(key)
        if look is None:
            segments = list(_cell(widget, Content("x"), width))
            left, right = widget.styles.padding.left, widget.styles.padding.right
            cells = [(seg.style, ch) for seg in segments for ch in seg.text]
            look = self._looks[key] = (Segment(" " * left, cells[0][0]), cells[left][0],
                                       cells[left + 1][0], Segment(" " * right, cells[-1][0]))
        before, text_style, fill_style, after = look
        return Strip([before, Segment(text, text_style), Segment(" " * (inner - size), fill_style), after],
                     width)


class TableTokens(BlockTokens):
    """A finished top-level table as markdown-it tokens. Making a table's widgets (five kinds,
    one per cell) costs more than drawing it, so it is drawn from these, and only made into
    its ``MarkdownTable`` (``block``) when it must be mounted after all."""

    def headers_and_rows(self, to_content: Callable[[Token], Content]) -> tuple[list[Content], list[list[Content]]]:
        """As ``MarkdownTable._get_headers_and_rows`` gives them for the same tokens."""
        headers: list[Content] = []
        rows: list[list[Content]] = []
        into: list[Content] | None = None
        for token in self.tokens:
            if token.type == "th_open":
                into = headers
            elif token.type == "td_open":
                into = rows[-1]
            elif token.type == "tr_open":
                rows.append([])
            elif token.type == "inline" and into is not None:
                into.append(to_content(token))
                into = None
        return headers, [row for row in rows if row]  # the header's row holds no cells


def draw_table(headers: list[Content], rows: list[list[Content]], width: int, grid: MarkdownTableContent,
               header: Widget, cell: Widget, cells: Cells) -> Lines | None:
    """The lines of a table of ``headers`` and ``rows`` at ``width``, from the sample ``grid``
    and its ``header`` and ``cell``; None when it is not a table of one-line cells."""
    columns = len(headers)
    if not columns or any(len(row) != columns for row in rows):
        return None
    table = [headers, *rows]
    if any("\n" in c.plain for line in table for c in line):
        return None
    styles = grid.styles
    gutter_x, gutter_y = styles.grid_gutter_vertical, styles.grid_gutter_horizontal
    if gutter_x != 1 or gutter_y != 1 or styles.keyline[0] == "none":
        return None  # the keyline drawing below assumes the shipped CSS
    pad = header.styles.gutter.width
    if cell.styles.gutter.width != pad:
        return None
    wanted = [max(cell_len(line[i].plain) for line in table) + pad for i in range(columns)]
    minimums = [max(1, max(line[i].get_minimal_width(cell.styles) + pad for line in table))
                for i in range(columns)]
    size = Size(width - 2, 0)  # inside the keyline
    spans = resolve([Scalar.from_number(w) for w in wanted], size.width, gutter_x, size,
                    grid.app.viewport_size, expand=True, shrink=True, minimums=minimums)
    if any(w < want for (_, w), want in zip(spans, wanted)) or spans[-1][0] + spans[-1][1] + 2 > width:
        return None  # a cell would wrap, or the grid overflow: its widgets draw it
    frame = cells.frame(grid, spans, width, len(table))
    for y, line in enumerate(table):
        sample = header if y == 0 else cell
        row = frame[2 * y + 1]
        pieces: list[Strip] = []
        at = 0
        for (x, w), content in zip(spans, line):
            pieces.append(row.crop(at, x + 1))
            pieces.append(cells.line(sample, content, w))
            at = x + 1 + w
        pieces.append(row.crop(at, width))
        frame[2 * y + 1] = Strip.join(pieces)
    return frame
