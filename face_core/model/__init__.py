"""The model: the shared image/clip ViT, the masked autoencoder and the task model (heads, IAT, MoAE), in plain PyTorch.

Nothing here imports the training engine, the releases or Lightning (checked by import-linter):
``vit``, ``mae``, ``masking``, ``patches``, ``pos_embed``, ``task_model`` (pooled feature, task heads,
the gradient-reversed identity head), ``adapters`` (MoAE), their ``config``, FLOP counts and the
converter of public MAE / FMAE / VideoMAE / S4D checkpoint layouts (``checkpoint_formats``).
"""
