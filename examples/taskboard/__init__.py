"""A task board web service on an encspaces space: one process per member (see README.md)."""

from .app import create_app, serve

__all__ = ["create_app", "serve"]
