"""The Parameters tab: a form over ``infra/provision/inference.parameters.json``.

One field per ``PARAMETER_SPECS`` entry (Select for choices, integer Input, a text area
with one command per line for lists); empty means "the template's default" (null, the
default shown as placeholder). Naming rules are checked as you type, beside the field.
Save validates everything, writes atomically through ``ParametersDocument`` (unknown
keys and key order kept) and keeps the form open on error with the first failure
focused. A file that does not parse is shown as an error and never written.
"""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Button, Label, Select, Static

from ...config.naming import (GPU_PROFILE_SIZES, PARAMETER_SPECS, SPECS_BY_NAME, NameError_, ParameterSpec,
                              fitting_resources, resource_fit_error)
from ...config.parameters import ParametersDocument
from ...errors import AitkError
from ..commands import bindings_for
from .inputs import Input, TextArea


def read_editor(spec: ParameterSpec, editor: Widget) -> tuple[Any, str | None]:
    """The field's value in the file's JSON type, and the rule it breaks (if any)."""
    value: Any
    if isinstance(editor, Select):
        value = None if editor.value is Select.NULL else editor.value
    elif isinstance(editor, TextArea):
        lines = [line.strip() for line in editor.text.splitlines()]
        value = [line for line in lines if line] or None
    else:
        text = editor.value.strip()  # type: ignore[attr-defined]
        value = text or None
        if value is not None and spec.kind == "int":
            try:
                value = int(text)
            except ValueError:
                return text, f"{spec.label} must be a whole number"
    if value is None:
        return None, (None if spec.nullable else f"{spec.label} is required")
    try:
        return spec.check(value), None
    except NameError_ as e:
        return value, str(e)


# What one line of a list field holds (the adapters field said "one command per line").
LIST_PLACEHOLDERS = {"defaultCommands": "one command per line",
                     "adapters": "NAME=/mount/models/NAME/adapter, one adapter per line"}


def shown_value(spec: ParameterSpec, value: Any) -> Any:
    """The file's value as its editor holds it (the inverse of ``read_editor``): a bool as its
    JSON spelling (``spec.check`` turns it back), a list one item a line, None as empty."""
    if spec.kind in ("choice", "bool"):
        if isinstance(value, bool):
            return "true" if value else "false"
        return value
    if spec.kind == "list":
        return "\n".join(str(v) for v in value) if isinstance(value, list) else ""
    return "" if value is None else str(value)


def select_options(spec: ParameterSpec, shown: Any) -> list[tuple[str, str]]:
    options = list(spec.choices)
    if isinstance(shown, str) and shown not in options:
        options.append(shown)  # keep an unexpected value visible (its error is shown)
    return [(c, c) for c in options]


def make_editor(spec: ParameterSpec, value: Any) -> Widget:
    # A field the template has no default for must not invite leaving it empty.
    placeholder = (f"default: {spec.default_hint}" if spec.default_hint
                   else "template default" if spec.nullable else "required")
    ident = f"field-{spec.name}"
    shown = shown_value(spec, value)
    if spec.kind in ("choice", "bool"):
        return Select(select_options(spec, shown), value=shown if shown is not None else Select.NULL,
                      allow_blank=spec.nullable, prompt=placeholder, compact=True, id=ident)
    if spec.kind == "list":
        return TextArea(shown, id=ident, soft_wrap=True, show_line_numbers=False, compact=True,
                        placeholder=LIST_PLACEHOLDERS.get(spec.name, "one item per line"))
    return Input(shown, placeholder=placeholder, compact=True, id=ident,
                 type="integer" if spec.kind == "int" else "text")


