"""MAE pretraining of one ViT encoder-decoder on face images and clips (S4D: an image is a static clip)."""
