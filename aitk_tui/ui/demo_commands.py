"""Palette commands of the demo surface: compare two models, copy the API key or a snippet
(OSC 52: reaches the clipboard over ssh too), open the endpoint's chat page in a browser.

Mixed into :class:`~aitk_tui.ui.app.AitkApp` beside ``CommandHandlersMixin``. The key is
never shown: it goes to the clipboard only, and a failure names the problem, not the key.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from textual import work

from ..errors import AitkError

if TYPE_CHECKING:
    from .app import AitkApp


DEFAULT_MODEL = "__default__"  # the picker's entry for "no model named: the endpoint's default"


def browser_available() -> bool:
    """Whether webbrowser.open can show a page to the user: not over ssh without a display."""
    if sys.platform in ("darwin", "win32"):
        return not os.environ.get("SSH_CONNECTION")
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class DemoCommandsMixin:
    async def _cmd_choose_model(self: "AitkApp") -> None:
        from .screens.picker import PickerItem, PickerScreen

        chat = await self.ensure_pane("chat")
        self.show_tab("chat")

        async def load() -> list[PickerItem]:
            return [PickerItem(m, m) for m in await chat.endpoint_models()]

        def chosen(item: PickerItem | None) -> None:
            if item is None:
                return
            chat.set_model(None if item.id == DEFAULT_MODEL else item.id)
            self.notify(f"The chat now talks to {item.title}.", timeout=4)

        default = PickerItem(DEFAULT_MODEL, "The endpoint's default", "its adapter, or its only model")
        self.push_screen(PickerScreen("Chat with which model?", load, current=chat.model, extra=[default],
                                      id="model-picker"), chosen)

    async def _cmd_compare_models(self: "AitkApp") -> None:
        from .widgets.compare import open_compare

        await open_compare(self)

    def _cmd_copy_api_key(self: "AitkApp") -> None:
        self._copy_demo("key")

    def _cmd_copy_snippet_curl(self: "AitkApp") -> None:
        self._copy_demo("curl")

    def _cmd_copy_snippet_python(self: "AitkApp") -> None:
        self._copy_demo("python")

    def _cmd_copy_snippet_js(self: "AitkApp") -> None:
        self._copy_demo("js")

    def _cmd_open_in_browser(self: "AitkApp") -> None:
        url = self.state.config.endpoint_url.removesuffix("/v1") + "/"
        if browser_available():
            import webbrowser

            try:
                opened = webbrowser.open(url, new=2)
            except Exception:  # noqa: BLE001 - a broken browser setting: fall back to the URL
                opened = False
            if opened:
                self.notify(f"Opened {url} (the page asks for the API key: Copy API key)", timeout=6)
                return
        # Over ssh no browser opens here: the URL goes where the user can click or copy it.
        self.log_line(f"Chat page: {url}")
        self.notify(f"No browser here: open {url} on your machine (Copy API key for its key).", timeout=12)

    def log_line(self: "AitkApp", text: str) -> None:
        activity = self.query("#activity-pane")
        if activity:
            activity.first().log_pane.write_lines([text])

    @work(group="demo-copy", exclusive=True, exit_on_error=False)
    async def _copy_demo(self: "AitkApp", what: str) -> None:
        from ..chat.client import ChatClient, ChatError, is_loopback
        from ..snippets import key_command, snippet

        config = self.state.config
        url = config.endpoint_url
        try:
            key = await self.session.api_key(config)
            if what == "key":
                self.copy_to_clipboard(key)
                self.notify("API key copied to the clipboard.", timeout=4)
                return
            verify: Any = self.chat_verify(url)
            async with ChatClient(url, key, verify=verify, allow_insecure_http=is_loopback(url)) as client:
                model = await client.default_model()
            text = snippet(what, url, model, set_key=key_command(local=self.local),
                           ca_bundle=verify if isinstance(verify, str) else None)
        except (AitkError, ChatError, ValueError) as e:
            detail = getattr(e, "detail", None)
            message = getattr(e, "message", None) or str(e)
            self.notify(message + (f"\n{detail}" if detail else ""), title="Copy", severity="error", timeout=10)
            return
        self.copy_to_clipboard(text)
        self.notify(f"{what} snippet copied (it reads the key from $AITK_API_KEY).", timeout=5)
