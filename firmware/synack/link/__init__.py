"""Links a device reaches the network over (a link has up(), down(), is_up())."""
