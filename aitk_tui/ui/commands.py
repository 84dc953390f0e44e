"""Every command of the TUI, defined once: palette entry, key binding and footer label.

``COMMANDS`` is the single source. :func:`bindings_for` turns a scope's entries into
Textual ``Binding``s (each with an ``id`` the user can remap in ``tui.toml``), and
:class:`AitkCommands` lists them in the command palette, built from the app's current
state: a command that cannot run yet is still listed and its help says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits
from textual.system_commands import SystemCommandsProvider

if TYPE_CHECKING:
    from .app import AitkApp


@dataclass(frozen=True)
class CommandDef:
    id: str  # binding id (remappable) and the app's command name
    title: str  # palette title: reads as an action
    help: str  # one line shown under the title in the palette
    key: str | None = None  # default key(s), comma separated
    footer: str | None = None  # short footer label; None keeps it out of the footer
    scope: str = "app"  # "app" or a widget scope: "params", "activity", "chat", "prompt"
    palette: bool = True
    priority: bool = False
    action: str | None = None  # widget-scope action name (app scope: cmd('<id>'))
    tabs: tuple[str, ...] = ()  # tabs whose footer shows it ("" = every tab)
    tab_key: bool = False  # its key works only on ``tabs``; elsewhere the focused widget gets it


AZ, ACT, ALL = ("azure",), ("azure", "activity"), ()
COMMANDS: tuple[CommandDef, ...] = (
    CommandDef("help", "Show help", "What has focus and the keys that work there.", "f1", "Help", priority=True),
    CommandDef("palette", "Open the command palette", "Also ctrl+p.", "f2", "Commands", palette=False, priority=True),
    CommandDef("sign_in", "Sign in", "Sign in to Azure (device code over ssh)."),
    CommandDef("select_subscription", "Select subscription", "Pick the Azure subscription to work in.",
               "f3", "Sub", priority=True, tabs=AZ),
    CommandDef("select_group", "Select resource group", "Pick the resource group for the inference resources.",
               "f4", "Group", priority=True, tabs=AZ),
    CommandDef("create_group", "Create resource group",
               "Create a new resource group in the selected subscription."),
    CommandDef("edit_parameters", "Edit inference parameters",
               "The form over infra/provision/inference.parameters.json.", "f7", priority=True),
    CommandDef("what_if", "Preview provisioning (what-if)",
               "Show what provisioning would create or change, changing nothing."),
    CommandDef("provision", "Provision Azure Container Apps for inference",
               "Deploy infra/provision/inference.json; writes infra/inference.config.json.", "f5", "Provision",
               priority=True, tabs=ACT),
    CommandDef("deploy", "Deploy for inference",
               "Upload inference_server/ to the file share, restart the app and wait until healthy.", "f6", "Deploy",
               priority=True, tabs=ACT),
    CommandDef("go_to_endpoint", "Go to inference endpoint", "Open the chat against ACA_APP_ENDPOINT.", "f9", "Chat",
               priority=True, tabs=AZ),
    CommandDef("replica_logs", "Show replica logs",
               "Follow the container app's output in the activity log (Esc stops)."),
    CommandDef("open_config", "Open inference.config.json",
               "View or edit the six AI Toolkit keys (manual provisioning)."),
    CommandDef("show_activity", "Show activity log", "Provisioning and deploy progress, replica logs.", "f8",
               priority=True),
    CommandDef("show_azure", "Show Azure overview", "Sign-in, subscription, resource group and the next step."),
    CommandDef("show_endpoint", "Show endpoint",
               "The container app live: revisions, replicas, health, why a replica fails, scale, cost, logs.",
               "f12", priority=True),
    CommandDef("keep_warm", "Keep warm (min 1 replica)",
               "No cold start for a demo; a GPU replica bills all the time (aitk scale --keep-warm)."),
    CommandDef("let_sleep", "Let it sleep (scale to zero)",
               "No GPU billing while idle; the first request then waits for a cold start (aitk scale --sleep)."),
    CommandDef("upload_models", "Upload model/adapter…",
               "Copy a trained LoRA adapter (and base model) to the file share; sets the parameters (aitk models upload)."),
    CommandDef("teardown", "Tear down (delete the container app)",
               "Stops GPU billing; keeps the share (model, adapter, server files) and the environment (aitk down)."),
    CommandDef("teardown_all", "Tear down everything",
               "Deletes every resource provisioning created, listed first; you type the group's name (aitk down --all)."),
    CommandDef("refresh_status", "Refresh endpoint status",
               "Ask the container app whether it is running and healthy."),
    CommandDef("copy_endpoint", "Copy endpoint URL",
               "Copies ACA_APP_ENDPOINT to the clipboard (OSC 52, works over ssh)."),
    CommandDef("choose_model", "Choose the chat's model",
               "Pick which of the endpoint's models (/v1/models) the chat talks to: an adapter or the base."),
    CommandDef("compare_models", "Compare models",
               "Send the same conversation to two of the endpoint's models; both answers side by side."),
    CommandDef("open_in_browser", "Open endpoint in browser",
               "The endpoint's own chat page (over ssh: shows the URL to open elsewhere)."),
    CommandDef("copy_api_key", "Copy API key", "Copies the app's API key to the clipboard (OSC 52); never shown."),
    CommandDef("copy_snippet_curl", "Copy snippet (curl)", "A ready curl call of the endpoint (key from $AITK_API_KEY)."),
    CommandDef("copy_snippet_python", "Copy snippet (Python)", "The OpenAI Python client calling the endpoint."),
    CommandDef("copy_snippet_js", "Copy snippet (JavaScript)", "The OpenAI JavaScript client calling the endpoint."),
    CommandDef("save_activity", "Save activity log", "Write the activity log to .aitk/logs/."),
    CommandDef("save_chat", "Save conversation as Markdown", "Write the chat transcript to .aitk/chats/."),
    CommandDef("copy_answer", "Copy last answer", "Copies the last chat answer to the clipboard (OSC 52)."),
    CommandDef("new_chat", "New conversation",
               "Start the chat afresh: the model forgets the earlier turns (ctrl+s saves them first).", "ctrl+n",
               priority=True),
    CommandDef("cancel", "Cancel the running operation", "Stops provisioning, deploy or log streaming cleanly.",
               "escape", "Cancel"),
    CommandDef("quit", "Quit", "Leave aitk (ctrl+q works too).", "f10", "Quit", priority=True),
    # Widget scopes: the same definitions drive their bindings and footer labels.
    CommandDef("params.save", "Save inference parameters", "Validate every field and write the file atomically.",
               "ctrl+s", "Save", scope="params", action="save"),
    CommandDef("params.revert", "Revert inference parameters", "Reload the file, dropping unsaved edits.",
               "ctrl+r", "Revert", scope="params", action="revert"),
    # App scope, limited to the Activity tab: End must work wherever focus is on that tab.
    # Out of the footer (80 columns are full): the detached log's badge says "End to follow".
    CommandDef("activity.follow", "Follow the activity log", "Scroll to the end and keep following.",
               "end", None, palette=False, priority=True, tabs=("activity",), tab_key=True),
    CommandDef("activity.probes", "Show health-probe lines (toggle)",
               "The replica's GET /health access lines, hidden by default (most of what it prints).",
               "p", None, priority=True, tabs=("activity",), tab_key=True),
    # The Endpoint tab's keys: single letters, as k9s; nothing on that tab takes text.
    CommandDef("endpoint.logs", "Switch console / system logs (Endpoint)",
               "The replica's own output, or the platform's system log: assignment, start, probe failures, restarts.",
               "s", None, priority=True, tabs=("endpoint",), tab_key=True),
    CommandDef("endpoint.probes", "Show health-probe lines (Endpoint)",
               "The replica's GET /health access lines in the Endpoint tab's log, hidden by default.",
               "p", None, palette=False, priority=True, tabs=("endpoint",), tab_key=True),
    CommandDef("endpoint.raw", "Show raw log lines (Endpoint)",
               "The server's JSON lines and the platform's events as sent, or as time, level and message.",
               "r", None, palette=False, priority=True, tabs=("endpoint",), tab_key=True),
    CommandDef("activity.save", "Save activity log", "Write the activity log to .aitk/logs/.",
               "ctrl+s", "Save log", scope="activity", palette=False, action="save"),
    CommandDef("chat.stop", "Stop generating", "Stop the answer being streamed.", "escape", "Stop",
               scope="chat", palette=False, action="stop"),
    CommandDef("chat.save", "Save conversation as Markdown", "Write the chat transcript to .aitk/chats/.",
               "ctrl+s", "Save", scope="chat", palette=False, action="save"),
    CommandDef("chat.send", "Send the prompt", "Send the message.", "enter", "Send",
               scope="prompt", palette=False, priority=True, action="submit"),
    CommandDef("chat.newline", "New line in the prompt",
               "Insert a line break (shift+enter is not reliable in terminals).", "ctrl+j,alt+enter,shift+enter",
               "Newline", scope="prompt", palette=False, priority=True, action="newline"),
)

FKEY = re.compile(r"f\d{1,2}")
COMMANDS_BY_ID: dict[str, CommandDef] = {c.id: c for c in COMMANDS}


def bindings_for(scope: str) -> list[Binding]:
    out = []
    for c in COMMANDS:
        if c.scope != scope or not c.key:
            continue
        action = c.action or (f"cmd('{c.id}')" if scope == "app" else c.id)
        out.append(Binding(c.key, action, c.footer or c.title, show=c.footer is not None,
                           id=c.id, priority=c.priority, tooltip=c.help))
    return out


def key_display(app, command_id: str) -> str:
    """The key(s) bound to a command after the user's keymap, as the footer shows them."""
    c = COMMANDS_BY_ID[command_id]
    keys = app._keymap.get(command_id) or c.key
    if not keys:
        return ""
    shown = []
    for key in keys.split(","):
        key = key.strip()
        shown.append(key.upper() if FKEY.fullmatch(key) else app.get_key_display(Binding(key, "", "")))
    return " / ".join(shown)


class AitkCommands(SystemCommandsProvider):
    """The palette, built from the app's state each time it opens.

    It also serves Textual's system commands (theme, keys, screenshot, quit), after ours:
    with two providers, an empty palette listed whichever answered first, which put
    "Keys" and "Maximize" above "Provision".
    """

    def _entries(self):
        app: AitkApp = self.app  # type: ignore[assignment]
        for c in COMMANDS:
            if not c.palette:
                continue
            reason = app.state.why_not(c.id)
            keys = key_display(app, c.id)
            if reason:
                help_text = f"Not yet: {reason}."
            else:
                help_text = f"{c.help}" + (f"  [{keys}]" if keys else "")
            yield c, help_text

    async def discover(self) -> Hits:
        for c, help_text in self._entries():
            yield DiscoveryHit(c.title, partial(self.app.run_command, c.id), text=c.title, help=help_text)
        async for hit in super().discover():
            yield hit

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for c, help_text in self._entries():
            score = matcher.match(c.title)
            if score > 0:
                yield Hit(score, matcher.highlight(c.title), partial(self.app.run_command, c.id),
                          text=c.title, help=help_text)
        async for hit in super().search(query):
            yield hit
