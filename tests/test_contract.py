"""The back-end contract, checked: the real session and the TUI's fake both implement
:class:`aitk_tui.backend.Backend`, CloudSession has no public method the contract leaves
out, and every command of the TUI has exactly one handler."""

from __future__ import annotations

import inspect
from pathlib import Path

from aitk_tui.backend import Backend
from aitk_tui.cloud.session import CloudSession
from aitk_tui.endpoints import CloudEndpoints
from aitk_tui.project import Project
from tests.ui.fakes import FakeSession

# Public on CloudSession but not for the faces: the operation modules use these on the
# session they are given (storage_key: deploy's share access, cached per session), and
# for_cloud builds a session on an already running cloud (tests, benchmarks).
NOT_FOR_THE_FACES = {"storage_key", "for_cloud", "on_device_code"}  # the credential's prompt hook
P = inspect.Parameter


def _protocol_methods() -> dict[str, object]:
    return {name: member for name, member in vars(Backend).items()
            if not name.startswith("_") and inspect.isfunction(member)}


def _shape(fn: object) -> str:
    """How a method is called: awaited, iterated with ``async for``, or plain."""
    if inspect.isasyncgenfunction(fn):
        return "an async generator"
    if inspect.iscoroutinefunction(fn):
        return "a coroutine function"
    return "a plain method"


def _expected_shape(name: str, fn: object) -> str:
    if inspect.iscoroutinefunction(fn):
        return "a coroutine function"
    returns = str(inspect.signature(fn).return_annotation)
    return "an async generator" if returns.startswith("AsyncIterator") else "a plain method"


def _params(fn: object) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]


