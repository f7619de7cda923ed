"""Where things live: the home folder, this device's list of known spaces, and the command's context."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from encspaces.core.identity import Identity, decode_space_id
from encspaces.core.private_file import replace_private

from .errors import CliError

ENV_HOME = "ENCSPACES_HOME"
ENV_IDENTITY = "ENCSPACES_IDENTITY"
ENV_DATA = "ENCSPACES_DATA"
ENV_RELAY = "ENCSPACES_RELAY"
ENV_NAME = "ENCSPACES_NAME"
DEFAULT_RELAY = "ws://127.0.0.1:8765"
DEFAULT_DOC = "notes"
DEFAULT_TIMEOUT = 10.0
REGISTRY_FILE = "spaces.json"
REGISTRY_VERSION = 1


def default_home() -> Path:
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "encspaces"


def relay_list(given: list[str] | None) -> tuple[str, ...]:
    """The relays a command was given: every ``--relay`` (each may list several, comma-separated),
    else ``$ENCSPACES_RELAY`` (the same), else the local default. Several are a cluster's relays,
    which the space fails over between."""
    values = given or [os.environ.get(ENV_RELAY) or DEFAULT_RELAY]
    urls = [url.strip() for value in values for url in value.split(",") if url.strip()]
    return tuple(dict.fromkeys(urls)) or (DEFAULT_RELAY,)


@dataclasses.dataclass(frozen=True)
class SpaceRef:
    """A space this device knows: its local name, id, relays and where its local store lives."""

    name: str
    id: str
    relays: tuple[str, ...]  # one relay, or a cluster's relays in the order to try them
    data_dir: Path

    @property
    def relay(self) -> str:
        """The relays, as messages name them."""
        return " or ".join(self.relays)

    @property
    def space_bytes(self) -> bytes:
        return decode_space_id(self.id)

    @property
    def folder(self) -> Path:
        """The folder of this space's local store."""
        return self.data_dir / self.space_bytes.hex()

    def require_local_copy(self) -> None:
        """Raise unless this device holds a local copy of the space."""
        if not self.folder.exists():
            raise CliError(f"this device holds no copy of {self.name!r} in {self.data_dir}: open it once online")


class Registry:
    """``spaces.json`` in the home folder: local name -> space id, relay URLs, data folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.spaces: dict[str, SpaceRef] = {}
        if path.exists():
            self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict) or raw.get("version") != REGISTRY_VERSION:
                raise ValueError(f"expected version {REGISTRY_VERSION}")
            for name, item in raw["spaces"].items():
                relays = item["relays"] if "relays" in item else [item["relay"]]  # "relays": since failover
                if not isinstance(relays, list) or not relays:
                    raise ValueError(f"{name}: relays is not a list of URLs")
                self.spaces[name] = SpaceRef(name, str(item["id"]), tuple(str(url) for url in relays),
                                             Path(item["data_dir"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CliError(f"the list of spaces {self.path} is unreadable ({exc}): fix or move it away") from exc

    def save(self) -> None:
        data = {
            "version": REGISTRY_VERSION,
            "spaces": {
                # "relay" (the first) for older versions of this command, which read only it
                ref.name: {"id": ref.id, "relay": ref.relays[0], "relays": list(ref.relays),
                           "data_dir": str(ref.data_dir)}
                for ref in sorted(self.spaces.values(), key=lambda r: r.name)
            },
        }
        replace_private(self.path, (json.dumps(data, indent=2) + "\n").encode())  # 0600 in a 0700 home

    def add(self, ref: SpaceRef) -> None:
        self.spaces[ref.name] = ref
        self.save()

    def by_id(self, space_id: str) -> SpaceRef | None:
        return next((ref for ref in self.spaces.values() if ref.id == space_id), None)

    def resolve(self, text: str) -> SpaceRef:
        """A space by local name, by id, or by an unambiguous prefix of its id."""
        if text in self.spaces:
            return self.spaces[text]
        found = self.by_id(text)
        if found is not None:
            return found
        if len(text) >= 4:
            matches = [ref for ref in self.spaces.values() if ref.id.startswith(text)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise CliError(f"{text!r} matches several spaces ({', '.join(r.name for r in matches)}): use a name")
        known = ", ".join(sorted(self.spaces)) or "none yet"
        raise CliError(f"no space named {text!r} on this device (known: {known}): "
                       "`encspaces create NAME` makes one, `encspaces join LINK` joins one")


@dataclasses.dataclass
class Context:
    """What every command needs: where things live, and how long to wait for the relay."""

    home: Path
    identity_path: Path
    data_dir: Path
    timeout: float
    debug: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Context:
        home = Path(getattr(args, "home", None) or default_home())
        identity = getattr(args, "identity", None) or os.environ.get(ENV_IDENTITY) or home / "identity.key"
        data = getattr(args, "data_dir", None) or os.environ.get(ENV_DATA) or home / "data"
        timeout = getattr(args, "timeout", None)
        return cls(home, Path(identity), Path(data).absolute(), DEFAULT_TIMEOUT if timeout is None else timeout,
                   bool(getattr(args, "debug", False)))

    def identity(self) -> Identity:
        if not self.identity_path.exists():
            raise CliError(f"no identity at {self.identity_path}: run `encspaces init` first")
        return Identity.load(self.identity_path)

    def registry(self) -> Registry:
        return Registry(self.home / REGISTRY_FILE)
