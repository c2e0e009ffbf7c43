"""Pictures logged after evaluation: a confusion matrix and per-AU F1 bars (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _render(figure: object) -> np.ndarray:
    figure.canvas.draw()  # type: ignore[attr-defined]
    picture = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()  # type: ignore[attr-defined]
    import matplotlib.pyplot as plt

    plt.close(figure)  # type: ignore[arg-type]
    return picture


def confusion_picture(confusion: np.ndarray, class_names: Sequence[str], title: str) -> np.ndarray:
    """RGB uint8 picture of a (true x predicted) confusion matrix, rows normalised to recall."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    support = confusion.sum(axis=1, keepdims=True)
    rates = np.divide(confusion, np.maximum(support, 1))
    size = 2.0 + 0.5 * len(class_names)
    figure, axes = plt.subplots(figsize=(size, size), dpi=80)
    axes.imshow(rates, vmin=0, vmax=1, cmap="Blues")
    ticks = range(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=45, ha="right")
    axes.set_yticks(ticks, class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for row in ticks:
        for col in ticks:
            axes.text(col, row, str(int(confusion[row, col])), ha="center", va="center", fontsize=7,
                      color="white" if rates[row, col] > 0.5 else "black")
    figure.tight_layout()
    return _render(figure)


def au_f1_picture(f1_by_setting: dict[str, np.ndarray], au_names: Sequence[str], title: str) -> np.ndarray:
    """RGB uint8 bar chart of per-AU F1 (in %), one bar group per AU and one colour per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(2.0 + 0.6 * len(au_names), 3.5), dpi=80)
    width = 0.8 / max(1, len(f1_by_setting))
    positions = np.arange(len(au_names))
    for offset, (setting, values) in enumerate(f1_by_setting.items()):
        axes.bar(positions + offset * width, 100 * np.asarray(values), width, label=f"{setting} (mean {100 * np.mean(values):.1f})")
    axes.set_xticks(positions + width * (len(f1_by_setting) - 1) / 2, au_names)
    axes.set_ylim(0, 100)
    axes.set_ylabel("F1 (%)")
    axes.set_title(title)
    axes.legend(fontsize=7)
    figure.tight_layout()
    return _render(figure)
