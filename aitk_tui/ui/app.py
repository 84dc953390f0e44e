"""The full-screen app: ``aitk`` with no arguments.

The shell (header, tabs Azure / Parameters / Activity / Endpoint / Chat, footer), the command
dispatch every palette entry and key goes through, and :func:`run` for the CLI.
:func:`create_app` is the factory tests use (fake or local sessions, fixed clock).
The app holds no Azure logic: it renders what the session (a :class:`~aitk_tui.backend.Backend`)
and the chat client yield.
"""

from __future__ import annotations

import inspect
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from textual.app import App, ComposeResult
from textual.binding import ActiveBinding
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, TabbedContent, TabPane

from ..config.inference_config import InferenceConfig
from ..config.parameters import ParametersDocument
from ..config.state import ProjectState
from ..errors import AitkError
from ..project import Project
from .command_handlers import CommandHandlersMixin
from .commands import COMMANDS_BY_ID, FKEY, AitkCommands, bindings_for
from .demo_commands import DemoCommandsMixin
from .operations import OperationsMixin, default_session_factory
from .settings import DEFAULT_THEME, UISettings
from .state import UIState
from .widgets.azure_pane import AzurePane
from .widgets.lazy_pane import LazyPane
from .widgets.status_header import StatusHeader

if TYPE_CHECKING:
    from ..backend import Backend
    from .widgets.activity import ActivityPane
    from .widgets.chat import ChatPane
    from .widgets.endpoint_view import EndpointView
    from .widgets.parameters_form import ParametersForm


# What takes the keys when a tab is shown from a command (F8, the palette...).
_TAB_FOCUS = {"steps", "log-view", "prompt"}


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


class MainScreen(Screen):
    """The default screen; its footer shows only the keys that matter on the active tab."""

    AUTO_FOCUS = "#steps"  # the Azure checklist: Enter runs the highlighted step

    @property
    def active_bindings(self) -> dict[str, ActiveBinding]:
        bindings = super().active_bindings
        app = self.app
        if not isinstance(app, AitkApp):
            return bindings
        return {key: active for key, active in bindings.items() if app.footer_shows(active.binding)}

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


