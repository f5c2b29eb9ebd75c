"""Wharf: five business data APIs from one fast, safe core."""
