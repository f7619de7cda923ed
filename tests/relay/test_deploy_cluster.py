"""deploy/compose.cluster.yaml and deploy/Dockerfile hold together: real services, real flags, one relay key.

No Docker engine runs the tests, so the compose file is read as Compose would (``docker compose
config`` when the compose plugin is installed, else YAML with its merge keys), and every
command in it is parsed by the program it starts: the relays' flags by the relay's own parser
(with the image's ``ENCSPACES_RELAY_*`` environment from the Dockerfile, as in the container)
and turned into a ``RelayConfig``, the witness's by the witness's parser. Anything renamed or
removed in the CLI, the packages or the services breaks these tests.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from encspaces.core.identity import parse_member_id
from encspaces_relay.__main__ import config_of, main, parse_args
from encspaces_relay.keys import KEY_FILE
from encspaces_relay.storage import is_postgres

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.cluster.yaml"
# Any relay public key, for ${RELAY_PUBLIC_KEY}: one that starts with "-", as 1 in 64 do, which an option must take.
PUBLIC_KEY = "-nGeHqlTdUuiWT2HfTi5KTGOQQS8iVtdosUxFlpbt44"
RELAYS = ("relay-a", "relay-b")


def _docker_compose() -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30, check=False)
    return done.returncode == 0


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as Compose sees it."""
    if _docker_compose():
        done = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "--format", "json"],
                              capture_output=True, text=True, timeout=60, check=True,
                              env={**os.environ, "RELAY_PUBLIC_KEY": PUBLIC_KEY})
        loaded: dict[str, Any] = json.loads(done.stdout)
        return loaded
    yaml = pytest.importorskip("yaml", reason="PyYAML (the dev extra) reads the compose file")
    text = COMPOSE.read_text().replace("${RELAY_PUBLIC_KEY:?", "${RELAY_PUBLIC_KEY:-")
    text = re.sub(r"\$\{RELAY_PUBLIC_KEY:-[^}]*\}", PUBLIC_KEY, text)  # what Compose interpolates
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def _dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continuation lines joined)."""
    joined = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _image_env() -> dict[str, str]:
    env = {}
    for word, rest in _dockerfile():
        if word == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def _relay_argv(service: dict[str, Any]) -> list[str]:
    """The argv of encspaces-relay in the service's ``sh -c`` entrypoint (after its exports)."""
    entry = service["entrypoint"]
    assert entry[:2] == ["sh", "-c"], entry
    script = entry[2].replace("$$", "$")
    secrets = {s["source"] if isinstance(s, dict) else s for s in service.get("secrets", [])}
    for name in re.findall(r"\$\(cat /run/secrets/([\w-]+)\)", script):
        assert name in secrets, f"the command reads the secret {name}, which the service does not mount"
    *exports, command = [part.strip() for part in script.split(";")]
    assert exports == ['export PGPASSWORD="$(cat /run/secrets/postgres_password)"'], exports
    argv = shlex.split(command)
    assert argv[:2] == ["exec", "encspaces-relay"], argv
    return argv[2:]


def _published(service: dict[str, Any]) -> set[int]:
    """The container ports a service publishes."""
    ports = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.add(int(port["target"]))
        else:
            ports.add(int(str(port).rsplit(":", 1)[1]))
    return ports


def test_the_cluster_has_its_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", "nats", "relay-a", "relay-b", "witness"}
    nats = compose["services"]["nats"]
    assert "--jetstream" in nats["command"]


