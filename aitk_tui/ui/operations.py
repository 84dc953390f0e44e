"""Workers that talk to the session (a :class:`~aitk_tui.backend.Backend`) and the handlers
that turn results into UI.

Workers compute and post messages (:mod:`aitk_tui.ui.messages`); ``@on`` handlers
mutate widgets. Long operations (sign-in, what-if, provision, deploy, replica logs) are
async generators of events run by one exclusive worker group, so Esc cancels exactly
the running one; cancelling closes the generator (``aclosing``), which is how the
back-end knows to stop without leaving anything half-written.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

from textual import work
from textual.worker import Worker, WorkerState

from ..config.inference_config import InferenceConfig
from ..errors import AitkError, redact
from ..events import Done, Failed, HealthWait, Info
from .messages import (
    ApiKeyFetched,
    HealthChecked,
    IdentityKnown,
    OperationEnded,
    OperationProgressed,
    OperationStarted,
    SessionFailed,
    SessionOpened,
)

if TYPE_CHECKING:
    from ..backend import Backend
    from .app import AitkApp

OPERATION_GROUP = "operation"


async def default_session_factory(project, **kwargs) -> Backend:
    """:func:`aitk_tui.backend.open_session` (the SDK behind it is imported on first use)."""
    from ..backend import open_session

    return await open_session(project, **kwargs)


def describe_failure(error: BaseException) -> tuple[str, str | None]:
    if isinstance(error, AitkError):
        return error.message, error.detail
    return f"Something unexpected went wrong ({type(error).__name__}).", redact(str(error)[:500]) or None


async def _keeps_warm(session: Backend, config: InferenceConfig) -> bool | None:
    """Whether the app keeps a GPU replica on (min >= 1); None when it cannot be told."""
    try:
        info = await session.read_scale(config)
    except AitkError:
        return None
    return False if info is None else info.settings.keeps_warm


def health_from_status(status: Any) -> str:
    healthy = getattr(status, "healthy", None)
    replicas = getattr(status, "replicas", None)
    running = (getattr(status, "running_state", None) or "").lower()
    if getattr(status, "revision_failed", False):
        return "failed"  # ActivationFailed: no replica comes, so it is not asleep (and not "waking")
    if healthy:
        return "healthy"
    if (getattr(status, "revision_state", None) or "").lower() == "activating":
        return "waking"
    if replicas == 0 or running in ("stopped", "scaledtozero"):
        return "asleep"
    if healthy is False:
        return "unhealthy"
    if isinstance(replicas, int) and replicas > 0:
        return "waking"  # a replica runs but the platform has not judged it yet: it is starting
    return "unknown"


class OperationsMixin:
    """Mixed into :class:`~aitk_tui.ui.app.AitkApp`.

    Handlers use ``on_<message>`` names: ``@on`` is collected per Textual class, not
    from a plain mixin.
    """

    # -- session -------------------------------------------------------------------
    @work(exclusive=True, group="session", exit_on_error=False)
    async def open_session(self: "AitkApp") -> None:
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

    def on_session_opened(self: "AitkApp", event: SessionOpened) -> None:
        self.session = event.session
        self.state.session_ready = True
        self.state.session_error = None
        self.refresh_state()
        if not self.state.config_missing("ACA_APP_ENDPOINT", "ACA_APP_NAME", "RESOURCE_GROUP_NAME"):
            self.check_health()

    def on_session_failed(self: "AitkApp", event: SessionFailed) -> None:
        self.state.session_error = event.message
        self.notify(event.message + (f"\n{event.detail}" if event.detail else ""), title="Cloud session",
                    severity="error", timeout=10)
        self.refresh_state()

    def on_identity_known(self: "AitkApp", event: IdentityKnown) -> None:
        self.state.identity = event.identity
        self.state.signin_error = None if event.identity else (event.reason or "not signed in")
        self.refresh_state()

    # -- health --------------------------------------------------------------------
    @work(exclusive=True, group="health", exit_on_error=False)
    async def check_health(self: "AitkApp", quiet: bool = False) -> None:
        if self.session is None or self.state.config is None or self.state.config_is_local_cloud:
            return  # (the local cloud's endpoint is not this session's to ask)
        if not quiet:  # the periodic refresh keeps the last answer on screen meanwhile
            self.post_message(HealthChecked("checking"))
        try:
            status = await self.session.status(self.state.config)
        except AitkError as e:
            self.post_message(HealthChecked("unreachable", e.message))
            return
        self.post_message(HealthChecked(health_from_status(status), gpu_billing=await _keeps_warm(self.session,
                                                                                               self.state.config)))

    def refresh_health_quietly(self: "AitkApp") -> None:
        """The header's periodic refresh: one ARM read and, only while a replica runs, one
        GET /health (a scaled-to-zero app is never woken). Skipped during an operation (a
        deploy probes health itself) and while the previous check is still out."""
        if self.session is None or self.state.running:
            return
        if self.state.config_missing("ACA_APP_ENDPOINT", "ACA_APP_NAME", "RESOURCE_GROUP_NAME"):
            return
        if any(w.group == "health" and not w.is_finished for w in self.workers):
            return
        self.check_health(quiet=True)

    def on_endpoint_view_health_seen(self: "AitkApp", event: Any) -> None:
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

    def on_health_checked(self: "AitkApp", event: HealthChecked) -> None:
        self.state.health = event.health
        if event.gpu_billing is not None:
            self.state.gpu_billing = event.gpu_billing
        self.refresh_state()

    # -- long operations -------------------------------------------------------------
    def start_operation(self: "AitkApp", op: str, title: str,
                        make_events: Callable[[], AsyncIterator[Any]]) -> None:
        self.state.running = title  # set now, so a second key press is refused at once
        self.refresh_state()
        self._run_operation(op, title, make_events)

    @work(exclusive=True, group=OPERATION_GROUP, exit_on_error=False)
    async def _run_operation(self: "AitkApp", op: str, title: str,
                             make_events: Callable[[], AsyncIterator[Any]]) -> None:
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

    async def on_operation_started(self: "AitkApp", event: OperationStarted) -> None:
        await self.ensure_pane("activity")
        self.activity.begin(event.op, event.title)
        if event.op != "sign_in":
            self.show_tab("activity")

    def on_operation_progressed(self: "AitkApp", event: OperationProgressed) -> None:
        ev = event.event
        self.activity.feed(ev)
        if isinstance(ev, HealthWait):
            health = {"ok": "healthy", "loading": "waking"}.get(ev.status, "waking")
            if health != self.state.health:
                self.state.health = health
                self.refresh_state()
        elif isinstance(ev, Info) and event.op == "sign_in":
            # Device-code instructions must be seen wherever the user is.
            self.notify(ev.message, title="Sign in", timeout=30)

    def on_operation_ended(self: "AitkApp", event: OperationEnded) -> None:
        self.activity.end(event.title, event.outcome, event.event)
        if event.op == "what_if" and event.outcome != "done":
            self.provision_after_what_if = None  # F5's preview failed or was cancelled: no dialog
        self.state.running = None
        ev = event.event
        if event.outcome == "failed":
            message = ev.message if isinstance(ev, Failed) else "failed"
            self.notify(message, title=f"{event.title} failed", severity="error", timeout=8)
        elif event.outcome == "cancelled":
            self.notify(f"{event.title} cancelled.", timeout=4)
        elif isinstance(ev, Done):
            self._operation_done(event.op, ev)
        self.refresh_state()

    def _operation_done(self: "AitkApp", op: str, done: Done) -> None:
        from ..cloud.models import Deployed, SignedIn, WhatIf
        from ..cloud.operate import Scaled

        result = done.result
        if op == "sign_in" and isinstance(result, SignedIn):
            self.state.identity = result.identity
            self.state.signin_error = None
        elif op == "what_if" and isinstance(result, WhatIf):
            self.activity.show_changes(result.changes)
            if self.provision_after_what_if is not None:  # F5: the dialog shows the summary instead
                self.confirm_provision(result)
                return
        elif op == "provision":
            self.reload_config()
            self.check_health()
        elif op == "upload_models" and self.query("#params") and not self.params_form.dirty():
            self.params_form.revert()  # the upload changed the file: show what it holds now
        elif op == "teardown":
            self.check_health()
        elif op == "scale" and isinstance(result, Scaled):
            self.state.gpu_billing = result.after.keeps_warm
        elif op == "deploy":
            if isinstance(result, Deployed) and result.healthy:
                # The deploy's own probe just said so. Asking again at once would read the
                # platform's health state for a min-0 app (never a probe: that is traffic),
                # which may not have caught up yet and would say "unknown"; the periodic
                # refresh reads it later.
                self.state.health = "healthy"
            else:  # not waited for (None), or not a typed result
                self.check_health()
        self.notify(done.summary, title="Done", timeout=5)

    def cancel_operation(self: "AitkApp") -> None:
        self.workers.cancel_group(self, OPERATION_GROUP)

    # -- chat endpoint ----------------------------------------------------------------
    @work(exclusive=True, group="api-key", exit_on_error=False)
    async def fetch_api_key(self: "AitkApp", config: InferenceConfig) -> None:
        url = config.endpoint_url or ""
        if self.session is None:
            self.post_message(ApiKeyFetched(url, None, "the cloud session is not ready"))
            return
        try:
            key = await self.session.api_key(config)
        except AitkError as e:
            self.post_message(ApiKeyFetched(url, None, e.message))
            return
        self.post_message(ApiKeyFetched(url, key))

    def on_api_key_fetched(self: "AitkApp", event: ApiKeyFetched) -> None:
        if event.api_key is None:
            self.notify(f"Could not read the app's API key: {event.reason}. Type it under Settings.",
                        severity="warning", timeout=8)
            return
        self.chat.set_endpoint(event.endpoint, event.api_key)

    # -- the one place worker failures become a notification ----------------------------
    def on_worker_state_changed(self: "AitkApp", event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            message, detail = describe_failure(event.worker.error)
            self.notify(message + (f"\n{detail}" if detail else ""), severity="error", timeout=10)
            if event.worker.group == OPERATION_GROUP:
                self.state.running = None
                self.refresh_state()
