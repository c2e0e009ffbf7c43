"""What the data say about a fine-tuning run: modalities, heads and label vocabularies."""

from __future__ import annotations

from dataclasses import dataclass, field

from finetune.heads import head_name


@dataclass
class TaskSpec:
    """Modalities, tasks and label vocabularies of a run, read from the training manifests.

    ``subjects`` is the identity vocabulary of the IAT head; ``subject_maps[modality]`` maps the
    subject index of that modality's training batches to it. ``modality_tasks`` lists, per
    modality, the tasks whose labels its shards carry (absent = every task): a run may learn
    expression from images and AUs from clips.
    """

    modalities: list[str]
    tasks: list[str]
    au_ids: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    subject_maps: dict[str, list[int]] = field(default_factory=dict)
    modality_tasks: dict[str, list[str]] = field(default_factory=dict)

    def tasks_for(self, modality: str) -> list[str]:
        """The tasks that have a head for ``modality``."""
        return list(self.modality_tasks.get(modality, self.tasks))

    def head_sizes(self) -> dict[str, int]:
        """Output width of every head, keyed by :func:`~finetune.heads.head_name`."""
        sizes = {"au": len(self.au_ids), "expression": len(self.class_names)}
        return {head_name(task, modality): sizes[task] for modality in self.modalities for task in self.tasks_for(modality)}
