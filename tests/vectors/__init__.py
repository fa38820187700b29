"""Known-answer vectors, copied into the repository (tests never read /work/shared)."""
