"""The main screen: the tabs (Azure, Parameters, Activity, Endpoint, Chat), an action for every
command of :data:`~aitk_tui.ui.commands.COMMANDS`, and the cloud operations they start.

As frogmouth's, toolong's and posting's main screens: the app (:class:`~aitk_tui.ui.app.AitkApp`)
holds the session, the state, the settings and the app-wide keys; this screen does the work.
Keys (its ``BINDINGS``) and the palette (:class:`MainCommands`) dispatch Textual actions
(``screen.provision`` runs :meth:`MainScreen.action_provision`); a command's action runs only
once :meth:`UIState.why_not` allows it (the :func:`command` decorator says why not), so it can
assume what the rule checked (a session, a selected group, a complete config).

Workers talk to the session and post messages (:mod:`aitk_tui.ui.messages`); the handlers
below mutate widgets. Long operations (sign-in, what-if, provision, deploy, replica logs) are
async generators of events run by one exclusive worker group, so Esc cancels exactly the
running one; cancelling closes the generator (``aclosing``), which is how the back-end knows
to stop without leaving anything half-written.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
from contextlib import aclosing
from functools import partial, wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import ActiveBinding
from textual.command import DiscoveryHit, Hit, Hits
from textual.screen import Screen
from textual.system_commands import SystemCommandsProvider
from textual.widgets import Footer, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from ...config.inference_config import APP_KEYS, InferenceConfig
from ...config.parameters import ParametersDocument
from ...errors import AitkError
from ...events import Done, Failed, HealthWait, Info
from ...fsutil import atomic_write_text
from ..commands import COMMANDS, COMMANDS_BY_ID, CommandDef, bindings_for, by_screen_action, key_display
from ..messages import ApiKeyFetched, HealthChecked, OperationEnded, OperationProgressed, OperationStarted
from ..operations import OPERATION_GROUP, describe_failure, health_from_status, keeps_warm
from ..widgets.azure_pane import AzurePane
from ..widgets.lazy_pane import LazyPane
from ..widgets.status_header import StatusHeader

if TYPE_CHECKING:
    from ...cloud.models import WhatIf
    from ..app import AitkApp
    from ..widgets.activity import ActivityPane
    from ..widgets.chat import ChatPane
    from ..widgets.endpoint_view import EndpointView
    from ..widgets.parameters_form import ParametersForm


# What takes the keys when a tab is shown from a command (F8, the palette...).
_TAB_FOCUS = {"steps", "log-view", "prompt"}
DEFAULT_MODEL = "__default__"  # the picker's entry for "no model named: the endpoint's default"


def browser_available() -> bool:
    """Whether webbrowser.open can show a page to the user: not over ssh without a display."""
    if sys.platform in ("darwin", "win32"):
        return not os.environ.get("SSH_CONNECTION")
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def command(method: Callable[..., Any]) -> Callable[..., Any]:
    """The action of a command: while :meth:`UIState.why_not` refuses it, it says why ("Not yet:
    ...") and does nothing; the method itself may assume what the rule checked."""
    name = method.__name__.removeprefix("action_")

    @wraps(method)
    async def action(self: "MainScreen", *args: Any) -> None:
        definition = by_screen_action(name)
        if definition is not None and self.refuse(definition):
            return
        result = method(self, *args)
        if inspect.isawaitable(result):  # it needs a pane built first
            await result

    return action


class MainTabs(TabbedContent):
    def _on_tab_pane_focused(self, event: TabPane.Focused) -> None:
        # Textual then runs TabbedContent's own handler (it switches to the pane) unless the
        # default is prevented.
        focused = self.screen.focused
        if focused is None or event.tab_pane not in focused.ancestors:
            # Stale: focus moved on before this message arrived (F9 pressed just after F8
            # focused the log); switching back would undo the user's key.
            event.prevent_default()
            event.stop()


class MainCommands(SystemCommandsProvider):
    """The palette: the main screen's commands, built from the app's state each time it opens.

    It also serves Textual's system commands (theme, keys, screenshot, quit), after ours:
    with two providers, an empty palette listed whichever answered first, which put
    "Keys" and "Maximize" above "Provision".
    """

    def _main(self) -> "MainScreen | None":
        return next((s for s in self.app.screen_stack if isinstance(s, MainScreen)), None)

    def _entries(self) -> list[tuple[CommandDef, str, Callable[[], Any]]]:
        main = self._main()
        return [] if main is None else main.palette_entries()

    async def discover(self) -> Hits:
        for c, help_text, run in self._entries():
            yield DiscoveryHit(c.title, run, text=c.title, help=help_text)
        async for hit in super().discover():
            yield hit

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for c, help_text, run in self._entries():
            score = matcher.match(c.title)
            if score > 0:
                yield Hit(score, matcher.highlight(c.title), run, text=c.title, help=help_text)
        async for hit in super().search(query):
            yield hit


class MainScreen(Screen):
    """The default screen; its footer shows only the keys that matter on the active tab."""

    AUTO_FOCUS = "#steps"  # the Azure checklist: Enter runs the highlighted step
    BINDINGS = bindings_for("screen")

    app: "AitkApp"  # type: ignore[assignment]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.provision_after_what_if: tuple[str, str, Any] | None = None  # F5 waits for its what-if
        self._built = False  # every tab's first widgets mounted (the state is shown from then on)

    # -- layout --------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusHeader(id="status")
        with MainTabs(initial="azure", id="tabs"):
            with TabPane("Azure", id="azure"):
                yield AzurePane(id="azure-pane")
            with TabPane("Parameters", id="parameters"):
                yield LazyPane(self._make_params, on_demand=True)
            with TabPane("Activity", id="activity"):
                yield LazyPane(self._make_activity)
            with TabPane("Endpoint", id="endpoint"):
                yield LazyPane(self._make_endpoint, on_demand=True)
            with TabPane("Chat", id="chat"):
                yield LazyPane(self._make_chat, on_demand=True)
        yield Footer(compact=True, show_command_palette=False)

    # The tabs not shown at start are imported and mounted after the first frame.
    def _make_params(self) -> "ParametersForm":
        from ..widgets.parameters_form import ParametersForm

        return ParametersForm(self.app.project.parameters_path, id="params",
                              display_path="infra/provision/inference.parameters.json")

    def _make_activity(self) -> "ActivityPane":
        from ..widgets.activity import ActivityPane

        return ActivityPane(clock=self.app.clock, id="activity-pane")

    def _make_endpoint(self) -> "EndpointView":
        from ..widgets.endpoint_view import EndpointView, endpoint_target

        app = self.app
        return EndpointView(clock=app.clock, target=endpoint_target(app.session, app.state), id="endpoint-view")

    def _make_chat(self) -> "ChatPane":
        from ..widgets.chat import ChatPane

        app = self.app
        return ChatPane(client_factory=app.chat_client_factory, verify_for=app.chat_verify,
                        replica_logs=app.chat_replica_logs, platform_check=app.chat_platform_check, id="chat-pane")

    def on_mount(self) -> None:
        self.call_after_refresh(self._first_frame)
        self.set_interval(self.app.HEALTH_REFRESH_S, self.refresh_health_quietly)

    def _first_frame(self) -> None:
        """The tabs' contents are mounted now (not yet at on_mount): show the state."""
        self._built = True
        self.refresh_state()

    async def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id:
            await self.ensure_pane(event.pane.id)
        for view in self.query("#endpoint-view"):  # reads the cloud only while it is shown
            view.set_active(event.pane.id == "endpoint")  # type: ignore[attr-defined]
        self.app.refresh_bindings()

    async def ensure_pane(self, tab: str) -> Any:
        """The tab's content widget, built now if it has not been yet."""
        pane = self.query_one(f"TabPane#{tab}", TabPane)
        for lazy in pane.query_children(LazyPane):
            return await lazy.build()
        return pane.children[0] if pane.children else None

    @property
    def active_bindings(self) -> dict[str, ActiveBinding]:
        """The footer's keys: those that matter on the active tab, the app's and this screen's in
        the order of COMMANDS (F1, F2, F3... F10), after the focused widget's own."""
        bindings = super().active_bindings
        order = {c.id: i for i, c in enumerate(COMMANDS) if c.scope in ("app", "screen")}

        def rank(item: tuple[str, ActiveBinding]) -> tuple[int, int]:
            index = order.get(item[1].binding.id or "")
            return (0, 0) if index is None else (1, index)

        return dict(sorted(((key, active) for key, active in bindings.items() if self.footer_shows(active.binding)),
                           key=rank))

    def footer_shows(self, binding) -> bool:
        command = COMMANDS_BY_ID.get(binding.id or "")
        if command is None or command.scope != "screen" or not command.tabs:
            return True
        return self.query_one(TabbedContent).active in command.tabs

    def set_focus(self, widget, scroll_visible: bool = True, from_app_focus: bool = False) -> None:
        if widget is not None and self._in_hidden_tab(widget):
            # Focus never lands in a tab the user is not looking at: TabbedContent would switch
            # back to it (Textual hands focus to a sibling in a tab being hidden, and a late
            # focus() -- an answer ending -- does the same), so F8 from the chat did nothing.
            widget = None
        super().set_focus(widget, scroll_visible, from_app_focus)

    def _in_hidden_tab(self, widget) -> bool:
        pane = next((node for node in widget.ancestors if isinstance(node, TabPane)), None)
        if pane is None:
            return False
        tabs = next((node for node in pane.ancestors if isinstance(node, TabbedContent)), None)
        return tabs is not None and tabs.active != pane.id

    @property
    def activity(self) -> "ActivityPane":
        return self.query_one("#activity-pane")  # type: ignore[return-value]

    @property
    def chat(self) -> "ChatPane":
        return self.query_one("#chat-pane")  # type: ignore[return-value]

    @property
    def params_form(self) -> "ParametersForm":
        return self.query_one("#params")  # type: ignore[return-value]

    def show_tab(self, tab: str) -> None:
        tabs = self.query_one(TabbedContent)
        if tabs.active == tab:
            return
        pane = self.query_one(f"TabPane#{tab}", TabPane)
        focused = self.focused
        if focused is not None and pane not in focused.ancestors:
            # Hiding the old tab makes Textual hand focus to a sibling inside that hidden
            # tab, and TabbedContent then switches back to it (F8 from the chat did nothing).
            self.set_focus(None)
        tabs.active = tab
        self.call_after_refresh(self._focus_in_tab, pane)

    def _focus_in_tab(self, pane: TabPane) -> None:
        """Keys go to the tab just shown unless something there already has focus."""
        if self.app.screen is not self or (self.focused is not None and pane in self.focused.ancestors):
            return
        chain = [w for w in self.focus_chain if pane in w.ancestors]
        preferred = [w for w in chain if w.id in _TAB_FOCUS]
        if preferred or chain:
            (preferred or chain)[0].focus()

    def refresh_state(self) -> None:
        """Re-render everything that shows :class:`UIState` (cheap: a few Statics): each widget
        is given what it shows."""
        if not self._built or not self.query(StatusHeader):
            return  # not built yet, or closing (a late health answer)
        state = self.app.state
        self.query_one(StatusHeader).show(state)
        self.query_one(AzurePane).show(state)
        if self.query("#endpoint-view"):
            from ..widgets.endpoint_view import endpoint_target

            view: Any = self.query_one("#endpoint-view")
            view.target = endpoint_target(self.app.session, state)
        self.app.refresh_bindings()

    # -- commands: keys and palette come here as actions ------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.app.screen.is_modal:
            return False  # a dialog or the palette is open over this screen: its own keys win
        if action == "cancel":
            return bool(self.app.state.running)  # Esc belongs to the focused widget otherwise
        command = by_screen_action(action)
        if command is not None and command.tab_key:
            # A key kept for one tab (End on Activity) belongs to the focused widget elsewhere.
            return self.query_one(TabbedContent).active in command.tabs
        return True

    def refuse(self, command: CommandDef) -> bool:
        """Says why ``command`` cannot run yet (True), or nothing (False: it can)."""
        reason = self.app.state.why_not(command.id)
        if reason:
            self.app.notify(f"Not yet: {reason}.", title=command.title, severity="warning", timeout=6)
        return bool(reason)

    def palette_entries(self) -> list[tuple[CommandDef, str, Callable[[], Any]]]:
        """The palette's entries: (command, its help or why it cannot run yet, what runs it)."""
        entries = []
        for c in COMMANDS:
            if not c.palette:
                continue
            reason = self.app.state.why_not(c.id)
            keys = key_display(self.app, c.id)
            help_text = f"Not yet: {reason}." if reason else f"{c.help}" + (f"  [{keys}]" if keys else "")
            entries.append((c, help_text, partial(self.run_from_palette, c)))
        return entries

    async def run_from_palette(self, command: CommandDef) -> None:
        """A palette entry runs its command's action; one kept for a tab's key shows that tab first."""
        if self.refuse(command):
            return
        if command.tab_key and command.tabs:
            self.show_tab(command.tabs[0])
        await self.app.run_action(command.runs, self, namespaces={"screen": self})

    @on(AzurePane.StepChosen)
    async def _run_step(self, event: AzurePane.StepChosen) -> None:
        command = COMMANDS_BY_ID.get(event.command_id)
        if command is not None:
            await self.run_from_palette(command)

    @command
    def action_sign_in(self) -> None:
        self.start_operation("sign_in", "Sign in", lambda: self.app.session.sign_in())

    @command
    def action_select_subscription(self) -> None:
        from .picker import PickerItem, PickerScreen

        app, state = self.app, self.app.state

        async def load() -> list[PickerItem]:
            subs = await app.session.list_subscriptions()
            return [PickerItem(s.id, s.name, f"{s.id} · {s.state}", s) for s in subs]

        def chosen(item: PickerItem | None) -> None:
            if item is None:
                return
            if item.id != state.subscription_id:
                state.resource_group = None
                state.location = None
            state.subscription_id, state.subscription_name = item.id, item.title
            app.remember()
            self.refresh_state()
            app.notify(f"Subscription {item.title} selected. Next: select a resource group (F4).", timeout=4)

        app.push_screen(PickerScreen("Select subscription", load, current=state.subscription_id,
                                     id="subscription-picker"), chosen)

    @command
    def action_select_group(self) -> None:
        from .picker import PickerItem, PickerScreen

        app, state = self.app, self.app.state
        subscription = state.subscription_id

        async def load() -> list[PickerItem]:
            groups = await app.session.list_resource_groups(subscription)
            return [PickerItem(g.name, g.name, g.location, g) for g in groups]

        async def chosen(item: PickerItem | None) -> None:
            if item is None:
                return
            if item.id == "__create__":
                await self.action_create_group()
                return
            state.resource_group, state.location = item.id, getattr(item.value, "location", None)
            app.remember()
            self.refresh_state()
            app.notify(f"Resource group {item.id} selected.", timeout=4)

        create = PickerItem("__create__", "+ Create resource group…", "a new group in this subscription")
        app.push_screen(PickerScreen("Select resource group", load, current=state.resource_group,
                                     extra=[create], id="group-picker"), chosen)

    @command
    def action_create_group(self) -> None:
        from .create_group import CreateGroupScreen

        app, state = self.app, self.app.state
        subscription = state.subscription_id

        async def create(name: str, location: str) -> Any:
            return await app.session.create_resource_group(subscription, name, location)

        def created(group: Any) -> None:
            if group is None:
                return
            state.resource_group, state.location = group.name, group.location
            app.remember()
            self.refresh_state()
            app.notify(f"Resource group {group.name} created in {group.location} and selected.", timeout=5)

        app.push_screen(CreateGroupScreen(state.subscription_name or subscription, create,
                                          default_location=state.location), created)

    @command
    async def action_edit_parameters(self) -> None:
        form = await self.ensure_pane("parameters")
        self.show_tab("parameters")
        if form.broken is None:
            form.scroll_home(animate=False)
            self.call_after_refresh(form.editor("defaultCommands").focus, False)

    def _load_params(self) -> ParametersDocument | None:
        try:
            return ParametersDocument.load(self.app.project.parameters_path)
        except AitkError as e:
            self.app.notify(e.message, severity="error")
            return None

    @command
    def action_what_if(self) -> None:
        params = self._load_params()
        if params is not None:
            self.provision_after_what_if = None
            session, state = self.app.session, self.app.state
            sub, group = state.subscription_id, state.resource_group
            self.start_operation("what_if", "Preview provisioning", lambda: session.what_if(sub, group, params))

    @command
    def action_provision(self) -> None:
        """The what-if first; its summary asks for Enter before anything is deployed (as the CLI asks)."""
        params = self._load_params()
        if params is not None:
            session, state = self.app.session, self.app.state
            sub, group = state.subscription_id, state.resource_group
            self.provision_after_what_if = (sub, group, params)
            self.start_operation("what_if", "Preview provisioning", lambda: session.what_if(sub, group, params))

    def confirm_provision(self, what_if: "WhatIf") -> None:
        """After the what-if of F5: the summary in a dialog; Enter provisions, Esc changes nothing."""
        pending, self.provision_after_what_if = self.provision_after_what_if, None
        if pending is None:
            return
        from .confirm_provision import ConfirmProvisionScreen

        app = self.app
        sub, group, params = pending

        def answered(yes: bool | None) -> None:
            if not yes:
                self.activity.log_pane.write_lines(["Provisioning cancelled: nothing was changed."])
                return
            reason = app.state.why_not("provision")
            if reason:
                app.notify(f"Not yet: {reason}.", title="Provision", severity="warning", timeout=6)
                return
            self.start_operation("provision", "Provision", lambda: app.session.provision(sub, group, params))

        app.push_screen(ConfirmProvisionScreen(what_if.changes, resource_group=group,
                                               subscription=app.state.subscription_name or sub,
                                               estimated=what_if.estimated,
                                               cost=self._cost_estimate(params)), answered)

    def _cost_estimate(self, params: ParametersDocument) -> Any:
        """The app's cost estimate for the provision dialog (None: no template, or a GPU profile
        the price table does not know; the dialog then shows none rather than a wrong figure)."""
        from ...cloud.prices import estimate_for_project

        return estimate_for_project(params.values(), self.app.project.template_path)

    @command
    def action_deploy(self) -> None:
        session, config = self.app.session, self.app.state.config
        self.start_operation("deploy", "Deploy", lambda: session.deploy(config))

    @command
    def action_keep_warm(self) -> None:
        self._scale_min(1, "Keep warm")

    @command
    def action_let_sleep(self) -> None:
        self._scale_min(0, "Let it sleep")

    def _scale_min(self, replicas: int, title: str) -> None:
        from ...cloud.operate import ScaleRequest

        session, config, request = self.app.session, self.app.state.config, ScaleRequest(min_replicas=replicas)
        self.start_operation("scale", title, lambda: session.scale(config, request))

    @command
    def action_upload_models(self) -> None:
        from .upload_models import UploadModelsScreen

        session, config = self.app.session, self.app.state.config

        def chosen(request: Any) -> None:
            if request is None:
                return
            reason = self.app.state.why_not("upload_models")
            if reason:
                self.app.notify(f"Not yet: {reason}.", title="Upload", severity="warning", timeout=6)
                return
            self.start_operation("upload_models", "Upload model/adapter",
                                 lambda: session.upload_models(config, request))

        self.app.push_screen(UploadModelsScreen(config.FILE_SHARE_NAME or ""), chosen)

    @command
    def action_teardown(self) -> None:
        self._teardown(everything=False)

    @command
    def action_teardown_all(self) -> None:
        self._teardown(everything=True)

    def _teardown(self, everything: bool) -> None:
        """What would be deleted first (everything: read from the provisioning deployment), then
        the question (typed for everything, as ``aitk down --all`` asks); the deletion then runs
        as an operation whose progress goes to the Activity tab."""
        app, config = self.app, self.app.state.config
        command_id = "teardown_all" if everything else "teardown"
        title = "Tear down everything" if everything else "Tear down"

        async def ask() -> None:
            from .typed_confirm import ConfirmTeardownScreen

            try:
                plan = await app.session.teardown_plan(config, everything=everything)
            except Exception as e:  # noqa: BLE001 - one sentence for the user
                message, detail = describe_failure(e)
                app.notify(f"{message}{f' ({detail})' if detail else ''}", title=title, severity="error", timeout=10)
                return

            def answered(yes: bool | None) -> None:
                if not yes:
                    app.notify("Nothing was deleted.", title=title, timeout=4)
                    return
                reason = app.state.why_not(command_id)
                if reason:
                    app.notify(f"Not yet: {reason}.", title=title, severity="warning", timeout=6)
                    return
                self.start_operation("teardown", title, lambda: app.session.tear_down(config, plan))

            app.push_screen(ConfirmTeardownScreen(plan, typed=plan.resource_group if everything else None), answered)

        self.run_worker(ask(), group="teardown-plan", exclusive=True, exit_on_error=False)

    @command
    def action_replica_logs(self) -> None:
        session, config = self.app.session, self.app.state.config
        self.start_operation("replica_logs", "Replica logs", lambda: session.replica_logs(config, follow=True))

    @command
    async def action_go_to_endpoint(self) -> None:
        app, config = self.app, self.app.state.config
        assert config is not None and config.endpoint_url
        chat = await self.ensure_pane("chat")
        self.show_tab("chat")
        typed = chat.endpoint_url()
        if typed and typed.rstrip("/") != config.endpoint_url.rstrip("/"):
            # A URL typed under Settings is the user's choice: say it was replaced, and by what.
            app.notify(f"The chat now sends to the app's endpoint {config.endpoint_url} (it was set to {typed}; "
                       "type that under Settings to go back).", title="Endpoint", timeout=8)
        chat.set_endpoint(config.endpoint_url, None)
        if not config.missing(*APP_KEYS) and app.session:
            self.fetch_api_key(config)
        self.call_after_refresh(chat.query_one("#prompt").focus)

    @command
    def action_open_config(self) -> None:
        from .config_viewer import ConfigScreen

        def closed(saved: bool | None) -> None:
            if saved:
                self.app.reload_config()

        self.app.push_screen(ConfigScreen(self.app.project.config_path), closed)

    @command
    def action_show_activity(self) -> None:
        self.show_tab("activity")

    @command
    async def action_toggle_activity_probes(self) -> None:
        activity = await self.ensure_pane("activity")
        self.show_tab("activity")
        shown = activity.toggle_probes()
        self.app.notify(f"Health-probe lines {'shown' if shown else 'hidden'}.", timeout=3)

    @command
    def action_follow_activity(self) -> None:
        self.activity.log_pane.follow()

    @command
    def action_show_azure(self) -> None:
        self.show_tab("azure")

    @command
    async def action_show_endpoint(self) -> None:
        await self.ensure_pane("endpoint")
        self.show_tab("endpoint")

    @command
    async def action_toggle_endpoint_log(self) -> None:
        view = await self.ensure_pane("endpoint")
        self.show_tab("endpoint")
        kind = view.toggle_log_kind()
        self.app.notify(f"Endpoint log: {kind}.", timeout=3)

    @command
    async def action_toggle_endpoint_probes(self) -> None:
        view = await self.ensure_pane("endpoint")
        shown = view.toggle_probes()
        self.app.notify(f"Health-probe lines {'shown' if shown else 'hidden'}.", timeout=3)

    @command
    async def action_toggle_endpoint_raw(self) -> None:
        view = await self.ensure_pane("endpoint")
        raw = view.toggle_raw()
        self.app.notify(f"Log lines {'as sent (raw)' if raw else 'as time, level and message'} from here on.",
                        timeout=3)

    @command
    def action_refresh_status(self) -> None:
        self.app.reload_config()
        self.check_health()
        for view in self.query("#endpoint-view"):  # shown: read it now, not at the next tick
            view.refresh_now()  # type: ignore[attr-defined]

    @command
    def action_copy_endpoint(self) -> None:
        config = self.app.state.config
        url = config.endpoint_url if config else None
        if url:
            self.app.copy_to_clipboard(url)
            self.app.notify(f"Copied {url}", timeout=3)

    @command
    def action_copy_answer(self) -> None:
        if not self.query("#chat-pane") or not self.chat.last_answer:
            self.app.notify("No answer to copy yet.", severity="warning")
            return
        self.app.copy_to_clipboard(self.chat.last_answer)
        self.app.notify("Last answer copied.", timeout=3)

    def _save_file(self, folder: str, stem: str, suffix: str, text: str) -> Path | None:
        app = self.app
        path = app.project.state_dir / folder / f"{stem}-{app.clock():%Y%m%d-%H%M%S}{suffix}"
        from ...errors import redact

        try:  # a key pasted into the chat (or echoed by a model) must not land in a file
            atomic_write_text(path, redact(text))
        except OSError as e:
            app.notify(f"Could not write {path}: {e}", severity="error")
            return None
        app.notify(f"Saved {path}", timeout=5)
        return path

    @command
    def action_save_activity(self) -> None:
        self.activity.flush()
        self._save_file("logs", "activity", ".log", self.activity.save_text())

    @command
    async def action_new_chat(self) -> None:
        chat = await self.ensure_pane("chat")
        self.show_tab("chat")
        await chat.new_conversation()

    @command
    def action_save_chat(self) -> None:
        if not self.query("#chat-pane") or not self.chat.turns:
            self.app.notify("Nothing to save yet: the conversation is empty.", severity="warning")
            return
        self._save_file("chats", "chat", ".md", self.chat.transcript_markdown())

    @command
    async def action_save_parameters(self) -> None:
        form = await self.ensure_pane("parameters")
        self.show_tab("parameters")
        form.save()

    @command
    async def action_revert_parameters(self) -> None:
        form = await self.ensure_pane("parameters")
        self.show_tab("parameters")
        form.action_revert()

    @command
    def action_cancel(self) -> None:
        self.cancel_operation()

    # -- the demo surface: compare, copy the key or a snippet (OSC 52), open the chat page ------
    @command
    async def action_choose_model(self) -> None:
        from .picker import PickerItem, PickerScreen

        chat = await self.ensure_pane("chat")
        self.show_tab("chat")

        async def load() -> list[PickerItem]:
            return [PickerItem(m, m) for m in await chat.endpoint_models()]

        def chosen(item: PickerItem | None) -> None:
            if item is None:
                return
            chat.set_model(None if item.id == DEFAULT_MODEL else item.id)
            self.app.notify(f"The chat now talks to {item.title}.", timeout=4)

        default = PickerItem(DEFAULT_MODEL, "The endpoint's default", "its adapter, or its only model")
        self.app.push_screen(PickerScreen("Chat with which model?", load, current=chat.model, extra=[default],
                                          id="model-picker"), chosen)

    @command
    async def action_compare_models(self) -> None:
        """Pick two of the endpoint's models, then the compare screen (with the chat's settings)."""
        from ..widgets.compare import CompareScreen, NotEnoughModels
        from .picker import PickerItem, PickerScreen

        app = self.app
        chat = await self.ensure_pane("chat")
        problem = chat.endpoint_problem()
        if problem:
            app.notify(problem, severity="warning")
            return
        url, key = chat.endpoint_url(), chat.api_key()
        temperature, max_tokens = chat.sampling()
        settings = {"temperature": temperature, "max_tokens": max_tokens, "system": chat.system_messages()}

        def make_client() -> Any:
            return chat.make_client(url, key)

        async def load(exclude: str | None = None) -> list[PickerItem]:
            models = await chat.endpoint_models()
            if len(models) < 2:
                raise NotEnoughModels("The endpoint serves only one model, so there is nothing to compare.",
                                      "serve the base beside the adapter (--serve-base) or several --adapter NAME=PATH")
            return [PickerItem(m, m) for m in models if m != exclude]

        def first(item: PickerItem | None) -> None:
            if item is None:
                return

            def second(other: PickerItem | None) -> None:
                if other is not None:
                    app.push_screen(CompareScreen((item.id, other.id), make_client, settings, url,
                                                  platform_check=app.chat_platform_check))

            app.push_screen(PickerScreen(f"Compare {item.id} with…", lambda: load(item.id), id="compare-picker-b"),
                            second)

        app.push_screen(PickerScreen("Compare models: the first", load, id="compare-picker-a"), first)

    @command
    def action_copy_api_key(self) -> None:
        self._copy_demo("key")

    @command
    def action_copy_snippet_curl(self) -> None:
        self._copy_demo("curl")

    @command
    def action_copy_snippet_python(self) -> None:
        self._copy_demo("python")

    @command
    def action_copy_snippet_js(self) -> None:
        self._copy_demo("js")

    @command
    def action_open_in_browser(self) -> None:
        app = self.app
        url = app.state.config.endpoint_url.removesuffix("/v1") + "/"
        if browser_available():
            import webbrowser

            try:
                opened = webbrowser.open(url, new=2)
            except Exception:  # noqa: BLE001 - a broken browser setting: fall back to the URL
                opened = False
            if opened:
                app.notify(f"Opened {url} (the page asks for the API key: Copy API key)", timeout=6)
                return
        # Over ssh no browser opens here: the URL goes where the user can click or copy it.
        self.log_line(f"Chat page: {url}")
        app.notify(f"No browser here: open {url} on your machine (Copy API key for its key).", timeout=12)

    def log_line(self, text: str) -> None:
        activity = self.query("#activity-pane")
        if activity:
            activity.first().log_pane.write_lines([text])  # type: ignore[attr-defined]

    @work(group="demo-copy", exclusive=True, exit_on_error=False)
    async def _copy_demo(self, what: str) -> None:
        """The key is never shown: it goes to the clipboard only, and a failure names the problem."""
        from ...chat.client import ChatClient, ChatError
        from ...chat.keys import is_loopback
        from ...snippets import key_command, snippet

        app = self.app
        config = app.state.config
        url = config.endpoint_url
        try:
            key = await app.session.api_key(config)
            if what == "key":
                app.copy_to_clipboard(key)
                app.notify("API key copied to the clipboard.", timeout=4)
                return
            verify: Any = app.chat_verify(url)
            async with ChatClient(url, key, verify=verify, allow_insecure_http=is_loopback(url)) as client:
                model = await client.default_model()
            text = snippet(what, url, model, set_key=key_command(local=app.local),
                           ca_bundle=verify if isinstance(verify, str) else None)
        except (AitkError, ChatError, ValueError) as e:
            detail = getattr(e, "detail", None)
            message = getattr(e, "message", None) or str(e)
            app.notify(message + (f"\n{detail}" if detail else ""), title="Copy", severity="error", timeout=10)
            return
        app.copy_to_clipboard(text)
        app.notify(f"{what} snippet copied (it reads the key from $AITK_API_KEY).", timeout=5)

    # -- health --------------------------------------------------------------------
    @work(exclusive=True, group="health", exit_on_error=False)
    async def check_health(self, quiet: bool = False) -> None:
        session, config = self.app.session, self.app.state.config
        if session is None or config is None or self.app.state.config_is_local_cloud:
            return  # (the local cloud's endpoint is not this session's to ask)
        if not quiet:  # the periodic refresh keeps the last answer on screen meanwhile
            self.post_message(HealthChecked("checking"))
        try:
            status = await session.status(config)
        except AitkError as e:
            self.post_message(HealthChecked("unreachable", e.message))
            return
        self.post_message(HealthChecked(health_from_status(status), gpu_billing=await keeps_warm(session, config)))

    def refresh_health_quietly(self) -> None:
        """The header's periodic refresh: one ARM read and, only while a replica runs, one
        GET /health (a scaled-to-zero app is never woken). Skipped during an operation (a
        deploy probes health itself) and while the previous check is still out."""
        state = self.app.state
        if self.app.session is None or state.running:
            return
        if state.config_missing("ACA_APP_ENDPOINT", "ACA_APP_NAME", "RESOURCE_GROUP_NAME"):
            return
        if any(w.group == "health" and not w.is_finished for w in self.workers):
            return
        self.check_health(quiet=True)

    def on_health_checked(self, event: HealthChecked) -> None:
        state = self.app.state
        state.health = event.health
        if event.gpu_billing is not None:
            state.gpu_billing = event.gpu_billing
        self.refresh_state()

    # -- long operations -------------------------------------------------------------
    def start_operation(self, op: str, title: str, make_events: Callable[[], AsyncIterator[Any]]) -> None:
        self.app.state.running = title  # set now, so a second key press is refused at once
        self.refresh_state()
        self._run_operation(op, title, make_events)

    @work(exclusive=True, group=OPERATION_GROUP, exit_on_error=False)
    async def _run_operation(self, op: str, title: str, make_events: Callable[[], AsyncIterator[Any]]) -> None:
        self.post_message(OperationStarted(op, title))
        outcome, last = "done", None
        try:
            async with aclosing(make_events()) as events:
                async for event in events:
                    self.post_message(OperationProgressed(op, event))
                    if isinstance(event, Failed):
                        outcome, last = "failed", event
                    elif isinstance(event, Done):
                        outcome, last = "done", event
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception as e:  # noqa: BLE001 - one sentence for the user, detail kept
            message, detail = describe_failure(e)
            outcome, last = "failed", Failed(message, detail)
        finally:
            self.post_message(OperationEnded(op, title, outcome, last))

    async def on_operation_started(self, event: OperationStarted) -> None:
        await self.ensure_pane("activity")
        self.activity.begin(event.op, event.title)
        if event.op != "sign_in":
            self.show_tab("activity")

    def on_operation_progressed(self, event: OperationProgressed) -> None:
        ev, state = event.event, self.app.state
        self.activity.feed(ev)
        if isinstance(ev, HealthWait):
            health = {"ok": "healthy", "loading": "waking"}.get(ev.status, "waking")
            if health != state.health:
                state.health = health
                self.refresh_state()
        elif isinstance(ev, Info) and event.op == "sign_in":
            # Device-code instructions must be seen wherever the user is.
            self.app.notify(ev.message, title="Sign in", timeout=30)

    def on_operation_ended(self, event: OperationEnded) -> None:
        self.activity.end(event.title, event.outcome, event.event)
        if event.op == "what_if" and event.outcome != "done":
            self.provision_after_what_if = None  # F5's preview failed or was cancelled: no dialog
        self.app.state.running = None
        ev = event.event
        if event.outcome == "failed":
            message = ev.message if isinstance(ev, Failed) else "failed"
            self.app.notify(message, title=f"{event.title} failed", severity="error", timeout=8)
        elif event.outcome == "cancelled":
            self.app.notify(f"{event.title} cancelled.", timeout=4)
        elif isinstance(ev, Done):
            self._operation_done(event.op, ev)
        self.refresh_state()

    def _operation_done(self, op: str, done: Done) -> None:
        from ...cloud.models import Deployed, SignedIn, WhatIf
        from ...cloud.operate import Scaled

        state, result = self.app.state, done.result
        if op == "sign_in" and isinstance(result, SignedIn):
            state.identity = result.identity
            state.signin_error = None
        elif op == "what_if" and isinstance(result, WhatIf):
            self.activity.show_changes(result.changes)
            if self.provision_after_what_if is not None:  # F5: the dialog shows the summary instead
                self.confirm_provision(result)
                return
        elif op == "provision":
            self.app.reload_config()
            self.check_health()
        elif op == "upload_models" and self.query("#params") and not self.params_form.dirty():
            self.params_form.revert()  # the upload changed the file: show what it holds now
        elif op == "teardown":
            self.check_health()
        elif op == "scale" and isinstance(result, Scaled):
            state.gpu_billing = result.after.keeps_warm
        elif op == "deploy":
            if isinstance(result, Deployed) and result.healthy:
                # The deploy's own probe just said so. Asking again at once would read the
                # platform's health state for a min-0 app (never a probe: that is traffic),
                # which may not have caught up yet and would say "unknown"; the periodic
                # refresh reads it later.
                state.health = "healthy"
            else:  # not waited for (None), or not a typed result
                self.check_health()
        self.app.notify(done.summary, title="Done", timeout=5)

    def cancel_operation(self) -> None:
        self.workers.cancel_group(self, OPERATION_GROUP)

    # -- chat endpoint ----------------------------------------------------------------
    @work(exclusive=True, group="api-key", exit_on_error=False)
    async def fetch_api_key(self, config: InferenceConfig) -> None:
        url, session = config.endpoint_url or "", self.app.session
        if session is None:
            self.post_message(ApiKeyFetched(url, None, "the cloud session is not ready"))
            return
        try:
            key = await session.api_key(config)
        except AitkError as e:
            self.post_message(ApiKeyFetched(url, None, e.message))
            return
        self.post_message(ApiKeyFetched(url, key))

    def on_api_key_fetched(self, event: ApiKeyFetched) -> None:
        if event.api_key is None:
            self.app.notify(f"Could not read the app's API key: {event.reason}. Type it under Settings.",
                            severity="warning", timeout=8)
            return
        self.chat.set_endpoint(event.endpoint, event.api_key)

    # -- the one place this screen's worker failures become a notification ----------------
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            message, detail = describe_failure(event.worker.error)
            self.app.notify(message + (f"\n{detail}" if detail else ""), severity="error", timeout=10)
            if event.worker.group == OPERATION_GROUP:
                self.app.state.running = None
                self.refresh_state()
