"""``aitk models upload --adapter DIR [--name NAME] [--model DIR]`` and ``aitk models list``.

Only the standard library at module level: :func:`add_parser` runs to build the parser;
the back-end (:mod:`aitk_tui.cloud.models_upload`) loads on use.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._output import EXIT_OK
from ._printer import EventPrinter, drive
from ._session import azure_config, run_in_session

if TYPE_CHECKING:
    from ..cloud.models_upload import ShareModel
    from ..project import Project


def add_parser(name: str, p: argparse.ArgumentParser, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")
    # Its own copy of the global options: --adapter/--model mean "what to upload" here, not
    # "what the local cloud serves", and "resolve" must not touch the shared option objects.
    up = cmd("upload", "copy an adapter (and base model) to the share and point the parameters at them", msub,
             own_options=True, conflict_handler="resolve",
             description="Copy a PEFT LoRA adapter (and optionally its base model) to the project's "
                         "file share, under models/ and model-cache/ as AI Toolkit's fine-tuning does; "
                         "only what changed is sent, and an interrupted upload resumes. Then "
                         "adapterPath (or, with --name, the adapters list) and modelPath are set in "
                         "infra/provision/inference.parameters.json for the next provision.")
    up.add_argument("--adapter", dest="upload_adapter", metavar="DIR", type=Path, required=True,
                    help="the adapter folder (holds adapter_config.json)")
    up.add_argument("--name", dest="upload_name", metavar="NAME",
                    help="serve it as model NAME beside other adapters (the adapters parameter); "
                         "without it, it becomes the single adapter (adapterPath)")
    up.add_argument("--model", dest="upload_model", metavar="DIR", type=Path,
                    help="also upload the base model folder (holds config.json) and set modelPath")
    up.add_argument("--no-params", action="store_true", help="upload only; leave the parameters file as it is")
    ls = cmd("list", "list the adapters (models/) and base models (model-cache/) on the share", msub)
    ls.add_argument("--json", action="store_true")


def _request(args: argparse.Namespace) -> Any:
    from ..cloud.models_upload import UploadRequest

    return UploadRequest.checked(args.upload_adapter, args.upload_name, args.upload_model)


def run(project: "Project", args: argparse.Namespace) -> int:
    action = args.models_command or "list"
    request = _request(args) if action == "upload" else None  # a bad folder: before any sign-in
    from ..config.inference_config import SHARE_KEYS

    config = azure_config(project, args, *SHARE_KEYS, hint="add --local")
    printer = EventPrinter()
    # The global --model/--adapter choose what a starting local cloud serves; never the upload.
    session_args = argparse.Namespace(**{**vars(args), "model_path": None, "adapter_path": None})

    async def go(session: Any) -> int:
        if request is not None:
            await drive(session.upload_models(config, request, set_parameters=not args.no_params), printer)
            return EXIT_OK
        return _print_list(await session.list_models(config), config.FILE_SHARE_NAME or "", args.json)

    return run_in_session(project, session_args, printer, go)


def _print_list(models: "list[ShareModel]", share: str, as_json: bool) -> int:
    if as_json:
        import json

        print(json.dumps([{"kind": m.kind, "path": m.path, "mount_path": m.mount_path, "files": m.files,
                           "bytes": m.bytes, "modified": m.modified.isoformat() if m.modified else None}
                          for m in models], indent=2))
        return EXIT_OK
    if not models:
        print(f"No adapter or base model on file share {share} (looked under models/ and model-cache/).",
              file=sys.stderr)
        return EXIT_OK
    from ..cloud.sync_plan import format_size

    rows = [(m.kind, m.path, f"{m.files} {'file' if m.files == 1 else 'files'}", format_size(m.bytes),
             m.modified.strftime("%Y-%m-%d %H:%M") if m.modified else "-") for m in models]
    head = ("KIND", "PATH ON THE SHARE (/mount/...)", "FILES", "SIZE", "MODIFIED (UTC)")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) if i < 4 else c
                        for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
    return EXIT_OK
