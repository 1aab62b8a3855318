"""The deployment files name commands and settings that exist (no Docker engine or cluster runs them here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from proficio_cli import main
from proficio_ingest import IngestSettings
from proficio_projector import StreamSettings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
KNOWN_SETTINGS = {f"PROFICIO_{name.upper()}" for name in {*IngestSettings.model_fields, *StreamSettings.model_fields}}


def _containers() -> list[tuple[str, list[str], dict[str, Any]]]:
    """(where, proficio arguments, environment) of every Proficio container in compose and Kubernetes files."""
    found: list[tuple[str, list[str], dict[str, Any]]] = []
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        if service.get("image", "").startswith("proficio"):
            found.append((f"compose:{name}", service["command"], service.get("environment", {})))
    for document in yaml.safe_load_all((DEPLOY / "kubernetes" / "proficio.yaml").read_text()):
        spec = document.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []):
            environment = {e["name"]: e for e in container.get("env", [])}
            found.append((f"kubernetes:{document['metadata']['name']}", container["args"], environment))
        if document["kind"] == "ConfigMap":
            found.append(("kubernetes:configmap", ["migrate"], document["data"]))
    return found


@pytest.mark.parametrize(
    ("where", "arguments", "environment"), _containers(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_container_runs_a_real_command_with_known_settings(
    where: str, arguments: list[str], environment: dict[str, Any]
) -> None:
    result = CliRunner().invoke(main, [*arguments, "--help"])
    assert result.exit_code == 0, f"{where}: `proficio {' '.join(arguments)}` is not a command: {result.output}"
    unknown = {name for name in environment if name.startswith("PROFICIO_")} - KNOWN_SETTINGS
    assert not unknown, f"{where} sets settings Proficio does not read: {unknown}"


def test_compose_runs_every_role() -> None:
    roles = {arguments[0] for where, arguments, _ in _containers() if where.startswith("compose:")}
    assert roles == {"migrate", "serve", "relay", "project"}
