"""WebDataset shards of face images and clips: build, verify, synthesise, and stream them to training."""
