"""The full-screen app: ``aitk`` with no arguments.

:class:`AitkApp` holds what the whole app shares: the project, the cloud session (a
:class:`~aitk_tui.backend.Backend`, opened here), the :class:`UIState`, the settings and the
app-wide keys (help, palette, quit). Its default screen,
:class:`~aitk_tui.ui.screens.main.MainScreen`, shows the tabs and runs every command and cloud
operation. :func:`create_app` is the factory tests use (fake or local sessions, fixed clock);
:func:`run` runs it for the CLI. The app holds no Azure logic: it renders what the session
and the chat client yield.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from textual import work
from textual.app import App
from textual.command import CommandPalette
from textual.screen import ModalScreen
from textual.worker import Worker, WorkerState

from ..config.inference_config import InferenceConfig
from ..config.parameters import ParametersDocument
from ..config.state import ProjectState
from ..errors import AitkError
from ..project import Project
from .commands import FKEY, bindings_for
from .messages import IdentityKnown, SessionFailed, SessionOpened
from .operations import default_session_factory, describe_failure
from .screens.main import MainCommands, MainScreen
from .screens.palette import Palette
from .settings import DEFAULT_THEME, UISettings
from .state import UIState

if TYPE_CHECKING:
    from ..backend import Backend
    from .widgets.endpoint_view import EndpointView
    from .widgets.parameters_form import ParametersForm


class AitkApp(App[int]):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses elsewhere still find it
    TITLE = "aitk"
    BINDINGS = bindings_for("app")  # F1, F2, F10: on every screen but a dialog
    COMMANDS = {MainCommands}  # ours first, then Textual's system commands
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

    # -- layout ----------------------------------------------------------------------
    def get_default_screen(self) -> MainScreen:
        return MainScreen(id="_default")

    @property
    def main(self) -> MainScreen:
        """The main screen (under any dialog open on it)."""
        return self.screen_stack[0]  # type: ignore[return-value]

    @property
    def keymap(self) -> dict[str, str]:
        """The user's keymap (binding id -> keys), as ``tui.toml`` set it."""
        return dict(self._keymap)

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
        self.set_interval(self.CONFIG_WATCH_S, self._watch_config)

    def refresh_state(self) -> None:
        """Re-render everything that depends on :class:`UIState` (the main screen gives each
        widget what it shows)."""
        if self.screen_stack:
            self.main.refresh_state()

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

    # -- the app-wide keys: help, palette (Textual's own action), quit --------------------
    def action_help(self) -> None:
        from .screens.help import HelpScreen, focused_help

        self.push_screen(HelpScreen(focused_help(self)))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("help", "palette", "request_quit") and self.screen.is_modal:
            return False  # a dialog or the palette is open: its own keys win (ctrl+q still quits)
        return True

    def action_palette(self) -> None:
        self.action_command_palette()

    def action_command_palette(self) -> None:
        """Ours (:class:`~.screens.palette.Palette`: Enter waits for the search of what was typed)."""
        if self.use_command_palette and not CommandPalette.is_open(self):
            self.push_screen(Palette(id="--command-palette"))

    async def action_quit(self) -> None:
        """ctrl+q (Textual's own binding) asks what F10 asks when parameters are unsaved."""
        await self.action_request_quit()

    async def action_request_quit(self) -> None:
        """F10 (and the palette's Quit): with unsaved parameters, asks first."""
        from .screens.confirm_quit import ConfirmQuitScreen

        if not self.state.params_dirty:
            self.exit(0)
            return
        if isinstance(self.screen, ConfirmQuitScreen):  # F10 again on the question: stay on it
            return

        async def chosen(choice: str | None) -> None:
            if choice == "discard":
                self.exit(0)
            elif choice == "save":
                form = await self.main.ensure_pane("parameters")
                if form.save():
                    self.exit(0)
                else:
                    self.main.show_tab("parameters")  # the first bad field is focused, its error shown

        self.push_screen(ConfirmQuitScreen(), chosen)

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

    # -- the session ---------------------------------------------------------------------
    @work(exclusive=True, group="session", exit_on_error=False)
    async def open_session(self) -> None:
        kwargs = dict(local=self.local, auth=self.auth, model_path=self.model_path, adapter_path=self.adapter_path)
        try:
            session = await self.session_factory(self.project, **kwargs)
        except AitkError as e:
            self.post_message(SessionFailed(e.message, e.detail))
            return
        self.post_message(SessionOpened(session))
        try:
            identity = await session.whoami()
        except AitkError as e:
            self.post_message(IdentityKnown(None, e.message))
            return
        self.post_message(IdentityKnown(identity))

    def on_session_opened(self, event: SessionOpened) -> None:
        self.session = event.session
        self.state.session_ready = True
        self.state.session_error = None
        self.refresh_state()
        if not self.state.config_missing("ACA_APP_ENDPOINT", "ACA_APP_NAME", "RESOURCE_GROUP_NAME"):
            self.main.check_health()

    def on_session_failed(self, event: SessionFailed) -> None:
        self.state.session_error = event.message
        self.notify(event.message + (f"\n{event.detail}" if event.detail else ""), title="Cloud session",
                    severity="error", timeout=10)
        self.refresh_state()

    def on_identity_known(self, event: IdentityKnown) -> None:
        self.state.identity = event.identity
        self.state.signin_error = None if event.identity else (event.reason or "not signed in")
        self.refresh_state()

    def on_endpoint_view_health_seen(self, event: "EndpointView.HealthSeen") -> None:
        """The Endpoint tab's read is the header's too: it lagged it by a 20 s refresh."""
        if self.state.running:  # an operation (a deploy's probes) speaks for the health meanwhile
            return
        changed = event.health != self.state.health or (
            event.keeps_warm is not None and event.keeps_warm != self.state.gpu_billing)
        self.state.health = event.health
        if event.keeps_warm is not None:
            self.state.gpu_billing = event.keeps_warm
        if changed:
            self.refresh_state()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The app's own workers (the session's); the main screen reports its operations'."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            message, detail = describe_failure(event.worker.error)
            self.notify(message + (f"\n{detail}" if detail else ""), severity="error", timeout=10)

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
