"""Evaluation shared by both stages: the one metrics module (AU F1, WAR, UAR), the linear probe, the identity probe, scoring a release, the demo table."""
