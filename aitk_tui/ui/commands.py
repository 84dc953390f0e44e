"""Every command of the TUI, defined once: palette entry, key binding and footer label.

``COMMANDS`` is the single source. Each command names its target and action, as a Textual
action string: ``"screen.provision"`` runs ``MainScreen.action_provision``, ``"app.quit"``
``AitkApp.action_quit``; a widget's own key names the widget's action (``"save"``) and,
when the palette lists it too, the main screen's action the palette runs. :func:`bindings_for`
turns a scope's entries into Textual ``Binding``s (each with an ``id`` the user can remap in
``tui.toml``); the main screen's palette provider lists them, a command that cannot run yet
with the reason in its help.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from textual.binding import Binding


@dataclass(frozen=True)
class CommandDef:
    id: str  # binding id (remappable in tui.toml) and the key of UIState.why_not's rules
    title: str  # palette title: reads as an action
    help: str  # one line shown under the title in the palette
    key: str | None = None  # default key(s), comma separated
    footer: str | None = None  # short footer label; None keeps it out of the footer
    action: str = ""  # the Textual action, naming its target: "screen.provision", "app.quit"; a widget's own: "save"
    scope: str = "screen"  # whose BINDINGS carry the key: the "app", the main "screen", or a widget's: "params"...
    palette: bool = True
    palette_action: str | None = None  # what the palette runs when ``action`` is a widget's own
    priority: bool = False
    tabs: tuple[str, ...] = ()  # tabs whose footer shows it ("" = every tab)
    tab_key: bool = False  # its key works only on ``tabs``; elsewhere the focused widget gets it

    @property
    def runs(self) -> str:
        """The action the palette runs (a screen's or the app's, never a widget's own)."""
        return self.palette_action or self.action


AZ, ACT, ALL = ("azure",), ("azure", "activity"), ()
COMMANDS: tuple[CommandDef, ...] = (
    CommandDef("help", "Show help", "What has focus and the keys that work there.", "f1", "Help", priority=True,
               action="app.help", scope="app"),
    CommandDef("palette", "Open the command palette", "Also ctrl+p.", "f2", "Commands", palette=False, priority=True,
               action="app.palette", scope="app"),
    CommandDef("sign_in", "Sign in", "Sign in to Azure (device code over ssh).", action="screen.sign_in"),
    CommandDef("select_subscription", "Select subscription", "Pick the Azure subscription to work in.",
               "f3", "Sub", priority=True, tabs=AZ, action="screen.select_subscription"),
    CommandDef("select_group", "Select resource group", "Pick the resource group for the inference resources.",
               "f4", "Group", priority=True, tabs=AZ, action="screen.select_group"),
    CommandDef("create_group", "Create resource group",
               "Create a new resource group in the selected subscription.", action="screen.create_group"),
    CommandDef("edit_parameters", "Edit inference parameters",
               "The form over infra/provision/inference.parameters.json.", "f7", priority=True,
               action="screen.edit_parameters"),
    CommandDef("what_if", "Preview provisioning (what-if)",
               "Show what provisioning would create or change, changing nothing.", action="screen.what_if"),
    CommandDef("provision", "Provision Azure Container Apps for inference",
               "Deploy infra/provision/inference.json; writes infra/inference.config.json.", "f5", "Provision",
               priority=True, tabs=ACT, action="screen.provision"),
    CommandDef("deploy", "Deploy for inference",
               "Upload inference_server/ to the file share, restart the app and wait until healthy.", "f6", "Deploy",
               priority=True, tabs=ACT, action="screen.deploy"),
    CommandDef("go_to_endpoint", "Go to inference endpoint", "Open the chat against ACA_APP_ENDPOINT.", "f9", "Chat",
               priority=True, tabs=AZ, action="screen.go_to_endpoint"),
    CommandDef("replica_logs", "Show replica logs",
               "Follow the container app's output in the activity log (Esc stops).", action="screen.replica_logs"),
    CommandDef("open_config", "Open inference.config.json",
               "View or edit the six AI Toolkit keys (manual provisioning).", action="screen.open_config"),
    CommandDef("show_activity", "Show activity log", "Provisioning and deploy progress, replica logs.", "f8",
               priority=True, action="screen.show_activity"),
    CommandDef("show_azure", "Show Azure overview", "Sign-in, subscription, resource group and the next step.",
               action="screen.show_azure"),
    CommandDef("show_endpoint", "Show endpoint",
               "The container app live: revisions, replicas, health, why a replica fails, scale, cost, logs.",
               "f12", priority=True, action="screen.show_endpoint"),
    CommandDef("keep_warm", "Keep warm (min 1 replica)",
               "No cold start for a demo; a GPU replica bills all the time (aitk scale --keep-warm).",
               action="screen.keep_warm"),
    CommandDef("let_sleep", "Let it sleep (scale to zero)",
               "No GPU billing while idle; the first request then waits for a cold start (aitk scale --sleep).",
               action="screen.let_sleep"),
    CommandDef("upload_models", "Upload model/adapter…",
               "Copy a trained LoRA adapter (and base model) to the file share; sets the parameters (aitk models upload).",
               action="screen.upload_models"),
    CommandDef("teardown", "Tear down (delete the container app)",
               "Stops GPU billing; keeps the share (model, adapter, server files) and the environment (aitk down).",
               action="screen.teardown"),
    CommandDef("teardown_all", "Tear down everything",
               "Deletes every resource provisioning created, listed first; you type the group's name (aitk down --all).",
               action="screen.teardown_all"),
    CommandDef("refresh_status", "Refresh endpoint status",
               "Ask the container app whether it is running and healthy.", action="screen.refresh_status"),
    CommandDef("copy_endpoint", "Copy endpoint URL",
               "Copies ACA_APP_ENDPOINT to the clipboard (OSC 52, works over ssh).", action="screen.copy_endpoint"),
    CommandDef("choose_model", "Choose the chat's model",
               "Pick which of the endpoint's models (/v1/models) the chat talks to: an adapter or the base.",
               action="screen.choose_model"),
    CommandDef("compare_models", "Compare models",
               "Send the same conversation to two of the endpoint's models; both answers side by side.",
               action="screen.compare_models"),
    CommandDef("open_in_browser", "Open endpoint in browser",
               "The endpoint's own chat page (over ssh: shows the URL to open elsewhere).",
               action="screen.open_in_browser"),
    CommandDef("copy_api_key", "Copy API key", "Copies the app's API key to the clipboard (OSC 52); never shown.",
               action="screen.copy_api_key"),
    CommandDef("copy_snippet_curl", "Copy snippet (curl)", "A ready curl call of the endpoint (key from $AITK_API_KEY).",
               action="screen.copy_snippet_curl"),
    CommandDef("copy_snippet_python", "Copy snippet (Python)", "The OpenAI Python client calling the endpoint.",
               action="screen.copy_snippet_python"),
    CommandDef("copy_snippet_js", "Copy snippet (JavaScript)", "The OpenAI JavaScript client calling the endpoint.",
               action="screen.copy_snippet_js"),
    CommandDef("save_activity", "Save activity log", "Write the activity log to .aitk/logs/.",
               action="screen.save_activity"),
    CommandDef("save_chat", "Save conversation as Markdown", "Write the chat transcript to .aitk/chats/.",
               action="screen.save_chat"),
    CommandDef("copy_answer", "Copy last answer", "Copies the last chat answer to the clipboard (OSC 52).",
               action="screen.copy_answer"),
    CommandDef("new_chat", "New conversation",
               "Start the chat afresh: the model forgets the earlier turns (ctrl+s saves them first).", "ctrl+n",
               priority=True, action="screen.new_chat"),
    CommandDef("cancel", "Cancel the running operation", "Stops provisioning, deploy or log streaming cleanly.",
               "escape", "Cancel", action="screen.cancel"),
    CommandDef("quit", "Quit", "Leave aitk (ctrl+q works too).", "f10", "Quit", priority=True,
               action="app.request_quit", scope="app"),
    # Widget scopes: the same definitions drive their bindings and footer labels.
    CommandDef("params.save", "Save inference parameters", "Validate every field and write the file atomically.",
               "ctrl+s", "Save", scope="params", action="save", palette_action="screen.save_parameters"),
    CommandDef("params.revert", "Revert inference parameters", "Reload the file, dropping unsaved edits.",
               "ctrl+r", "Revert", scope="params", action="revert", palette_action="screen.revert_parameters"),
    # App scope, limited to the Activity tab: End must work wherever focus is on that tab.
    # Out of the footer (80 columns are full): the detached log's badge says "End to follow".
    CommandDef("activity.follow", "Follow the activity log", "Scroll to the end and keep following.",
               "end", None, palette=False, priority=True, tabs=("activity",), tab_key=True,
               action="screen.follow_activity"),
    CommandDef("activity.probes", "Show health-probe lines (toggle)",
               "The replica's GET /health access lines, hidden by default (most of what it prints).",
               "p", None, priority=True, tabs=("activity",), tab_key=True, action="screen.toggle_activity_probes"),
    # The Endpoint tab's keys: single letters, as k9s; nothing on that tab takes text.
    CommandDef("endpoint.logs", "Switch console / system logs (Endpoint)",
               "The replica's own output, or the platform's system log: assignment, start, probe failures, restarts.",
               "s", None, priority=True, tabs=("endpoint",), tab_key=True, action="screen.toggle_endpoint_log"),
    CommandDef("endpoint.probes", "Show health-probe lines (Endpoint)",
               "The replica's GET /health access lines in the Endpoint tab's log, hidden by default.",
               "p", None, palette=False, priority=True, tabs=("endpoint",), tab_key=True,
               action="screen.toggle_endpoint_probes"),
    CommandDef("endpoint.raw", "Show raw log lines (Endpoint)",
               "The server's JSON lines and the platform's events as sent, or as time, level and message.",
               "r", None, palette=False, priority=True, tabs=("endpoint",), tab_key=True,
               action="screen.toggle_endpoint_raw"),
    CommandDef("activity.save", "Save activity log", "Write the activity log to .aitk/logs/.",
               "ctrl+s", "Save log", scope="activity", palette=False, action="screen.save_activity"),
    CommandDef("chat.stop", "Stop generating", "Stop the answer being streamed.", "escape", "Stop",
               scope="chat", palette=False, action="stop"),
    CommandDef("chat.save", "Save conversation as Markdown", "Write the chat transcript to .aitk/chats/.",
               "ctrl+s", "Save", scope="chat", palette=False, action="screen.save_chat"),
    CommandDef("chat.send", "Send the prompt", "Send the message.", "enter", "Send",
               scope="prompt", palette=False, priority=True, action="submit"),
    CommandDef("chat.newline", "New line in the prompt",
               "Insert a line break (shift+enter is not reliable in terminals).", "ctrl+j,alt+enter,shift+enter",
               "Newline", scope="prompt", palette=False, priority=True, action="newline"),
)

FKEY = re.compile(r"f\d{1,2}")
COMMANDS_BY_ID: dict[str, CommandDef] = {c.id: c for c in COMMANDS}


def bindings_for(scope: str) -> list[Binding]:
    """The ``Binding``s of a scope's keys: the app's, the main screen's (their own actions,
    without the ``app.`` / ``screen.`` prefix) or a widget's."""
    out = []
    for c in COMMANDS:
        if c.scope != scope or not c.key:
            continue
        action = c.action.removeprefix(f"{scope}.") if scope in ("app", "screen") else c.action
        out.append(Binding(c.key, action, c.footer or c.title, show=c.footer is not None,
                           id=c.id, priority=c.priority, tooltip=c.help))
    return out


def by_screen_action(name: str) -> CommandDef | None:
    """The command whose key or palette entry runs ``screen.<name>`` (the first, where two do)."""
    return _BY_SCREEN_ACTION.get(f"screen.{name}")


_BY_SCREEN_ACTION: dict[str, CommandDef] = {}
for _c in COMMANDS:
    for _action in (_c.action, _c.palette_action):
        if _action and _action.startswith("screen."):
            _BY_SCREEN_ACTION.setdefault(_action, _c)


def key_display(app: Any, command_id: str) -> str:
    """The key(s) bound to a command after the user's keymap, as the footer shows them."""
    c = COMMANDS_BY_ID[command_id]
    keys = app.keymap.get(command_id) or c.key
    if not keys:
        return ""
    shown = []
    for key in keys.split(","):
        key = key.strip()
        shown.append(key.upper() if FKEY.fullmatch(key) else app.get_key_display(Binding(key, "", "")))
    return " / ".join(shown)
