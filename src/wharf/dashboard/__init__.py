"""The browser dashboard over all five systems (issue 11)."""
