"""Data: the engine and request connections, versioned rows (crud), list queries and the
list envelope, cache generations, and migrations."""
