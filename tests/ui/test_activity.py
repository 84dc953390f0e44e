"""The Activity pane: live progress, tail semantics, errors in one sentence, cancel, batching."""

from __future__ import annotations

import asyncio
import json

from textual.widgets import Collapsible, ProgressBar, Static

from aitk_tui.config.state import ProjectState
from aitk_tui.events import HealthWait, LogLine

from .conftest import settle
from .fakes import SUB_ID


def remember_group(project) -> None:
    ProjectState(subscription_id=SUB_ID, subscription_name="Contoso Dev", resource_group="rg-inference",
                 location="westus3").save(project.state_path)


async def test_log_follows_at_the_bottom_detaches_on_scroll_up_and_end_reattaches(make_app):
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f8")
        await settle(pilot)
        pane = app.main.activity.log_pane
        pane.write_lines([f"line {i}" for i in range(100)])
        await settle(pilot)
        assert pane.log.is_vertical_scroll_end and pane.following
        pane.log.scroll_home(animate=False, immediate=True)
        await settle(pilot)
        pane.write_lines([f"more {i}" for i in range(5)])
        await settle(pilot)
        assert not pane.log.is_vertical_scroll_end  # it did not jump away from what the user reads
        assert not pane.following
        assert "+5 new lines" in str(pane.query_one("#new-lines", Static).render())
        pane.log.focus()
        await pilot.press("end")
        await settle(pilot)
        assert pane.log.is_vertical_scroll_end and pane.following
        pane.write_lines(["tail"])
        await settle(pilot)
        assert pane.log.is_vertical_scroll_end


async def test_noisy_events_are_batched_into_few_updates_and_the_log_saves(make_app, ui_project):
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        activity = app.main.activity
        before = activity.flushes
        for i in range(2000):
            activity.feed(LogLine(f"replica output {i}"))
        await pilot.pause(0.3)
        activity.flush()
        assert activity.flushes - before <= 3
        assert activity.log_pane.lines[-1].endswith("replica output 1999")
        await app.main.run_action("save_activity")
        await settle(pilot)
    files = list((ui_project.state_dir / "logs").glob("activity-*.log"))
    assert len(files) == 1 and "09:30:00 [replica] replica output 1999" in files[0].read_text()


async def test_provision_streams_rows_then_deploy_shows_upload_progress(make_app, ui_project):
    remember_group(ui_project)
    app, session = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f5")
        await settle(pilot)
        await pilot.press("enter")  # the what-if summary's dialog: provision
        await settle(pilot)
        table = app.main.activity.table
        assert table.row_count == 6
        states = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert all("Succeeded" in s for s in states)
        assert "inference.config.json" in app.main.activity.title_text
        assert app.state.config.ACA_APP_NAME == "aiacaappdemo1"  # reloaded from the file provisioning wrote
        await pilot.press("f6")
        await settle(pilot)
        bar = app.main.activity.query_one(ProgressBar)
        assert bar.percentage == 1.0
        assert app.state.health == "healthy"
        assert "uploaded 3 files" in app.main.activity.title_text


async def test_a_failure_is_one_sentence_with_the_detail_expandable(make_app, ui_project):
    remember_group(ui_project)
    app, _ = make_app(fail_provision_on="aiacaappdemo1")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f5")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        collapsible = app.main.activity.query_one("#error", Collapsible)
        assert collapsible.display and collapsible.collapsed
        assert "GPU quota" in str(collapsible.title)
        assert "QuotaExceeded" in str(app.main.activity.query_one("#error-detail", Static).render())
        assert any("GPU quota" in n.message for n in app._notifications)
        assert json.loads(ui_project.config_path.read_text())["ACA_APP_NAME"] is None


async def test_esc_cancels_provisioning_and_leaves_no_local_file_written(make_app, ui_project):
    remember_group(ui_project)
    before = ui_project.config_path.read_bytes()
    hold = asyncio.Event()
    app, session = make_app(hold_provision=hold)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f5")
        await settle(pilot)
        await pilot.press("enter")
        for _ in range(5):
            await pilot.pause()
        assert app.state.running == "Provision"
        assert "Cancel" in [a.binding.description for a in app.screen.active_bindings.values()]
        await pilot.press("escape")
        await settle(pilot)
        assert session.cancelled  # the back-end generator was closed, not abandoned
        assert app.state.running is None
        assert "cancelled" in app.main.activity.title_text
    assert ui_project.config_path.read_bytes() == before


async def test_replica_logs_follow_until_esc(make_app, ui_project):
    from .fakes import write_config

    write_config(ui_project)
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await app.main.run_action("replica_logs")
        for _ in range(50):
            await pilot.pause(0.02)
            if any("replica line 2" in line for line in app.main.activity.log_pane.lines):
                break
        assert any("replica line 2" in line for line in app.main.activity.log_pane.lines)  # the stream arrived
        assert app.state.running == "Replica logs"
        await pilot.press("escape")
        await settle(pilot)
        assert app.state.running is None and "cancelled" in app.main.activity.title_text


