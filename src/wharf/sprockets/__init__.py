"""Sprocket types (seed 001)."""
