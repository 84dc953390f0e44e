"""The CLI's upload percentage counts bytes: three small files of four done while the big
weights file is still going read 75 %, for most of the upload."""

from __future__ import annotations

import io

from aitk_tui.cli._printer import EventPrinter
from aitk_tui.events import UploadProgress


def test_the_upload_percentage_is_of_the_bytes():
    err = io.StringIO()
    printer = EventPrinter(err=err, out=io.StringIO())
    printer(UploadProgress("config.json", 3, 4, 3_000, 1_003_000))
    printer(UploadProgress("weights.bin", 4, 4, 1_003_000, 1_003_000))
    lines = err.getvalue().splitlines()
    assert lines[0].endswith("0%)") and "3/4 files" in lines[0]
    assert lines[-1].endswith("100%)")


def test_nothing_to_upload_is_not_a_division_by_zero():
    err = io.StringIO()
    EventPrinter(err=err, out=io.StringIO())(UploadProgress("empty", 1, 1, 0, 0))
    assert err.getvalue().rstrip().endswith("100%)")
