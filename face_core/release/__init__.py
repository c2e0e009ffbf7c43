"""Releases: the release folder format, the pretrained and fine-tuned (``task``) kinds, loading any checkpoint, the MLflow registry, exports.

Each release kind names its loader module in its ``config.json``; the registry imports that
module by the name the folder records, so nothing here names an upper layer.
"""
