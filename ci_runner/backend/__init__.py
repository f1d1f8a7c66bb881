"""Where jobs run: the backend interface and its implementations."""
