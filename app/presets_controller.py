"""PresetsController: the sampling presets (app/presets.py) in the window's Generation controls (ui/controls.py):
choosing one sets its four sampling values, the box names the preset the values match ("Custom" for none), and
the user's own presets are saved and deleted from there."""
from engine.errors import SwitchboardError
from engine.generation import GenerationSettings

from .presets import Presets


class PresetsController:
    def __init__(self, presets: Presets, controls, message):
        """controls: the window's Controls; message(text): tell the user (the status bar)."""
        self.presets, self.controls, self._message = presets, controls, message
        controls.presetChosen.connect(self._choose)
        controls.savePresetRequested.connect(self._save)
        controls.deletePresetRequested.connect(self._delete)
        controls.changed.connect(self._match)
        self._list()

    def _settings(self) -> GenerationSettings:
        return GenerationSettings(**self.controls.values())

    def _list(self):
        shown = self.presets.all()
        self.controls.set_presets([p.name for p in shown], {p.name for p in shown if not p.builtin})
        if self.presets.problem:
            self._message(f"Your presets could not be read: {self.presets.problem}")
        self._match()

    def _match(self):
        preset = self.presets.matching(self._settings())
        self.controls.show_preset(preset.name if preset else None)

    def _choose(self, name: str):
        try:
            self.controls.set_values(self.presets.get(name).apply(self._settings()))
        except SwitchboardError as e:  # deleted from the file since it was listed
            self._message(str(e))
            self._list()

    def _save(self, name: str):
        try:
            self.presets.save(name, self._settings())
        except (OSError, SwitchboardError) as e:
            self._message(f"The preset was not saved: {e}")
        self._list()

    def _delete(self, name: str):
        try:
            self.presets.delete(name)
        except (OSError, SwitchboardError) as e:
            self._message(f"The preset was not deleted: {e}")
        self._list()
