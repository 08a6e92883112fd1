"""The meta-learning tab: two panels, each in its own module and each opening on its shipped
result: (A) MAML, Reptile and joint pre-training on few-shot sinusoid regression
(:mod:`.meta_sinusoid`); (B) few-shot calibration of the DOA network to perturbed arrays
(:mod:`.meta_calibration`). Nothing here imports torch; the panels' jobs do.
"""

from __future__ import annotations

import importlib.util

from doascope.app.gui.tabs import Tab
from doascope.app.gui.tabs.meta_calibration import CAL_METHODS, SHIPPED_CALIBRATION, CalibrationPanel  # noqa: F401
from doascope.app.gui.tabs.meta_sinusoid import SHIPPED, SinusoidPanel  # noqa: F401
from PySide6 import QtWidgets

TORCH_HINT = "needs PyTorch: pip install 'doascope[dnn]'"


class MetaTab(Tab):
    title = "Meta-learning"
    order = 60

    @classmethod
    def unavailable(cls) -> str | None:
        return None if importlib.util.find_spec("torch") is not None else TORCH_HINT

    def __init__(self, context, *, shipped: bool = True):
        super().__init__(context)
        self.sinusoid = SinusoidPanel(context, shipped=SHIPPED if shipped else None)
        self.calibration = CalibrationPanel(context, shipped=SHIPPED_CALIBRATION if shipped else None)
        self.panels = QtWidgets.QTabWidget()
        self.panels.addTab(self.sinusoid.widget, "A: sinusoids")
        self.panels.addTab(self.calibration.widget, "B: array calibration")
        self.widget = QtWidgets.QWidget()
        outer = QtWidgets.QVBoxLayout(self.widget)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.panels)

    def activate(self) -> None:
        """The first time the tab is shown, both panels draw their shipped results."""
        self.sinusoid.show_shipped()
        self.calibration.show_shipped()

    def shutdown(self) -> None:
        self.sinusoid.shutdown()
        self.calibration.shutdown()
