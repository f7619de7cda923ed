"""Example applications built on the encspaces SDK (not part of the installed package)."""
