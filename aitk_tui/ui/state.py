"""What the UI knows right now, and why a command cannot run yet.

Plain data, no Textual: the palette, the bindings and the footer all ask
:meth:`UIState.why_not` so they agree on what is possible and say the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config.inference_config import APP_KEYS, InferenceConfig


@dataclass
class UIState:
    local: bool = False
    session_ready: bool = False
    session_error: str | None = None
    identity: Any = None  # cloud.session.Identity once signed in
    signin_error: str | None = None
    subscription_id: str | None = None
    subscription_name: str | None = None
    resource_group: str | None = None
    location: str | None = None
    config: InferenceConfig | None = None
    config_error: str | None = None
    params_error: str | None = None  # the parameters file does not parse
    params_dirty: bool = False
    params_invalid: str | None = None  # first naming-rule failure in the saved file
    running: str | None = None  # title of the operation in progress
    health: str | None = None  # "healthy", "asleep", "failed", "unreachable", "checking", None = unknown
    gpu_billing: bool = False  # min replicas >= 1: a GPU replica bills even while idle
    streaming: bool = False

    @property
    def signed_in(self) -> bool:
        return self.identity is not None

    @property
    def who(self) -> str:
        if self.identity is not None:
            return getattr(self.identity, "display_name", None) or "signed in"
        if not self.session_ready:
            return "connecting…" if not self.session_error else "offline"
        return "not signed in"

    @property
    def config_is_local_cloud(self) -> bool:
        """The config was written by the local cloud, and this is not a ``--local`` run."""
        return bool(self.config is not None and self.config.from_local_cloud and not self.local)

    def config_missing(self, *keys: str) -> list[str]:
        if self.config is None:
            return list(keys) or ["all six keys"]
        return self.config.missing(*keys)

    # -- the one place that decides what can run --------------------------------
    def why_not(self, command_id: str) -> str | None:
        """``None`` when the command can run now, else one sentence saying why not."""
        check = _RULES.get(command_id)
        return check(self) if check else None


def _session(s: UIState) -> str | None:
    if s.session_error:
        return f"the cloud session could not start: {s.session_error}"
    if not s.session_ready:
        return "the cloud session is still starting; try again in a moment"
    return None


def _idle(s: UIState) -> str | None:
    if s.running:
        return f"wait for “{s.running}” to finish, or cancel it with Esc"
    return None


def _signed_in(s: UIState) -> str | None:
    return _session(s) or (None if s.signed_in else "sign in first (Commands → Sign in)")


def _subscription(s: UIState) -> str | None:
    return _signed_in(s) or (None if s.subscription_id else "select a subscription first (F3)")


def _group(s: UIState) -> str | None:
    return _subscription(s) or (None if s.resource_group else "select a resource group first (F4)")


def _params(s: UIState) -> str | None:
    if s.params_error:
        return f"fix the parameters file first: {s.params_error}"
    if s.params_dirty:
        return "save (ctrl+s) or revert the parameter changes first"
    if s.params_invalid:
        return f"fix the parameters first: {s.params_invalid}"
    return None


_LOCAL_CONFIG = "inference.config.json is the local cloud's: provision to Azure first (or run `aitk --local`)"


def _deployable(s: UIState) -> str | None:
    if s.config_error:
        return f"inference.config.json cannot be used: {s.config_error}"
    if s.config_is_local_cloud:
        return _LOCAL_CONFIG
    missing = s.config_missing()
    if missing:
        return f"provision first (inference.config.json is missing {', '.join(missing)})"
    return None


def _endpoint(s: UIState) -> str | None:
    if s.config_error:
        return f"inference.config.json cannot be used: {s.config_error}"
    if s.config_missing("ACA_APP_ENDPOINT"):
        return "provision first, or fill ACA_APP_ENDPOINT in inference.config.json (or type a URL in the Chat tab)"
    return None


def _app_named(s: UIState) -> str | None:
    missing = s.config_missing(*APP_KEYS)
    return f"provision first (inference.config.json is missing {', '.join(missing)})" if missing else None


_RULES = {
    "sign_in": lambda s: _session(s) or _idle(s),
    "select_subscription": _signed_in,
    "select_group": _subscription,
    "create_group": _subscription,
    "what_if": lambda s: _group(s) or _params(s) or _idle(s),
    "provision": lambda s: _group(s) or _params(s) or _idle(s),
    "deploy": lambda s: _session(s) or _deployable(s) or _idle(s),
    "replica_logs": lambda s: _session(s) or _deployable(s) or _idle(s),
    **dict.fromkeys(("keep_warm", "let_sleep"), lambda s: _session(s) or _deployable(s) or _idle(s)),
    **dict.fromkeys(("teardown", "teardown_all"), lambda s: _session(s) or _deployable(s) or _idle(s)),
    # It writes the parameters file: not over unsaved edits in the form.
    "upload_models": lambda s: _session(s) or _deployable(s) or _params(s) or _idle(s),
    "go_to_endpoint": _endpoint,
    "copy_endpoint": _endpoint,
    "open_in_browser": _endpoint,
    # The key is the container app's secret: it needs the app's names and a session.
    **dict.fromkeys(("copy_api_key", "copy_snippet_curl", "copy_snippet_python", "copy_snippet_js"),
                    lambda s: _endpoint(s) or _session(s) or _app_named(s)),
    "cancel": lambda s: None if s.running else "nothing is running",
}
