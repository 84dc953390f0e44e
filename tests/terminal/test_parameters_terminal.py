"""The real ``aitk`` at 80x24, keyboard only: choosing the T4 in the parameters form brings
the container's CPU and memory down to the T4's size (the template's defaults are the A100's,
which Azure refuses on a T4), and a size above it is shown beside its field."""

from __future__ import annotations

import json

from .harness import AitkTerminal

T4 = "Consumption-GPU-NC8as-T4"


def test_choosing_the_t4_in_the_form_fits_the_container(aitk_terminal, local_project):
    term: AitkTerminal = aitk_terminal()
    term.wait_for_text("Sign in", timeout=30)
    term.send_keys("f7")
    term.wait_for_text("Start-up commands")
    term.send_keys(*["tab"] * 9)  # commands, instances, location, five names, workspace: the GPU profile
    term.wait_for_text("GPU profile")
    term.send_keys("enter")
    term.wait_for_text(T4)  # the choices are open
    term.send_keys("down", "down", "enter")  # past the blank "default" row and the A100
    term.wait_for_text(f"{T4}   ")
    term.send_keys("tab")  # into the CPU field, which scrolls into view: the T4's size, not the A100's
    term.wait_until(lambda s: "\n 8\n" in s, what="the CPU at the T4's size")
    # Emptied first (the A100's default then shows, refused beside it), so that what is typed
    # next never races the field's select-all on focus.
    term.send_keys("end", "backspace")
    term.wait_for_text("default: 24 (the A100's)")
    term.wait_for_text("24 vCPU is more than the Consumption-GPU-NC8as-T4 profile offers")
    term.send_keys("1", "6")
    term.wait_for_text("16 vCPU is more than the Consumption-GPU-NC8as-T4 profile offers")
    term.send_keys("backspace", "backspace")
    term.wait_for_text("default: 24 (the A100's)")
    term.send_keys("8")
    term.wait_for_gone("vCPU is more than the Consumption-GPU-NC8as-T4 profile offers")
    term.send_keys("ctrl+s")
    term.wait_for_text("Parameters saved")
    saved = json.loads((local_project / "infra/provision/inference.parameters.json").read_text())["parameters"]
    assert (saved["gpuProfileType"]["value"], saved["containerCpu"]["value"], saved["containerMemory"]["value"]) == (
        T4, 8, "56Gi")
