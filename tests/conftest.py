"""Shared test set-up. Each area keeps its fixtures in its own plugin module."""

import os

# Never reach a model hub or the instance-metadata endpoint from tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("AITK_TORCH_THREADS", "1")

pytest_plugins = ["tests.fixtures_model", "tests.fixtures_local"]
