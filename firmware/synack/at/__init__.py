"""AT protocol: sans-I/O parser and command engine, plus blocking and asyncio drivers."""