class ParametersForm(VerticalScroll):
    BINDINGS = bindings_for("params")
    HELP = """
## Parameters
The inference deployment parameters (`infra/provision/inference.parameters.json`).

- Leave a field **empty** to use the template's default (shown in grey).
- Names are checked against Azure's naming rules as you type.
- **ctrl+s** saves (atomic; other keys in the file are kept), **ctrl+r** reverts.
- Start-up commands: one command per line (ctrl+j or alt+enter for a new line
  in terminals where Enter is taken).
"""

    DEFAULT_CSS = """
    ParametersForm { height: 1fr; padding: 0 1; }
    ParametersForm #params-status { height: auto; color: $text-muted; }
    ParametersForm #file-error { display: none; color: $error; height: auto; padding: 1; border: round $error; }
    ParametersForm.-broken #file-error { display: block; }
    ParametersForm.-broken .field, ParametersForm.-broken #params-save { display: none; }
    ParametersForm .field { height: auto; margin-bottom: 1; }
    ParametersForm .field-label { text-style: bold; }
    ParametersForm .field-desc { color: $text-muted; }
    ParametersForm .field-error { color: $error; display: none; }
    ParametersForm .field.-invalid .field-error { display: block; }
    ParametersForm TextArea { height: 4; }
    ParametersForm #params-buttons { height: auto; margin-bottom: 1; }
    ParametersForm #params-buttons Button { margin-right: 2; }
    ParametersForm #params-extra { color: $text-muted; height: auto; }
    """

    class StateChanged(Message):
        """Dirty/invalid/broken changed, so the app can update what commands may run."""

        def __init__(self, dirty: bool, invalid: str | None, broken: str | None) -> None:
            super().__init__()
            self.dirty = dirty
            self.invalid = invalid
            self.broken = broken

    class Saved(Message):
        pass

    def __init__(self, doc_path, *, display_path: str | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.doc_path = doc_path
        self.display_path = display_path or str(doc_path)
        self.doc: ParametersDocument | None = None
        self.broken: AitkError | None = None
        self._loading = False

    def compose(self) -> ComposeResult:
        yield Static("", id="params-status", markup=False)
        yield Static("", id="file-error", markup=False)
        self._load_doc()
        values = self.doc.values() if self.doc else {}
        for spec in PARAMETER_SPECS:
            with Vertical(classes="field", id=f"row-{spec.name}"):
                yield Label(Content.assemble(spec.label, "  ", (spec.name, "dim")), classes="field-label", markup=False)
                yield Static(spec.description, classes="field-desc", markup=False)
                yield make_editor(spec, values.get(spec.name))
                yield Static("", classes="field-error", markup=False)
        yield Static("", id="params-extra", markup=False)
        with Horizontal(id="params-buttons"):
            yield Button("Save  ctrl+s", id="params-save", variant="primary", compact=True)
            yield Button("Revert  ctrl+r", id="params-revert", compact=True)

    def on_mount(self) -> None:
        self._refresh_all()

    # -- loading -------------------------------------------------------------------
    def _load_doc(self) -> None:
        try:
            self.doc = ParametersDocument.load(self.doc_path)
            self.broken = None
        except AitkError as e:  # ParametersFileError: shown, never written
            self.doc = None
            self.broken = e

    def editor(self, name: str) -> Widget:
        return self.query_one(f"#field-{name}")

    def revert(self) -> None:
        """Reload the file and put its values back in the fields."""
        self._load_doc()
        values = self.doc.values() if self.doc else {}
        self._loading = True
        try:
            # The same spelling as when the form was built: serveBase true came back as no
            # choice ("default: false"), an unsaved change that saved as null.
            for spec in PARAMETER_SPECS:
                editor = self.editor(spec.name)
                shown = shown_value(spec, values.get(spec.name))
                if isinstance(editor, Select):
                    editor.set_options(select_options(spec, shown))
                    editor.value = shown if shown is not None else Select.NULL
                elif isinstance(editor, TextArea):
                    editor.text = shown
                else:
                    editor.value = shown  # type: ignore[attr-defined]
        finally:
            self._loading = False
        self._refresh_all()

    # -- state ---------------------------------------------------------------------
    def field_values(self) -> dict[str, tuple[Any, str | None]]:
        values = {spec.name: read_editor(spec, self.editor(spec.name)) for spec in PARAMETER_SPECS}
        fit = self._fit_error(values)
        if fit is not None and not values[fit[0]][1]:
            values[fit[0]] = (values[fit[0]][0], fit[1])
        return values

    def _effective(self, values: dict[str, tuple[Any, str | None]], name: str) -> Any:
        """A field's value, or the template's default when it is empty."""
        value = values[name][0]
        if value is None and self.doc is not None:
            return self.doc.template_default(name)
        return value

    def _fit_error(self, values: dict[str, tuple[Any, str | None]]) -> tuple[str, str] | None:
        profile = self._effective(values, "gpuProfileType") or next(iter(GPU_PROFILE_SIZES))
        return resource_fit_error(profile, self._effective(values, "containerCpu"),
                                  self._effective(values, "containerMemory"))

    def _fit_to_profile(self) -> None:
        """Choosing a GPU profile whose size the container exceeds (the T4 after the A100's
        defaults) brings containerCpu/containerMemory down to the profile's size, and says so."""
        values = {spec.name: read_editor(spec, self.editor(spec.name)) for spec in PARAMETER_SPECS}
        if self._fit_error(values) is None:
            return
        profile = str(self._effective(values, "gpuProfileType"))
        fitting = fitting_resources(profile)
        for name, value in fitting.items():
            self.editor(name).value = str(value)  # type: ignore[attr-defined]
        self.notify(f"Container CPU and memory set to {fitting['containerCpu']} vCPU and "
                    f"{fitting['containerMemory']} to fit {profile} (ctrl+r reverts).", timeout=6)

    def dirty(self) -> bool:
        if self.doc is None:
            return False
        saved = self.doc.values()
        return any(value != saved.get(name) for name, (value, _err) in self.field_values().items())

    def _show_field_error(self, name: str, error: str | None) -> None:
        row = self.query_one(f"#row-{name}")
        appeared = bool(error) and not row.has_class("-invalid")
        row.set_class(bool(error), "-invalid")
        row.query_one(".field-error", Static).update(f"✕ {error}" if error else "")
        if appeared and self.screen.focused is not None and row in self.screen.focused.ancestors:
            # The field being typed in: its new error line is below it, often just off screen
            # at 80x24 (focus scrolled only the field itself into view).
            self.call_after_refresh(self.scroll_to_widget, row, animate=False)

    def _refresh_all(self) -> None:
        status = self.query_one("#params-status", Static)
        if self.broken is not None:
            self.add_class("-broken")
            self.query_one("#file-error", Static).update(
                f"{self.broken.message}\n{self.broken.detail or ''}\n\n"
                "Fix the file in an editor, then press ctrl+r to load it again.")
            status.update(self.display_path)
            self.post_message(self.StateChanged(False, None, self.broken.message))
            return
        self.remove_class("-broken")
        first_error = None
        for name, (_value, error) in self.field_values().items():
            self._show_field_error(name, error)
            if error and first_error is None:
                first_error = f"{SPECS_BY_NAME[name].label}: {error}"
        dirty = self.dirty()
        status.update(f"{self.display_path}  ·  " + ("unsaved changes" if dirty else "saved")
                      + ("" if not first_error else "  ·  has errors"))
        extra = [n for n in (self.doc.names() if self.doc else []) if n not in SPECS_BY_NAME]
        self.query_one("#params-extra", Static).update(
            f"Other parameters in the file, kept as they are: {', '.join(extra)}" if extra else "")
        self.post_message(self.StateChanged(dirty, first_error, None))

    @on(Input.Changed)
    @on(Select.Changed)
    @on(TextArea.Changed)
    def _edited(self, event: Message) -> None:
        event.stop()
        if not self._loading and self.is_mounted:
            if (isinstance(event, Select.Changed) and event.select.id == "field-gpuProfileType"
                    and self.doc is not None and event.value != self.doc.get("gpuProfileType")):
                self._fit_to_profile()  # a choice made now, not the file's value coming back on revert
            self._refresh_all()

    # -- saving --------------------------------------------------------------------
    def save(self) -> bool:
        """Validate all fields, then write; on failure focus the first bad field."""
        if self.doc is None:
            self.notify("The parameters file does not parse, so it was not saved over; fix it and press ctrl+r.",
                        severity="error")
            return False
        values = self.field_values()
        errors = {name: err for name, (_v, err) in values.items() if err}
        for name, (_v, err) in values.items():
            self._show_field_error(name, err)
        if errors:
            name, err = next(iter(errors.items()))
            editor = self.editor(name)
            editor.focus()
            self.scroll_to_widget(editor, animate=False)
            self.notify(f"Not saved: {err}.", title=SPECS_BY_NAME[name].label, severity="error")
            return False
        saved = self.doc.values()
        try:
            for name, (value, _err) in values.items():
                if value != saved.get(name):
                    self.doc.set(name, value)
            self.doc.save()
        except AitkError as e:
            self.notify(f"Not saved: {e.message}", severity="error")
            self.query_one("#params-status", Static).update(f"{self.display_path}  ·  not saved: {e.message}")
            return False
        self._load_doc()
        self._refresh_all()
        self.notify("Parameters saved.", timeout=3)
        self.post_message(self.Saved())
        return True

    @on(Button.Pressed, "#params-save")
    def _save_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.save()

    @on(Button.Pressed, "#params-revert")
    def _revert_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.revert()

    def action_save(self) -> None:
        self.save()

    def action_revert(self) -> None:
        self.revert()
        self.notify("Parameters reloaded from the file.", timeout=3)
