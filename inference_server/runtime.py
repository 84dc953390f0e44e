"""What the server runs on, said once at start, and the one-sentence refusal when that
cannot work.

On Azure the container runs the template's image with its own Python and torch; the
pinned transformers then decides whether it can use that torch (transformers 5 ignores a
torch below 2.6 and could load no model). The server checks before it serves:

- transformers cannot use the image's torch -> refuse, naming the ``containerImage`` fix;
- the app runs on a GPU workload profile (the template sets ``AITK_REQUIRE_GPU=true``) and
  torch sees no CUDA device -> refuse, naming the same fix (a CPU build, or a CUDA build the
  GPU's driver cannot run).

The sentence is printed as ``inference_server: ...`` and the process exits 2, so that
``aitk logs``, ``aitk status`` ("why") and the Endpoint view show it, not a traceback.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
from dataclasses import dataclass

#: The template's default image (infra/provision/inference.bicep, ``containerImage``).
DEFAULT_IMAGE = "docker.io/pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime"
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Runtime:
    python: str
    torch: str | None
    torch_cuda: str | None  # the CUDA torch was built for; None for a CPU build
    gpu: str | None  # the first CUDA device's name; None when torch sees none
    gpu_memory_gib: float | None
    transformers: str | None
    peft: str | None
    accelerate: str | None
    torch_usable: bool  # transformers' own verdict (is_torch_available)

    def line(self) -> str:
        """One line: Python, torch (CUDA), the GPU and its memory (or CPU), the HF libraries."""
        torch = f"torch {self.torch or 'missing'}"
        torch += f" (CUDA {self.torch_cuda})" if self.torch_cuda else " (CPU build)" if self.torch else ""
        device = f"GPU {self.gpu} ({self.gpu_memory_gib:.1f} GiB)" if self.gpu else "CPU"
        libs = ", ".join(f"{name} {getattr(self, name) or 'missing'}" for name in ("transformers", "peft", "accelerate"))
        return f"runtime: Python {self.python}, {torch}, {device}, {libs}"

    def fields(self) -> dict[str, object]:
        return {"msg": self.line(), "python": self.python, "torch": self.torch, "torch_cuda": self.torch_cuda,
                "gpu": self.gpu, "gpu_memory_gib": self.gpu_memory_gib, "transformers": self.transformers,
                "peft": self.peft, "accelerate": self.accelerate}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def min_torch_of_transformers() -> str | None:
    """The lowest torch the installed transformers accepts, from its own metadata
    (``torch>=2.6; extra == "torch"``); None when it names none."""
    try:
        requires = importlib.metadata.requires("transformers") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for req in requires:
        m = re.match(r"\s*torch\s*>=\s*([\w.]+)", req)
        if m:
            return m.group(1)
    return None


def inspect_runtime() -> Runtime:
    """Import torch (and transformers' check of it) and read what is there."""
    torch_version = torch_cuda = gpu = None
    memory = None
    try:
        import torch

        torch_version = torch.__version__
        torch_cuda = torch.version.cuda
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            gpu, memory = props.name, round(props.total_memory / 2**30, 1)
    except ImportError:
        pass
    usable = False
    if torch_version is not None:
        try:
            from transformers.utils.import_utils import is_torch_available

            usable = bool(is_torch_available())
        except ImportError:
            usable = False
    return Runtime(python=platform.python_version(), torch=torch_version, torch_cuda=torch_cuda, gpu=gpu,
                   gpu_memory_gib=memory, transformers=_version("transformers"), peft=_version("peft"),
                   accelerate=_version("accelerate"), torch_usable=usable)


def require_gpu(environ: dict[str, str] | None = None) -> bool:
    """Does the app run on a GPU workload profile (the template's ``AITK_REQUIRE_GPU``)?"""
    return str((environ if environ is not None else os.environ).get("AITK_REQUIRE_GPU", "")).strip().lower() in _TRUE


def refusal(rt: Runtime, *, gpu_required: bool, device: str = "auto") -> str | None:
    """The one sentence that says why the server cannot work here, and the fix; None when it can."""
    fix = (f"set the template's containerImage parameter to an image whose torch is a CUDA build "
           f"of {min_torch_of_transformers() or '2.6'} or newer (the default is {DEFAULT_IMAGE}) and provision again")
    if rt.torch is None:
        return f"the image has no torch, which the inference server needs: {fix}"
    if rt.transformers is None:
        return "transformers is not installed: the container's pip step (inference_server/requirements.txt) did not run"
    if not rt.torch_usable:
        need = min_torch_of_transformers()
        needs = f" (it needs torch >= {need})" if need else ""
        return f"transformers {rt.transformers} cannot use the image's torch {rt.torch}{needs}: {fix}"
    if gpu_required and device != "cpu" and rt.gpu is None:
        build = f"a build for CUDA {rt.torch_cuda}" if rt.torch_cuda else "a CPU build"
        return (f"the app runs on a GPU workload profile but torch {rt.torch} ({build}) sees no CUDA device "
                f"(a CPU build, or a CUDA newer than the GPU's driver): {fix}")
    return None
