"""The sample collaborative editor (Textual): ``encspaces edit SPACE [DOC]``."""

from .app import EditorApp, HelpScreen, run_editor
from .textarea import SharedTextArea

__all__ = ["EditorApp", "HelpScreen", "SharedTextArea", "run_editor"]
