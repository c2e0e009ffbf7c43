"""Faces at build time: a detector with five landmarks, alignment to a canonical template, tracks through clips."""
