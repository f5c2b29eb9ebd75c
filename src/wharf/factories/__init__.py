"""Factories and their production readings (seed 001)."""
