"""HIL tests run with the synack_hil pytest plugin (installed with synack); see docs/hil.md."""
