"""The widgets that show a streamed answer's drawn lines (answer.py): the run of finished
blocks, and the block still being written."""

from __future__ import annotations

from textual._compositor import Compositor
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Markdown


class DrawnLines(Widget):
    """Lines drawn for blocks, shown as they are. Not a ``MarkdownBlock``, so
    ``Markdown.append`` never picks it as the block to update."""

    DEFAULT_CSS = "DrawnLines { width: 1fr; height: auto; }"

    def __init__(self) -> None:
        super().__init__()
        self.strips: list[Strip] = []
        self.frozen_width = 0
        self.frozen_theme = ""

    def render_lines(self, crop: Region) -> list[Strip]:
        # The strips are final screen output (styles, links): no styling pass on top.
        blank = Strip.blank(crop.width)
        lines = self.strips[crop.y:crop.bottom]
        out = [strip.crop_extend(crop.x, crop.right, None) for strip in lines]
        out.extend([blank] * (crop.height - len(out)))
        return out

    async def action_link(self, href: str) -> None:
        """Links in drawn lines keep working: forwarded as the Markdown's own LinkClicked."""
        markdown = self.query_ancestor(Markdown)
        self.post_message(Markdown.LinkClicked(markdown, href))


class FrozenRun(DrawnLines):
    """Lines already drawn for finished blocks: one widget however many blocks it holds."""

    DEFAULT_CSS = "FrozenRun { width: 1fr; height: auto; }"

    def extend(self, strips: list[Strip], width: int, theme: str, margin_top: int, margin_bottom: int) -> None:
        if not self.strips:
            self.styles.margin = (margin_top, 0, margin_bottom, 0)
        else:
            top = self.styles.margin.top
            self.styles.margin = (top, 0, margin_bottom, 0)
        self.strips.extend(strips)
        self.frozen_width = width
        self.frozen_theme = theme
        self.styles.height = len(self.strips)
        self.refresh(layout=True)


class TailRun(DrawnLines):
    """The block still being written, drawn like the run's blocks (no widgets to make, lay out
    and drop on every append) while it is one ``BlockDrawer`` draws; drawn again on each
    append, and hidden when the block must be widgets after all. Its margins are the block's,
    so the layout spaces it as it would space the block."""

    DEFAULT_CSS = "TailRun { width: 1fr; height: auto; display: none; }"

    def show(self, strips: list[Strip], width: int, theme: str, margin_top: int, margin_bottom: int) -> None:
        self.strips = strips
        self.frozen_width = width
        self.frozen_theme = theme
        self.styles.margin = (margin_top, 0, margin_bottom, 0)
        self.styles.height = len(strips)
        self.display = True
        self.refresh(layout=True)

    def hide(self) -> None:
        if self.display:
            self.strips = []
            self.display = False


def render_widget(widget: Widget, region: Region) -> list[Strip]:
    """What the screen shows for ``widget`` and its children, rendered apart from the screen."""
    compositor = Compositor()
    compositor.reflow(widget, region.size)
    return compositor.render_strips()
