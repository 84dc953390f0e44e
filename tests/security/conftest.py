"""The security tests use the back-end's and the TUI's fixtures (local-cloud session, CLI
pointed at the in-process cloud, the TUI app factory)."""

from tests.backend.conftest import cli_cloud, issued_tokens, session  # noqa: F401
from tests.ui.conftest import fixed_clock, make_app, ui_project  # noqa: F401
