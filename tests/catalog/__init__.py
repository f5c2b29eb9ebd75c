"""Tests of the car catalog."""
