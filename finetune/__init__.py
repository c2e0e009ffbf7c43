"""Fine-tuning for AU detection and static/dynamic expression recognition, with IAT and MoAE."""
