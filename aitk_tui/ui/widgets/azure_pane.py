"""The Azure tab: the journey as a checklist (Enter runs a step) and the config keys."""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ...config.inference_config import KEYS
from ..commands import key_display
from ..state import UIState
from .status_header import health_label


def _step(done: bool, title: str, detail: str, keys: str, blocked: bool = False) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    mark, style = ("✓ ", "green") if done else (("· ", "dim") if blocked else ("› ", "bold"))
    text.append(mark, style=style)
    text.append(f"{title:<15}", style="bold" if not blocked else "")
    text.append(detail, style="dim" if blocked or not done else "")
    if keys:
        text.append(f"  {keys}", style="dim")
    return text


class AzurePane(VerticalScroll, can_focus=False):
    HELP = """
## Azure
The steps from sign-in to chat. Move with ↑/↓ and press **Enter** to run a step;
a step that cannot run yet says why. The table shows `infra/inference.config.json`
(the six AI Toolkit keys), written by provisioning or filled by hand.
"""

    DEFAULT_CSS = """
    AzurePane { height: 1fr; padding: 0 1; }
    AzurePane #steps { height: auto; border: none; padding: 0; }
    AzurePane #config { height: auto; margin-top: 1; }
    AzurePane #config-title { text-style: bold; margin-top: 1; }
    """

    _next_step: int | None = None
    _state: UIState | None = None

    def compose(self) -> ComposeResult:
        yield OptionList(id="steps")
        yield Static("infra/inference.config.json", id="config-title", markup=False)
        yield Static("", id="config", markup=False)

    def show(self, state: UIState) -> None:
        app = self.app
        k = lambda cid: key_display(app, cid)  # noqa: E731

        def why(cid: str) -> str | None:
            # The checklist has one line per step: the reason without its parenthesis.
            reason = state.why_not(cid)
            if not reason:
                return None
            for cut in (" (", ", or", ": "):
                reason = reason.split(cut)[0]
            return reason

        steps = [
            ("sign_in", _step(state.signed_in, "Sign in",
                              state.who if state.signed_in else (state.signin_error or state.who), k("sign_in"))),
            ("select_subscription", _step(bool(state.subscription_id), "Subscription",
                                          _sub(state) or "not selected", k("select_subscription"),
                                          blocked=bool(why("select_subscription")))),
            ("select_group", _step(bool(state.resource_group), "Resource group",
                                   _group(state) or "not selected", k("select_group"),
                                   blocked=bool(why("select_group")))),
            ("edit_parameters", _step(not (state.params_error or state.params_invalid or state.params_dirty),
                                      "Parameters", _params(state), k("edit_parameters"))),
            ("provision", _step(_provisioned(state), "Provision",
                                "done (config written)" if _provisioned(state)
                                else "local cloud config only; not on Azure yet" if state.config_is_local_cloud
                                else (why("provision") or "ready to run"),
                                k("provision"), blocked=bool(why("provision")))),
            ("deploy", _step(state.health == "healthy", "Deploy",
                             health_label(state)[0] if not why("deploy") else why("deploy") or "",
                             k("deploy"), blocked=bool(why("deploy")))),
            ("go_to_endpoint", _step(False, "Chat", state.config.endpoint_url if state.config and
                                     state.config.endpoint_url else (why("go_to_endpoint") or ""),
                                     k("go_to_endpoint"), blocked=bool(why("go_to_endpoint")))),
        ]
        steps_list = self.query_one("#steps", OptionList)
        # One line per step: OptionList wraps a long prompt (a sign-in error) onto the next row.
        self._state = state
        width = max(20, (steps_list.content_size.width or self.content_size.width or 78) - 1)
        for _cid, text in steps:
            text.truncate(width, overflow="ellipsis")
        highlighted = steps_list.highlighted
        steps_list.clear_options()
        steps_list.add_options([Option(text, id=cid) for cid, text in steps])
        # The cursor moves to the next step when the journey moves on (Enter then continues it);
        # otherwise it stays where the user put it.
        next_step = next((i for i, (_cid, text) in enumerate(steps) if text.plain.startswith("› ")), 0)
        if next_step != self._next_step or highlighted is None:
            highlighted = next_step
        self._next_step = next_step
        steps_list.highlighted = highlighted
        self.query_one("#config-title", Static).update(
            "infra/inference.config.json" + ("  (local cloud)" if state.config and state.config.from_local_cloud
                                              else ""))
        self.query_one("#config", Static).update(_config_table(state))

    def on_resize(self) -> None:
        if self._state is not None:
            self.show(self._state)

    @dataclass
    class StepChosen(Message):
        """Enter on a step: the screen runs its command (``command_id``, as in ui/commands.py)."""

        command_id: str

    @on(OptionList.OptionSelected, "#steps")
    def _run_step(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id:
            self.post_message(self.StepChosen(event.option.id))


def _provisioned(state: UIState) -> bool:
    # A config the local cloud wrote is not "your Azure deployment" in a run without --local.
    return not state.config_missing() and not state.config_is_local_cloud


def _sub(state: UIState) -> str:
    if not state.subscription_id:
        return ""
    if state.subscription_name and state.subscription_name != state.subscription_id:
        return f"{state.subscription_name} ({state.subscription_id[:8]}…)"
    return state.subscription_id


def _group(state: UIState) -> str:
    if not state.resource_group:
        return ""
    return f"{state.resource_group}" + (f" · {state.location}" if state.location else "")


def _params(state: UIState) -> str:
    if state.params_error:
        return "file does not parse: " + state.params_error
    if state.params_dirty:
        return "unsaved changes"
    if state.params_invalid:
        return state.params_invalid
    return "valid"


def _config_table(state: UIState) -> Table | Text:
    if state.config_error:
        return Text(state.config_error, style="red")
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim", no_wrap=True)
    table.add_column(no_wrap=True, overflow="ellipsis")
    for key in KEYS:
        value = getattr(state.config, key, None) if state.config else None
        table.add_row(key, Text(value or "null", style="" if value else "dim italic"))
    return table