def test_every_relay_command_is_a_valid_relay_configuration_on_the_clusters_database_and_bus(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    postgres = services["postgres"]["environment"]
    image_env = _image_env()
    for name in RELAYS:
        service = services[name]
        args = parse_args(_relay_argv(service), environ=image_env)
        config = config_of(args)  # raises on a bad combination (say --bus without a PostgreSQL store)
        assert is_postgres(config.store) and config.bus is not None
        store, bus = urlsplit(config.store), urlsplit(config.bus)
        assert store.hostname == "postgres" and (store.port or 5432) == 5432
        assert store.username == postgres["POSTGRES_USER"] and store.path == f"/{postgres['POSTGRES_DB']}"
        assert store.password is None, "the password comes from the secret (PGPASSWORD), not the command line"
        assert bus.scheme == "nats" and bus.hostname == "nats" and bus.port == 4222
        assert {config.port, args.metrics_port} <= _published(service), "the ports the relay listens on are published"
        assert str(config.data_dir) == "/data" and config.host == "0.0.0.0"
        depends = service["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy" and "nats" in depends
        assert [v for v in service["volumes"] if (v["target"] if isinstance(v, dict) else v.split(":")[1]) == "/data"]


def test_every_relay_signs_with_the_one_cluster_key(compose: dict[str, Any]) -> None:
    mounted = []
    for name in RELAYS:
        secrets = [s for s in compose["services"][name]["secrets"] if isinstance(s, dict) and s["target"].endswith(
            f"/{KEY_FILE}")]
        assert len(secrets) == 1, f"{name} mounts no relay key"
        assert secrets[0]["target"] == f"/data/{KEY_FILE}", "the relay reads its key from its data dir"
        mounted.append(secrets[0]["source"])
    assert len(set(mounted)) == 1, "both relays must sign with the same key"
    source = Path(compose["secrets"][mounted[0]]["file"])
    assert (source if source.is_absolute() else DEPLOY / source) == DEPLOY / "secrets" / KEY_FILE
    password = Path(compose["secrets"]["postgres_password"]["file"])
    assert (password if password.is_absolute() else DEPLOY / password) == DEPLOY / "secrets" / "postgres_password"
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"


def test_the_witness_command_is_valid_and_serves_the_clusters_key(compose: dict[str, Any]) -> None:
    from encspaces_witness.__main__ import parse_args as witness_args

    witness = compose["services"]["witness"]
    assert witness["entrypoint"] == ["encspaces-witness"]
    args = witness_args([str(word) for word in witness["command"]])
    assert [parse_member_id(k) for k in args.log_key], "a witness without --log-key refuses every checkpoint"
    assert args.log_key == [PUBLIC_KEY]
    assert args.host == "0.0.0.0" and args.port in _published(witness)
    check = " ".join(witness["healthcheck"]["test"])
    path = re.search(rf"http://127\.0\.0\.1:{args.port}(/\S*?)'", check)
    assert path is not None, check
    pytest.importorskip("aiohttp", reason="the witness extra serves the witness")
    from encspaces_witness.server import make_app

    routes = {r.canonical for r in make_app(object()).router.resources()}  # type: ignore[arg-type]
    assert path.group(1) in routes


def test_the_image_builds_from_what_the_repository_has(compose: dict[str, Any]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for name in (*RELAYS, "witness"):
        build = compose["services"][name]["build"]
        context = Path(build["context"])
        context = context if context.is_absolute() else (DEPLOY / context).resolve()
        assert context == ROOT and (context / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    instructions = _dockerfile()
    for word, rest in instructions:
        if word == "COPY":
            *sources, _ = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which the repository lacks"
    install = next(rest for word, rest in instructions if word == "RUN" and "pip install" in rest)
    extras = re.search(r"\.\[([\w,-]+)\]", install)
    assert extras is not None, install
    for extra in extras.group(1).split(","):
        assert extra in pyproject["project"]["optional-dependencies"], extra
    assert {"cluster", "witness"} <= set(extras.group(1).split(","))
    entry = next(rest for word, rest in instructions if word == "ENTRYPOINT")
    assert json.loads(entry)[0] in pyproject["project"]["scripts"]
    assert "encspaces-witness" in pyproject["project"]["scripts"]


def test_key_prints_the_public_key_and_creates_the_key_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secrets = tmp_path / "secrets"
    assert main(["key", "--data-dir", str(secrets)]) == 0
    first = capsys.readouterr().out.strip()
    seed = (secrets / KEY_FILE).read_bytes()
    assert len(parse_member_id(first)) == 32
    assert (secrets / KEY_FILE).stat().st_mode & 0o077 == 0 and secrets.stat().st_mode & 0o077 == 0
    assert main(["key", "--data-dir", str(secrets)]) == 0
    assert capsys.readouterr().out.strip() == first and (secrets / KEY_FILE).read_bytes() == seed
