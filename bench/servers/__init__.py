"""Contender servers the harness starts as their own processes (the Node one is started from npm's files)."""
