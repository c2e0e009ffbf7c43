"""The model: the shared image/clip ViT and the masked autoencoder, in plain PyTorch.

Nothing here imports the training engine, the releases or Lightning (checked by import-linter):
``vit``, ``mae``, ``masking``, ``patches``, ``pos_embed``, their ``config``, FLOP counts and the
converter of public MAE / FMAE / VideoMAE / S4D checkpoint layouts (``checkpoint_formats``).
"""
