"""MAE pretraining of one ViT encoder-decoder on face images and clips (S4D: an image is a static clip).

The model, engine and releases it runs on are shared with fine-tuning (:mod:`face_core`);
``face_core.load_model(path_or_uri)`` loads what pretraining writes.
"""
