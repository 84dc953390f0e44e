"""The server's shape (issue 20 §3), checked from the source as ``test_boundaries.py`` checks
the layers: ``create_app`` only wires (as vLLM's ``build_app``), and the gate, the error
handlers and the serving of a chat request live in modules of their own."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.import_scan import REPO

SERVER = REPO / "inference_server"
MOST_STATEMENTS = 40  # today's factory has 29: settings checked, state, metrics, middleware, routes
MOST_PER_ROUTE = 4    # a route hands its request on (lifespan included: start the load, stop the engine)


def _function(path: Path, name: str) -> ast.FunctionDef:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)


def _statements(node: ast.AST) -> int:
    return sum(isinstance(n, ast.stmt) for n in ast.walk(node)) - 1


def factory_problems(path: Path) -> list[str]:
    create_app = _function(path, "create_app")
    problems = [f"defines class {n.name}" for n in ast.walk(create_app) if isinstance(n, ast.ClassDef)]
    if _statements(create_app) > MOST_STATEMENTS:
        problems.append(f"{_statements(create_app)} statements (at most {MOST_STATEMENTS})")
    inner = [n for n in ast.walk(create_app) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
             and n is not create_app]
    problems += [f"{n.name} has {_statements(n)} statements (at most {MOST_PER_ROUTE})" for n in inner
                 if _statements(n) > MOST_PER_ROUTE]
    return problems


def test_create_app_only_wires():
    assert factory_problems(SERVER / "app.py") == []


def test_the_factory_check_sees_a_class_and_a_route_that_does_the_work(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(
        "def create_app(settings):\n"
        "    class Gate:\n"
        "        pass\n"
        "    @route\n"
        "    async def chat(request):\n"
        + "".join(f"        x{i} = {i}\n" for i in range(5)) +
        "    return Gate\n")
    assert factory_problems(app) == ["defines class Gate", "chat has 5 statements (at most 4)"]


def test_the_gate_the_errors_and_the_serving_live_in_modules_of_their_own():
    """What a request meets, module by module: the ASGI gate class in ``gate``, the handlers
    for what FastAPI raises in ``errors``, a chat request's path to its answer in ``serving``;
    ``app`` imports each from there."""
    from inference_server import app, errors, gate, serving

    assert isinstance(gate.Gate, type) and gate.Gate.__module__ == "inference_server.gate"
    assert errors.add_error_handlers.__module__ == "inference_server.errors"
    assert serving.Serving.chat_completion.__module__ == "inference_server.serving"
    imported = {(n.module, a.name) for n in ast.walk(ast.parse((SERVER / "app.py").read_text(encoding="utf-8")))
                if isinstance(n, ast.ImportFrom) for a in n.names}
    assert {("gate", "Gate"), ("errors", "add_error_handlers"), ("serving", "Serving")} <= imported
    assert not hasattr(app, "APIError") and not hasattr(app, "EventStream")
