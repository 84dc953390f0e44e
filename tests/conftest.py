"""Shared test set-up. Each area keeps its fixtures in its own plugin module."""

import atexit
import os
import shutil
import tempfile

# Never reach a model hub or the instance-metadata endpoint from tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("AITK_TORCH_THREADS", "1")
# Local clouds started by tests register themselves under the user's state folder
# (for `aitk local stop --all`); keep the developer's own registry out of the tests'.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="aitk-test-state-")
atexit.register(shutil.rmtree, os.environ["XDG_STATE_HOME"], ignore_errors=True)  # one per pytest process

pytest_plugins = ["tests.fixtures_model", "tests.fixtures_local"]