class AitkApp(CommandHandlersMixin, DemoCommandsMixin, OperationsMixin, App[int]):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses elsewhere still find it
    TITLE = "aitk"
    BINDINGS = bindings_for("app")
    COMMANDS = {AitkCommands}  # ours first, then Textual's system commands
    COMMAND_PALETTE_BINDING = "ctrl+p"
    HEALTH_REFRESH_S = 20.0  # the header's endpoint health, refreshed while the app is open
    CONFIG_WATCH_S = 2.0  # how often infra/inference.config.json is looked at for edits from outside

    def __init__(self, project: Project, *, local: bool = False, auth: str = "auto",
                 model_path: Path | None = None, adapter_path: Path | None = None,
                 session_factory: Callable[..., Awaitable[Backend]] | None = None,
                 chat_client_factory: Callable[..., Any] | None = None,
                 settings: UISettings | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        super().__init__()
        self.project = project
        self.local = local
        self.auth = auth
        self.model_path = model_path
        self.adapter_path = adapter_path
        self.session_factory = session_factory or default_session_factory
        self.chat_client_factory = chat_client_factory
        self.settings = settings or UISettings.load()
        self.clock = clock or datetime.now
        self.session: Backend | None = None
        self.provision_after_what_if: tuple[str, str, Any] | None = None  # F5 waits for its what-if
        self.state = UIState(local=local)
        self.animation_level = "full" if self.settings.animations else "none"
        self._keymap = self._normalize_keymap(dict(self.settings.keymap))
        remembered = ProjectState.load(project.state_path)
        self.state.subscription_id = remembered.subscription_id
        self.state.subscription_name = remembered.subscription_name
        self.state.resource_group = remembered.resource_group
        self.state.location = remembered.location
        self.reload_config(refresh=False)
        self._check_params_file()

    # -- layout --------------------------------------------------------------------
    def get_default_screen(self) -> Screen:
        return MainScreen(id="_default")

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
        from .widgets.parameters_form import ParametersForm

        return ParametersForm(self.project.parameters_path, id="params",
                              display_path="infra/provision/inference.parameters.json")

    def _make_activity(self) -> "ActivityPane":
        from .widgets.activity import ActivityPane

        return ActivityPane(clock=self.clock, id="activity-pane")

    def _make_endpoint(self) -> "EndpointView":
        from .widgets.endpoint_view import EndpointView

        return EndpointView(clock=self.clock, id="endpoint-view")

    def _make_chat(self) -> "ChatPane":
        from .widgets.chat import ChatPane

        return ChatPane(client_factory=self.chat_client_factory, verify_for=self.chat_verify,
                        replica_logs=self.chat_replica_logs, platform_check=self.chat_platform_check, id="chat-pane")

    def on_mount(self) -> None:
        theme = self.settings.theme
        if theme not in self.available_themes:
            self.notify(f"Theme “{theme}” is not installed; using {DEFAULT_THEME}.", severity="warning")
            theme = DEFAULT_THEME
        self.theme = theme
        if self.settings.load_error:
            self.notify(f"Settings file ignored: {self.settings.load_error}", severity="warning", timeout=10)
        self.refresh_state()
        self.open_session()
        self.set_interval(self.HEALTH_REFRESH_S, self.refresh_health_quietly)
        self.set_interval(self.CONFIG_WATCH_S, self._watch_config)

    async def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id:
            await self.ensure_pane(event.pane.id)
        for view in self.query("#endpoint-view"):  # reads the app only while it is shown
            view.set_active(event.pane.id == "endpoint")  # type: ignore[attr-defined]
        self.refresh_bindings()

    async def ensure_pane(self, tab: str) -> Any:
        """The tab's content widget, built now if it has not been yet."""
        pane = self.query_one(f"TabPane#{tab}", TabPane)
        for lazy in pane.query_children(LazyPane):
            return await lazy.build()
        return pane.children[0] if pane.children else None

    def footer_shows(self, binding) -> bool:
        command = COMMANDS_BY_ID.get(binding.id or "")
        if command is None or command.scope != "app" or not command.tabs:
            return True
        return self.query_one(TabbedContent).active in command.tabs

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
        if self.screen.is_modal or (self.focused is not None and pane in self.focused.ancestors):
            return
        chain = [w for w in self.screen.focus_chain if pane in w.ancestors]
        preferred = [w for w in chain if w.id in _TAB_FOCUS]
        if preferred or chain:
            (preferred or chain)[0].focus()

    def refresh_state(self) -> None:
        """Re-render everything that depends on :class:`UIState` (cheap: a few Statics)."""
        if not self.is_mounted or not self.query(StatusHeader):
            return  # not built yet, or closing (a late health answer)
        self.query_one(StatusHeader).show(self.state)
        self.query_one(AzurePane).show(self.state)
        self.refresh_bindings()

    def _config_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.project.config_path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _watch_config(self) -> None:
        """A config edited while the app runs (fixed by hand, or broken) is read again: a fixed
        one was never picked up, a broken one went unnoticed until the next command failed."""
        if self._config_stamp() == self._config_seen:
            return
        was_error = self.state.config_error
        self.reload_config()
        if self.state.config_error and self.state.config_error != was_error:
            self.notify(f"{self.state.config_error} Fix it, and aitk reads it again.", title="Config changed",
                        severity="warning", timeout=8)
        elif was_error and not self.state.config_error:
            self.notify("infra/inference.config.json reads correctly again.", title="Config changed", timeout=4)

    def reload_config(self, refresh: bool = True) -> None:
        self._config_seen = self._config_stamp()
        try:
            self.state.config = InferenceConfig.load(self.project.config_path)
            self.state.config_error = None
        except AitkError as e:
            self.state.config = None
            missing = not self.project.config_path.exists()
            self.state.config_error = None if missing else e.message
        if refresh:
            self.refresh_state()

    def _check_params_file(self) -> None:
        """What provisioning needs to know before the form is ever built (it updates it later)."""
        try:
            errors = ParametersDocument.load(self.project.parameters_path).errors()
        except AitkError as e:
            self.state.params_error = e.message
            return
        self.state.params_error = None
        self.state.params_invalid = next((f"{k}: {v}" for k, v in errors.items()), None)

    def chat_replica_logs(self, url: str) -> Callable[[], Any] | None:
        """The replica log of the app whose endpoint ``url`` is (for the chat's waking line)."""
        config, session = self.state.config, self.session
        if session is None or config is None or not config.ACA_APP_NAME or url != config.endpoint_url:
            return None
        return lambda: session.replica_logs(config, tail_lines=5)

    def chat_platform_check(self, url: str) -> Callable[[], Any] | None:
        """For the chat's wake path: asks whether the app's revision failed (the app's own endpoint only)."""
        config, session = self.state.config, self.session
        if session is None or config is None or not config.ACA_APP_NAME or url != config.endpoint_url:
            return None
        return lambda: session.revision_failure(config)

    def chat_verify(self, url: str) -> str | bool:
        """The local cloud's CA for its own loopback endpoints; the system's trust store otherwise."""
        return True if self.session is None else self.session.endpoints.trust_for(url)

    def remember(self) -> None:
        try:
            ProjectState.update(self.project.state_path, subscription_id=self.state.subscription_id,
                                subscription_name=self.state.subscription_name,
                                resource_group=self.state.resource_group, location=self.state.location)
        except OSError as e:
            self.notify(f"Could not remember the choice: {e}", severity="warning")

    def on_parameters_form_state_changed(self, event: "ParametersForm.StateChanged") -> None:
        self.state.params_dirty = event.dirty
        self.state.params_invalid = event.invalid
        self.state.params_error = event.broken
        self.refresh_state()

    def notify(self, message: str, *, title: str = "", severity: str = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Toasts are short (4 s, 6 s for a warning or error): they sat on dialogs and the prompt
        for up to 10 s. What must stay longer (a device code, 30 s) asks for more than 10 s.

        Always plain text, whatever ``markup`` says (``Widget.notify`` passes True): a toast
        quotes names from Azure, files and endpoints, and a model id like ``[/]base`` crashed
        the app while ``[@click=...]`` made a clickable action of it."""
        cap = 4.0 if severity == "information" else 6.0
        if timeout is None or timeout <= 10:
            timeout = min(timeout or cap, cap)
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)  # type: ignore[arg-type]

    async def action_quit(self) -> None:
        """ctrl+q (Textual's own binding) asks what F10 asks when parameters are unsaved."""
        self._cmd_quit()

    def action_help_quit(self) -> None:
        """ctrl+c: Textual's own hint, without its markup (toasts are plain text here)."""
        keys = [key for key, active in self.active_bindings.items() if active.binding.action in ("quit", "app.quit")]
        if keys:
            self.notify(f"Press {keys[0]} to quit the app", title="Do you want to quit?")

    def push_screen(self, screen, *args: Any, **kwargs: Any):
        if isinstance(screen, ModalScreen):
            self.clear_notifications()  # nothing sits on a dialog the user must read
        return super().push_screen(screen, *args, **kwargs)

    def get_key_display(self, binding) -> str:
        if FKEY.fullmatch(binding.key):
            return binding.key.upper()
        return super().get_key_display(binding)

    # -- commands: palette, keys and footer all come through here -------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cmd":
            if self.screen.is_modal:
                return False  # a dialog or the palette is open: its own keys win
            if parameters and parameters[0] == "cancel":
                return bool(self.state.running)
            command = COMMANDS_BY_ID.get(str(parameters[0])) if parameters else None
            if command is not None and command.tab_key:
                # A key kept for one tab (End on Activity) belongs to the focused widget elsewhere.
                return self.query_one(TabbedContent).active in command.tabs
        return True

    def action_cmd(self, command_id: str) -> None:
        self.run_command(command_id)

    def run_command(self, command_id: str) -> None:
        command = COMMANDS_BY_ID[command_id]
        reason = self.state.why_not(command_id)
        if reason:
            self.notify(f"Not yet: {reason}.", title=command.title, severity="warning", timeout=6)
            return
        handler = getattr(self, "_cmd_" + command_id.replace(".", "_"))
        result = handler()
        if inspect.isawaitable(result):  # it needs a pane built first
            self.call_next(lambda: result)

    async def on_unmount(self) -> None:
        if self.session is not None:
            try:
                await self.session.close()
            except Exception:  # noqa: BLE001 - leaving anyway
                pass


def create_app(project: Project, **kwargs: Any) -> AitkApp:
    """The app factory (tests pass ``session_factory``, ``clock``, ``settings``)."""
    return AitkApp(project, **kwargs)


def run(project: Project, *, local: bool = False, auth: str = "auto", model_path: Path | None = None,
        adapter_path: Path | None = None) -> int:
    """Run the TUI until the user quits; the exit status for the CLI."""
    app = create_app(project, local=local, auth=auth, model_path=model_path, adapter_path=adapter_path)
    result = app.run()
    return int(result or 0) if app.return_code in (None, 0) else int(app.return_code or 1)
