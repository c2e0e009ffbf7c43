"""What the data say about a fine-tuning run: modalities, heads and label vocabularies."""

from __future__ import annotations

from dataclasses import dataclass, field

from finetune.heads import head_name


@dataclass
class TaskSpec:
    """Modalities, tasks and label vocabularies of a run, read from the training manifests.

    ``subjects`` is the identity vocabulary of the IAT head; ``subject_maps[modality]`` maps the
    subject index of that modality's training batches to it.
    """

    modalities: list[str]
    tasks: list[str]
    au_ids: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    subject_maps: dict[str, list[int]] = field(default_factory=dict)

    def head_sizes(self) -> dict[str, int]:
        """Output width of every head, keyed by :func:`~finetune.heads.head_name`."""
        sizes = {"au": len(self.au_ids), "expression": len(self.class_names)}
        return {head_name(task, modality): sizes[task] for modality in self.modalities for task in self.tasks}
