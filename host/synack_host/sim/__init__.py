"""The virtual rig: a virtual board and virtual modems on pseudo-terminals."""
