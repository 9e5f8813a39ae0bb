"""Hardware-in-the-loop harness: reference servers (more to come: pytest plugin, capture)."""
