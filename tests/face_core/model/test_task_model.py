"""The task model's heads (face_core.model.task_model.TaskSpec) exist only where the data carry the labels."""

from face_core.model.task_model import TaskSpec


def test_heads_follow_the_labels_of_each_modality() -> None:
    spec = TaskSpec(["image", "clip"], ["au", "expression"], au_ids=["1", "2"], class_names=["a", "b", "c"],
                    modality_tasks={"image": ["expression"], "clip": ["au", "expression"]})
    assert spec.head_sizes() == {"expression_image": 3, "au_clip": 2, "expression_clip": 3}
    assert TaskSpec(["image"], ["au"], au_ids=["1"]).head_sizes() == {"au_image": 1}