async def test_f5_shows_the_what_if_summary_and_provisions_only_on_enter(make_app, ui_project):
    from aitk_tui.ui.screens.confirm_provision import ConfirmProvisionScreen

    remember_group(ui_project)
    before = ui_project.config_path.read_bytes()
    app, session = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f5")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, ConfirmProvisionScreen)
        shown = str(dialog.query_one("#confirm-title", Static).render()) + \
            str(dialog.query_one("#confirm-changes", Static).render())
        assert "6 to create" in shown
        assert any("+ create" in line and "containerApps" in line and "aiacaappdemo1" in line
                   for line in shown.splitlines()), shown
        assert session.calls[-1] == "what_if"  # nothing deployed yet
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmProvisionScreen)
        assert not any(c.startswith("provision") for c in session.calls)
        assert "nothing was changed" in app.main.activity.log_pane.text()
        assert ui_project.config_path.read_bytes() == before
        await pilot.press("f5")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert session.calls[-1].startswith("provision:")
        assert app.main.activity.title_text.startswith("✓ Provision")


async def test_the_log_keeps_following_when_rows_and_the_upload_bar_shrink_it(make_app, ui_project):
    """Nobody scrolled: the table growing and the upload bar appearing must not detach the log."""
    from aitk_tui.events import ResourceProgress, UploadProgress

    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f8")
        await settle(pilot)
        activity = app.main.activity
        pane = activity.log_pane
        activity.begin("provision", "Provision")
        for i in range(40):
            activity.feed(LogLine(f"before {i}"))
            if i % 5 == 0:
                activity.feed(ResourceProgress("Microsoft.App/containerApps", f"app{i}", "Succeeded", 1.0))
            if i == 20:
                activity.feed(UploadProgress("inference_server/x.py", 1, 3, 10, 30))
            activity.flush()
            await pilot.pause()
        await settle(pilot)
        assert pane.following and not pane.has_class("-detached")
        assert pane.log.is_vertical_scroll_end
        assert activity.table.row_count == 8


async def test_end_follows_again_from_anywhere_on_the_activity_tab(make_app):
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f8")
        await settle(pilot)
        pane = app.main.activity.log_pane
        pane.write_lines([f"line {i}" for i in range(100)])
        await settle(pilot)
        pane.log.scroll_home(animate=False, immediate=True)
        pane.write_lines(["unseen"])
        await settle(pilot)
        assert not pane.following
        app.set_focus(None)  # focus is not in the log (the tab bar, nothing...)
        await pilot.press("end")
        await settle(pilot)
        assert pane.following and pane.log.is_vertical_scroll_end and not pane.has_class("-detached")


async def test_the_state_column_widens_when_a_row_moves_on_to_a_longer_state(make_app):
    from aitk_tui.events import ResourceProgress

    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f8")
        await settle(pilot)
        activity = app.main.activity
        activity.begin("provision", "Provision")
        activity.feed(ResourceProgress("Microsoft.App/containerApps", "app1", "Running", 1.0))
        activity.flush()
        await settle(pilot)
        activity.feed(ResourceProgress("Microsoft.App/containerApps", "app1", "Succeeded", 2.0))
        activity.flush()
        await settle(pilot)
        state_column = next(iter(activity.table.columns.values()))
        assert state_column.content_width >= len("✓ Succeeded")


async def test_health_probe_lines_are_hidden_until_p_shows_them(make_app):
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f8")
        await settle(pilot)
        activity = app.main.activity
        probe = "method=GET path=/health status=200 duration_ms=0.3"
        for text in ("model loaded", probe, probe, "method=POST path=/v1/chat/completions status=200"):
            activity.feed(LogLine(text, "x7k2p", probe="/health" in text))
        activity.flush()
        text = activity.log_pane.text()
        assert "[x7k2p] model loaded" in text and "chat/completions" in text
        assert probe not in text and "probe lines are hidden" in text
        await pilot.press("p")  # from the Activity tab, wherever focus is
        await settle(pilot)
        activity.feed(LogLine(probe, "x7k2p", probe=True))
        activity.flush()
        assert f"[x7k2p] {probe}" in activity.log_pane.text()


async def test_waiting_for_health_writes_a_line_per_change_or_ten_seconds_not_per_probe(make_app):
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        activity = app.main.activity
        activity.begin("deploy", "Deploy")
        for i in range(40):  # 20 s of probes every 0.5 s
            activity.feed(HealthWait("loading", i * 0.5, '{"status":"loading"}'))
        activity.feed(HealthWait("ok", 20.0))
        activity.flush()
        lines = [ln for ln in activity.log_pane.text().splitlines() if "endpoint:" in ln]
        assert len(lines) == 3, lines  # loading at 0 s and 10 s, then ok
        assert "ok after" in lines[-1]


async def test_lines_written_while_the_tab_was_hidden_show_their_end_when_it_opens(make_app):
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        pane = (await app.main.ensure_pane("activity")).log_pane
        pane.write_lines([f"early {i}" for i in range(60)])  # the Activity tab was never shown
        await settle(pilot)
        await pilot.press("f8")
        await settle(pilot)
        assert pane.following and pane.log.is_vertical_scroll_end and pane.log.max_scroll_y > 0