def contract_problems(impl: type) -> list[str]:
    """Every way ``impl`` falls short of ``Backend``, each naming the method and parameter."""
    problems = []
    for name, proto in _protocol_methods().items():
        where = f"{impl.__name__}.{name}"
        fn = getattr(impl, name, None)
        if fn is None:
            signature = inspect.signature(proto).replace(parameters=_params(proto))  # no self
            problems.append(f"{where} is missing: Backend has {name}{signature}")
            continue
        if _shape(fn) != _expected_shape(name, proto):
            problems.append(f"{where} is {_shape(fn)}; Backend.{name} is {_expected_shape(name, proto)}")
        want, have = _params(proto), _params(fn)
        have_by_name = {p.name: p for p in have}
        var_kinds = {p.kind for p in have if p.kind in (P.VAR_POSITIONAL, P.VAR_KEYWORD)}
        positional = [p.name for p in have if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
        for i, p in enumerate(want):
            if p.kind in (P.VAR_POSITIONAL, P.VAR_KEYWORD):
                if p.kind not in var_kinds:
                    problems.append(f"{where} lacks {'**' if p.kind is P.VAR_KEYWORD else '*'}{p.name}")
                continue
            q = have_by_name.get(p.name)
            if q is None:
                problems.append(f"{where} lacks the parameter {p.name!r} ({p.kind.description})")
                continue
            if q.kind != p.kind:
                problems.append(f"{where}: {p.name!r} is {q.kind.description}; Backend says {p.kind.description}")
            elif p.kind is P.POSITIONAL_OR_KEYWORD and positional.index(p.name) != i:
                problems.append(f"{where}: {p.name!r} is positional argument {positional.index(p.name) + 1}; "
                                f"Backend says {i + 1}")
            if p.default is not P.empty and q.default != p.default:
                problems.append(f"{where}: {p.name!r} defaults to "
                                f"{'nothing' if q.default is P.empty else repr(q.default)}; Backend says {p.default!r}")
        for q in have:
            if q.name not in {p.name for p in want} and q.default is P.empty \
                    and q.kind not in (P.VAR_POSITIONAL, P.VAR_KEYWORD):
                problems.append(f"{where} requires {q.name!r}, which Backend does not pass")
    return problems


def test_the_contract_checker_names_what_drifted():
    class Drifted:
        project = endpoints = None

        async def whoami(self, verbose): ...  # an extra required parameter

        def sign_in(self): ...  # not an async generator

        async def deploy(self, config, *, restart=False, wait=True): ...  # no **options, another default

        async def api_key(self, endpoint=None, config=None, *, allow_insecure_http=False): ...  # order

    problems = contract_problems(Drifted)
    assert "Drifted.list_subscriptions is missing: Backend has list_subscriptions()" in " ".join(problems)
    assert "Drifted.whoami requires 'verbose', which Backend does not pass" in problems
    assert "Drifted.sign_in is a plain method; Backend.sign_in is an async generator" in problems
    assert "Drifted.deploy lacks **options" in problems
    assert "Drifted.deploy: 'restart' defaults to False; Backend says True" in problems
    assert "Drifted.deploy lacks the parameter 'health_timeout_s' (keyword-only)" in problems
    assert "Drifted.api_key: 'config' is positional argument 2; Backend says 1" in problems


def test_cloud_session_implements_the_contract():
    assert contract_problems(CloudSession) == []


def test_the_tui_fake_implements_the_contract():
    assert contract_problems(FakeSession) == []


def test_cloud_session_has_no_public_method_the_contract_leaves_out():
    """A method added to CloudSession for the faces goes into Backend (and the fake) too."""
    contract = set(_protocol_methods())
    public = {name for name, member in vars(CloudSession).items()
              if not name.startswith("_") and callable(getattr(CloudSession, name))}
    missing = sorted(public - contract - NOT_FOR_THE_FACES)
    assert missing == [], f"add to aitk_tui.backend.Backend (and tests/ui/fakes.py FakeSession): {missing}"


def test_both_sessions_have_the_attributes_the_faces_read(tmp_path: Path):
    project = Project(tmp_path)
    real = CloudSession(project, CloudEndpoints("azure"), None)
    fake = FakeSession(project)
    for session in (real, fake):
        assert isinstance(session, Backend)  # runtime_checkable: every member is present
        assert session.project is project and session.endpoints.is_local is (session is fake)


# -- every command has an action --------------------------------------------------------------
def _widget_classes() -> list[type]:
    """Every widget class that binds keys from COMMANDS (``bindings_for(scope)``)."""
    import importlib
    import pkgutil

    import aitk_tui.ui.widgets as widgets

    classes = []
    for info in pkgutil.iter_modules(widgets.__path__):
        module = importlib.import_module(f"aitk_tui.ui.widgets.{info.name}")
        classes += [c for c in vars(module).values()
                    if isinstance(c, type) and c.__module__ == module.__name__ and "BINDINGS" in vars(c)]
    return classes


def _action_owner(action: str) -> tuple[type, str]:
    from aitk_tui.ui.app import AitkApp
    from aitk_tui.ui.screens.main import MainScreen

    target, _, name = action.rpartition(".")
    return {"app": AitkApp, "screen": MainScreen}[target], name


def test_every_command_has_an_action_and_no_screen_action_lacks_a_command():
    """The palette and the keys dispatch Textual actions (``screen.provision`` ->
    ``MainScreen.action_provision``), never a handler found by its name."""
    from aitk_tui.ui.commands import COMMANDS
    from aitk_tui.ui.screens.main import MainScreen

    ids = [c.id for c in COMMANDS]
    assert len(set(ids)) == len(ids), "a command id is defined twice"
    dispatched = [c for c in COMMANDS if c.scope == "screen" or c.palette]
    missing = []
    for c in dispatched:
        owner, name = _action_owner(c.runs)
        if not callable(getattr(owner, f"action_{name}", None)):
            missing.append(f"{c.id}: {owner.__name__}.action_{name}")
    assert missing == [], f"commands whose action does not exist: {missing}"
    runs = {_action_owner(c.runs)[1] for c in dispatched if c.runs.startswith("screen.")}
    runs |= {c.action.removeprefix("screen.") for c in COMMANDS if c.action.startswith("screen.")}
    orphans = sorted(n for n in vars(MainScreen) if n.startswith("action_") and n.removeprefix("action_") not in runs)
    assert orphans == [], f"MainScreen actions that no command in ui/commands.py runs: {orphans}"


def test_every_widget_key_reaches_an_action():
    from aitk_tui.ui.commands import COMMANDS

    classes = _widget_classes()
    for c in (c for c in COMMANDS if c.scope not in ("app", "screen") and c.key):
        owners = [cls for cls in classes if any(getattr(b, "id", None) == c.id for b in cls.BINDINGS)]
        assert owners, f"no widget binds {c.id} (scope {c.scope!r})"
        for cls in owners:
            owner, name = _action_owner(c.action) if "." in c.action else (cls, c.action)
            assert callable(getattr(owner, f"action_{name}", None)), f"{owner.__name__} has no action_{name}"


async def test_an_unknown_command_runs_nothing(tmp_path: Path):
    from aitk_tui.ui.app import create_app
    from tests.ui.fakes import factory_for

    project = Project(tmp_path)
    session = FakeSession(project)
    app = create_app(project, session_factory=factory_for(session))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        before = list(session.calls)
        await app.main.run_action("deploy_everything")  # no such action: nothing runs
        await pilot.pause()
        assert session.calls == before and app.state.running is None


# -- one place each: CA trust and state.json ----------------------------------------------------
def test_a_clouds_ca_vouches_only_for_loopback_hosts(tmp_path: Path):
    import ssl

    from aitk_tui.endpoints import tls_verify

    local = CloudEndpoints("local", ca_bundle="/state/tls/ca.pem")
    for url in ("https://127.0.0.1:8443", "127.0.0.1:9000/v1", "https://LOCALHOST/x", "https://[::1]:443"):
        assert local.trust_for(url) == "/state/tls/ca.pem", url
    for url in ("https://app.westus3.azurecontainerapps.io", "https://127.0.0.1.example.com", "", "https://"):
        assert local.trust_for(url) is True, url
    assert CloudEndpoints("azure").trust_for("https://127.0.0.1") is True and CloudEndpoints("azure").verify is True
    assert tls_verify(True) is True and tls_verify(False) is False
    import trustme

    ca = trustme.CA()
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    context = tls_verify(str(pem))
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert len(context.get_ca_certs()) >= 1 and context.check_hostname


def test_remembered_choices_are_updated_in_place(tmp_path: Path):
    import json

    import pytest

    from aitk_tui.config.state import ProjectState

    path = tmp_path / ".aitk" / "state.json"
    ProjectState.update(path, subscription_id="sub-1", resource_group="rg-1")
    state = ProjectState.update(path, resource_group=None, location="eastus")  # None clears
    assert state == ProjectState.load(path) == ProjectState(subscription_id="sub-1", location="eastus")
    with pytest.raises(TypeError, match="no field 'api_key'"):
        ProjectState.update(path, api_key="x")
    assert json.loads(path.read_text())["subscription_id"] == "sub-1"
    # The session keeps what a None does not name; the TUI's fake does the same.
    session = CloudSession(Project(tmp_path), CloudEndpoints("azure"), None)
    session.remember(subscription_id=None, resource_group="rg-2")
    fake = FakeSession(Project(tmp_path))
    assert fake.remember(location=None) == session.load_state() == ProjectState(
        subscription_id="sub-1", resource_group="rg-2", location="eastus")


def test_a_result_is_typed_and_passed_by_name():
    import pytest

    from aitk_tui.cloud.models import Change, WhatIf
    from aitk_tui.events import Done

    done = Done("1 to create", result=WhatIf((Change("Create", "Microsoft.App/containerApps", "app"),)))
    assert done.result.changes[0].name == "app" and not done.result.estimated
    with pytest.raises(TypeError):
        Done("1 to create", {"changes": []})  # the old untyped dict, now refused


def test_a_remembered_subscription_is_used_only_on_its_own_cloud():
    from aitk_tui.backend import subscription_fits
    from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID

    local, azure = CloudEndpoints("local"), CloudEndpoints("azure")
    assert subscription_fits(local, LOCAL_SUBSCRIPTION_ID) and not subscription_fits(azure, LOCAL_SUBSCRIPTION_ID)
    other = "11111111-2222-3333-4444-555555555555"
    assert subscription_fits(azure, other) and not subscription_fits(local, other)
    assert not subscription_fits(local, None) and not subscription_fits(azure, None)


async def test_a_local_cloud_that_cannot_start_is_one_sentence(tmp_path: Path):
    """open_session is where the local cloud is started; a failure there reaches the faces
    as an AitkError (one sentence + detail), never a traceback."""
    import pytest

    from aitk_tui.backend import open_session
    from aitk_tui.errors import AitkError

    (tmp_path / ".aitk").write_text("a file where the state folder should be")
    with pytest.raises(AitkError) as caught:
        await open_session(Project(tmp_path), local=True)
    assert caught.value.message == "The local cloud could not be started."
    assert caught.value.detail.startswith("NotADirectoryError") and ".aitk/local" in caught.value.detail


# -- operations take the small context --------------------------------------------------------
def _context_members() -> set[str]:
    from aitk_tui.cloud.context import OperationContext

    return {n for n in vars(OperationContext) if not n.startswith("_")} | set(OperationContext.__annotations__)


def _session_uses(module_name: str) -> dict[str, list[int]]:
    """``session.<attr>`` reads in a cloud operation module, where ``session`` is the context it takes."""
    import ast

    path = Path(__file__).resolve().parents[1] / "aitk_tui" / "cloud" / f"{module_name}.py"
    uses: dict[str, list[int]] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "session":
            uses.setdefault(node.attr, []).append(node.lineno)
    return uses


def test_operations_use_only_the_small_context_of_the_session():
    from aitk_tui.cloud.context import OPERATION_MODULES

    allowed = _context_members()
    for name in OPERATION_MODULES:
        uses = _session_uses(name)
        assert uses, f"aitk_tui/cloud/{name}.py: no session use found (renamed? update OPERATION_MODULES)"
        extra = {attr: lines for attr, lines in uses.items() if attr not in allowed}
        assert extra == {}, f"aitk_tui/cloud/{name}.py reaches past OperationContext: {extra}"


def test_the_session_provides_the_whole_operation_context(tmp_path: Path):
    real = CloudSession(Project(tmp_path), CloudEndpoints("azure"), None)
    missing = sorted(m for m in _context_members() if not hasattr(real, m))
    assert missing == []


def test_health_is_asked_in_one_place():
    """``/health`` URLs are built only by ChatClient.health: deploy's wait, the status views,
    the header and the chat's waking path all go through it (the local cloud, which probes
    its own replicas, is the emulator and is left out)."""
    import ast

    root = Path(__file__).resolve().parents[1] / "aitk_tui"
    builders = []
    for path in sorted(root.rglob("*.py")):
        if "local" in path.relative_to(root).parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            parts = node.values if isinstance(node, ast.JoinedStr) else [node] if isinstance(node, ast.Constant) else []
            last = parts[-1] if parts else None
            if isinstance(last, ast.Constant) and isinstance(last.value, str) and last.value.endswith("/health") \
                    and (isinstance(node, ast.JoinedStr) or last.value.startswith(("http", "/health"))):
                builders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert sorted({b.split(":")[0] for b in builders}) == ["chat/client.py"], builders
