"""What each command does: one ``_cmd_<id>`` method per entry of :data:`~aitk_tui.ui.commands.COMMANDS`.

Mixed into :class:`~aitk_tui.ui.app.AitkApp`; ``run_command`` calls these only once
:meth:`UIState.why_not` allowed it, so they can assume what the rule checked (a session,
a selected group, a complete config). Cloud work is started here and runs in the
workers of :mod:`aitk_tui.ui.operations`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.inference_config import APP_KEYS
from ..config.parameters import ParametersDocument
from ..errors import AitkError
from ..fsutil import atomic_write_text

if TYPE_CHECKING:
    from ..cloud.models import WhatIf
    from .app import AitkApp


class CommandHandlersMixin:
    def _cmd_help(self: "AitkApp") -> None:
        from .screens.help import HelpScreen, focused_help

        self.push_screen(HelpScreen(focused_help(self)))

    def _cmd_palette(self: "AitkApp") -> None:
        self.action_command_palette()

    def _cmd_quit(self: "AitkApp") -> None:
        from .screens.confirm_quit import ConfirmQuitScreen

        if not self.state.params_dirty:
            self.exit(0)
            return
        if isinstance(self.screen, ConfirmQuitScreen):  # F10 again on the question: stay on it
            return

        async def chosen(choice: str | None) -> None:
            if choice == "discard":
                self.exit(0)
            elif choice == "save":
                form = await self.ensure_pane("parameters")
                if form.save():
                    self.exit(0)
                else:
                    self.show_tab("parameters")  # the first bad field is focused, its error shown

        self.push_screen(ConfirmQuitScreen(), chosen)

    def _cmd_cancel(self: "AitkApp") -> None:
        self.cancel_operation()

    def _cmd_sign_in(self: "AitkApp") -> None:
        self.start_operation("sign_in", "Sign in", lambda: self.session.sign_in())

    def _cmd_select_subscription(self: "AitkApp") -> None:
        from .screens.picker import PickerItem, PickerScreen

        async def load() -> list[PickerItem]:
            subs = await self.session.list_subscriptions()
            return [PickerItem(s.id, s.name, f"{s.id} · {s.state}", s) for s in subs]

        def chosen(item: PickerItem | None) -> None:
            if item is None:
                return
            if item.id != self.state.subscription_id:
                self.state.resource_group = None
                self.state.location = None
            self.state.subscription_id, self.state.subscription_name = item.id, item.title
            self.remember()
            self.refresh_state()
            self.notify(f"Subscription {item.title} selected. Next: select a resource group (F4).", timeout=4)

        self.push_screen(PickerScreen("Select subscription", load, current=self.state.subscription_id,
                                      id="subscription-picker"), chosen)

    def _cmd_select_group(self: "AitkApp") -> None:
        from .screens.picker import PickerItem, PickerScreen

        subscription = self.state.subscription_id

        async def load() -> list[PickerItem]:
            groups = await self.session.list_resource_groups(subscription)
            return [PickerItem(g.name, g.name, g.location, g) for g in groups]

        def chosen(item: PickerItem | None) -> None:
            if item is None:
                return
            if item.id == "__create__":
                self.run_command("create_group")
                return
            self.state.resource_group, self.state.location = item.id, getattr(item.value, "location", None)
            self.remember()
            self.refresh_state()
            self.notify(f"Resource group {item.id} selected.", timeout=4)

        create = PickerItem("__create__", "+ Create resource group…", "a new group in this subscription")
        self.push_screen(PickerScreen("Select resource group", load, current=self.state.resource_group,
                                      extra=[create], id="group-picker"), chosen)

    def _cmd_create_group(self: "AitkApp") -> None:
        from .screens.create_group import CreateGroupScreen

        subscription = self.state.subscription_id

        async def create(name: str, location: str) -> Any:
            return await self.session.create_resource_group(subscription, name, location)

        def created(group: Any) -> None:
            if group is None:
                return
            self.state.resource_group, self.state.location = group.name, group.location
            self.remember()
            self.refresh_state()
            self.notify(f"Resource group {group.name} created in {group.location} and selected.", timeout=5)

        self.push_screen(CreateGroupScreen(self.state.subscription_name or subscription, create,
                                           default_location=self.state.location), created)

    async def _cmd_edit_parameters(self: "AitkApp") -> None:
        form = await self.ensure_pane("parameters")
        self.show_tab("parameters")
        if form.broken is None:
            form.scroll_home(animate=False)
            self.call_after_refresh(form.editor("defaultCommands").focus, False)

    def _load_params(self: "AitkApp") -> ParametersDocument | None:
        try:
            return ParametersDocument.load(self.project.parameters_path)
        except AitkError as e:
            self.notify(e.message, severity="error")
            return None

    def _cmd_what_if(self: "AitkApp") -> None:
        params = self._load_params()
        if params is not None:
            self.provision_after_what_if = None
            sub, group = self.state.subscription_id, self.state.resource_group
            self.start_operation("what_if", "Preview provisioning", lambda: self.session.what_if(sub, group, params))

    def _cmd_provision(self: "AitkApp") -> None:
        """The what-if first; its summary asks for Enter before anything is deployed (as the CLI asks)."""
        params = self._load_params()
        if params is not None:
            sub, group = self.state.subscription_id, self.state.resource_group
            self.provision_after_what_if = (sub, group, params)
            self.start_operation("what_if", "Preview provisioning", lambda: self.session.what_if(sub, group, params))

    def confirm_provision(self: "AitkApp", what_if: "WhatIf") -> None:
        """After the what-if of F5: the summary in a dialog; Enter provisions, Esc changes nothing."""
        pending, self.provision_after_what_if = self.provision_after_what_if, None
        if pending is None:
            return
        from .screens.confirm_provision import ConfirmProvisionScreen

        sub, group, params = pending

        def answered(yes: bool | None) -> None:
            if not yes:
                self.activity.log_pane.write_lines(["Provisioning cancelled: nothing was changed."])
                return
            reason = self.state.why_not("provision")
            if reason:
                self.notify(f"Not yet: {reason}.", title="Provision", severity="warning", timeout=6)
                return
            self.start_operation("provision", "Provision", lambda: self.session.provision(sub, group, params))

        self.push_screen(ConfirmProvisionScreen(what_if.changes, resource_group=group,
                                                subscription=self.state.subscription_name or sub,
                                                estimated=what_if.estimated,
                                                cost=self._cost_estimate(params)), answered)

    def _cost_estimate(self: "AitkApp", params: ParametersDocument) -> Any:
        """The app's cost estimate for the provision dialog (None: no template, or a GPU profile
        the price table does not know; the dialog then shows none rather than a wrong figure)."""
        from ..cloud.prices import estimate_for_project

        return estimate_for_project(params.values(), self.project.template_path)

    def _cmd_deploy(self: "AitkApp") -> None:
        config = self.state.config
        self.start_operation("deploy", "Deploy", lambda: self.session.deploy(config))

    def _cmd_keep_warm(self: "AitkApp") -> None:
        self._scale_min(1, "Keep warm")

    def _cmd_let_sleep(self: "AitkApp") -> None:
        self._scale_min(0, "Let it sleep")

    def _scale_min(self: "AitkApp", replicas: int, title: str) -> None:
        from ..cloud.operate import ScaleRequest

        config, request = self.state.config, ScaleRequest(min_replicas=replicas)
        self.start_operation("scale", title, lambda: self.session.scale(config, request))

    def _cmd_upload_models(self: "AitkApp") -> None:
        from .screens.upload_models import UploadModelsScreen

        config = self.state.config

        def chosen(request: Any) -> None:
            if request is None:
                return
            reason = self.state.why_not("upload_models")
            if reason:
                self.notify(f"Not yet: {reason}.", title="Upload", severity="warning", timeout=6)
                return
            self.start_operation("upload_models", "Upload model/adapter",
                                 lambda: self.session.upload_models(config, request))

        self.push_screen(UploadModelsScreen(config.FILE_SHARE_NAME or ""), chosen)

    def _cmd_teardown(self: "AitkApp") -> None:
        self._teardown(everything=False)

    def _cmd_teardown_all(self: "AitkApp") -> None:
        self._teardown(everything=True)

    def _teardown(self: "AitkApp", everything: bool) -> None:
        """What would be deleted first (everything: read from the provisioning deployment), then
        the question (typed for everything, as ``aitk down --all`` asks); the deletion then runs
        as an operation whose progress goes to the Activity tab."""
        config = self.state.config
        command = "teardown_all" if everything else "teardown"
        title = "Tear down everything" if everything else "Tear down"

        async def ask() -> None:
            from .operations import describe_failure
            from .screens.typed_confirm import ConfirmTeardownScreen

            try:
                plan = await self.session.teardown_plan(config, everything=everything)
            except Exception as e:  # noqa: BLE001 - one sentence for the user
                message, detail = describe_failure(e)
                self.notify(f"{message}{f' ({detail})' if detail else ''}", title=title, severity="error",
                            timeout=10)
                return

            def answered(yes: bool | None) -> None:
                if not yes:
                    self.notify("Nothing was deleted.", title=title, timeout=4)
                    return
                reason = self.state.why_not(command)
                if reason:
                    self.notify(f"Not yet: {reason}.", title=title, severity="warning", timeout=6)
                    return
                self.start_operation("teardown", title, lambda: self.session.tear_down(config, plan))

            self.push_screen(ConfirmTeardownScreen(plan, typed=plan.resource_group if everything else None),
                             answered)

        self.run_worker(ask(), group="teardown-plan", exclusive=True, exit_on_error=False)

    def _cmd_replica_logs(self: "AitkApp") -> None:
        config = self.state.config
        self.start_operation("replica_logs", "Replica logs", lambda: self.session.replica_logs(config, follow=True))

    async def _cmd_go_to_endpoint(self: "AitkApp") -> None:
        config = self.state.config
        assert config is not None and config.endpoint_url
        chat = await self.ensure_pane("chat")
        self.show_tab("chat")
        typed = chat.endpoint_url()
        if typed and typed.rstrip("/") != config.endpoint_url.rstrip("/"):
            # A URL typed under Settings is the user's choice: say it was replaced, and by what.
            self.notify(f"The chat now sends to the app's endpoint {config.endpoint_url} (it was set to {typed}; "
                        "type that under Settings to go back).", title="Endpoint", timeout=8)
        chat.set_endpoint(config.endpoint_url, None)
        if not config.missing(*APP_KEYS) and self.session:
            self.fetch_api_key(config)
        self.call_after_refresh(self.chat.query_one("#prompt").focus)

    def _cmd_open_config(self: "AitkApp") -> None:
        from .screens.config_viewer import ConfigScreen

        def closed(saved: bool | None) -> None:
            if saved:
                self.reload_config()

        self.push_screen(ConfigScreen(self.project.config_path), closed)

    def _cmd_show_activity(self: "AitkApp") -> None:
        self.show_tab("activity")

    async def _cmd_activity_probes(self: "AitkApp") -> None:
        await self.ensure_pane("activity")
        self.show_tab("activity")
        shown = self.activity.toggle_probes()
        self.notify(f"Health-probe lines {'shown' if shown else 'hidden'}.", timeout=3)

    def _cmd_activity_follow(self: "AitkApp") -> None:
        self.activity.log_pane.follow()

    def _cmd_show_azure(self: "AitkApp") -> None:
        self.show_tab("azure")

    async def _cmd_show_endpoint(self: "AitkApp") -> None:
        await self.ensure_pane("endpoint")
        self.show_tab("endpoint")

    async def _cmd_endpoint_logs(self: "AitkApp") -> None:
        view = await self.ensure_pane("endpoint")
        self.show_tab("endpoint")
        kind = view.toggle_log_kind()
        self.notify(f"Endpoint log: {kind}.", timeout=3)

    async def _cmd_endpoint_probes(self: "AitkApp") -> None:
        view = await self.ensure_pane("endpoint")
        shown = view.toggle_probes()
        self.notify(f"Health-probe lines {'shown' if shown else 'hidden'}.", timeout=3)

    async def _cmd_endpoint_raw(self: "AitkApp") -> None:
        view = await self.ensure_pane("endpoint")
        raw = view.toggle_raw()
        self.notify(f"Log lines {'as sent (raw)' if raw else 'as time, level and message'} from here on.", timeout=3)

    def _cmd_refresh_status(self: "AitkApp") -> None:
        self.reload_config()
        self.check_health()
        for view in self.query("#endpoint-view"):  # shown: read it now, not at the next tick
            view.refresh_now()  # type: ignore[attr-defined]

    def _cmd_copy_endpoint(self: "AitkApp") -> None:
        url = self.state.config.endpoint_url if self.state.config else None
        if url:
            self.copy_to_clipboard(url)
            self.notify(f"Copied {url}", timeout=3)

    def _cmd_copy_answer(self: "AitkApp") -> None:
        if not self.query("#chat-pane") or not self.chat.last_answer:
            self.notify("No answer to copy yet.", severity="warning")
            return
        self.copy_to_clipboard(self.chat.last_answer)
        self.notify("Last answer copied.", timeout=3)

    def _save_file(self: "AitkApp", folder: str, stem: str, suffix: str, text: str) -> Path | None:
        path = self.project.state_dir / folder / f"{stem}-{self.clock():%Y%m%d-%H%M%S}{suffix}"
        from ..errors import redact

        try:  # a key pasted into the chat (or echoed by a model) must not land in a file
            atomic_write_text(path, redact(text))
        except OSError as e:
            self.notify(f"Could not write {path}: {e}", severity="error")
            return None
        self.notify(f"Saved {path}", timeout=5)
        return path

    def _cmd_save_activity(self: "AitkApp") -> None:
        self.activity.flush()
        self._save_file("logs", "activity", ".log", self.activity.save_text())

    async def _cmd_new_chat(self: "AitkApp") -> None:
        chat = await self.ensure_pane("chat")
        self.show_tab("chat")
        await chat.new_conversation()

    def _cmd_save_chat(self: "AitkApp") -> None:
        if not self.query("#chat-pane") or not self.chat.turns:
            self.notify("Nothing to save yet: the conversation is empty.", severity="warning")
            return
        self._save_file("chats", "chat", ".md", self.chat.transcript_markdown())

    async def _cmd_params_save(self: "AitkApp") -> None:
        form = await self.ensure_pane("parameters")
        self.show_tab("parameters")
        form.save()

    async def _cmd_params_revert(self: "AitkApp") -> None:
        form = await self.ensure_pane("parameters")
        self.show_tab("parameters")
        form.action_revert()
