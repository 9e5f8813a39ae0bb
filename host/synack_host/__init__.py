"""synack host tools: flashing, deploy, HIL harness and the virtual rig."""

__version__ = "0.1.0"
