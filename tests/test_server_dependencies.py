"""The container that runs on Azure can work: the template's default image carries a torch
that the pinned transformers (and accelerate, peft) accept, with a CUDA that Azure's
serverless GPUs run; and the server's pins have one source of truth.

- ``inference_server/requirements.txt`` is what the container's pip step installs;
  pyproject.toml's ``server`` extra (what the tests and the local cloud run) lists exactly
  the same pins, plus torch at the image's version (the image brings its own torch).
- transformers' own ``is_torch_available()`` decides, against the image's torch version.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def _requirements() -> dict[str, str]:
    pins = {}
    for line in (REPO / "inference_server/requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            pins[req.name.lower().replace("_", "-")] = str(req.specifier)
    return pins


def _server_extra() -> dict[str, str]:
    doc = tomllib.loads((REPO / "pyproject.toml").read_text())
    reqs = [Requirement(r) for r in doc["project"]["optional-dependencies"]["server"]]
    return {r.name.lower().replace("_", "-"): str(r.specifier) for r in reqs}


def _default_image() -> str:
    template = json.loads((REPO / "infra/provision/inference.json").read_text())
    image = template["parameters"]["containerImage"]["defaultValue"]
    bicep = re.search(r"^param containerImage string = '([^']+)'", (REPO / "infra/provision/inference.bicep").read_text(),
                      re.MULTILINE)
    assert bicep and bicep.group(1) == image, "inference.bicep and inference.json name different images"
    return image


def _image_torch_and_cuda(image: str) -> tuple[Version, Version]:
    """pytorch/pytorch tags read ``{torch}-cuda{X.Y}-cudnn{N}-runtime`` (pytorch's docker-release.yml)."""
    m = re.search(r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda(\d+\.\d+)-cudnn\d+-(?:runtime|devel)$", image)
    assert m, f"the default image {image} is not a pytorch/pytorch CUDA tag: read its torch by hand"
    return Version(m.group(1)), Version(m.group(2))


def _image_torch() -> Version:
    """The torch the container runs: requirements.txt's pin if it has one, else the image's."""
    pinned = _requirements().get("torch")
    if pinned:
        return Version(pinned.lstrip("="))
    return _image_torch_and_cuda(_default_image())[0]


def test_requirements_and_the_server_extra_pin_the_same_versions():
    reqs, extra = _requirements(), _server_extra()
    assert all(spec.startswith("==") for spec in reqs.values()), reqs  # pinned, not ranges
    torch_extra = extra.pop("torch", None)
    assert extra == {k: v for k, v in reqs.items() if k != "torch"}
    # torch: the extra pins the image's version (the CPU build on the dev/CI machines).
    assert torch_extra == f"=={_image_torch()}"


def test_the_pinned_transformers_accepts_the_default_image_torch(monkeypatch):
    from transformers.utils import import_utils

    pinned = _requirements()["transformers"].lstrip("=")
    # The check below reads the installed transformers' code: it must be the pinned one.
    assert importlib.metadata.version("transformers") == pinned
    image_torch = str(_image_torch())

    def verdict(torch_version: str) -> bool:
        monkeypatch.setattr(import_utils, "_is_package_available",
                            lambda name, return_version=False: (True, torch_version) if return_version else True)
        return bool(import_utils.is_torch_available.__wrapped__())

    assert verdict("2.4.0") is False  # the check is live: AI Toolkit's image is refused
    assert verdict(image_torch) is True, f"transformers {pinned} refuses the default image's torch {image_torch}"


def test_the_pinned_accelerate_and_peft_accept_the_default_image_torch():
    image_torch = _image_torch()
    for dist in ("accelerate", "peft"):
        assert importlib.metadata.version(dist) == _requirements()[dist].lstrip("=")
        for raw in importlib.metadata.requires(dist) or []:
            req = Requirement(raw)
            if req.name == "torch" and (req.marker is None or req.marker.evaluate({"extra": ""})):
                assert req.specifier.contains(image_torch), f"{dist} needs torch {req.specifier}, the image has {image_torch}"


def test_the_default_image_cuda_runs_on_serverless_gpus():
    # Azure Container Apps' serverless GPUs (A100, T4) bring the NVIDIA driver and a platform
    # CUDA 12.x (learn.microsoft.com/azure/container-apps/functions-gpu-container-apps): an
    # image built for CUDA 12.x runs on that driver (CUDA minor-version compatibility); CUDA 13
    # would need a newer driver. torch's CUDA 12.6 builds carry Turing (T4, sm_75) and
    # Ampere (A100, sm_80) kernels (pytorch RELEASE.md, "PyTorch CUDA Support Matrix").
    torch, cuda = _image_torch_and_cuda(_default_image())
    assert cuda.major == 12 and cuda >= Version("12.1"), cuda
    assert torch >= Version("2.6")
