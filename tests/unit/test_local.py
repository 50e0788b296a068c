"""reco.local without servers: where it finds the install scripts, which ports it gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from reco.local import servers
from reco.local.servers import RedisServer, ServerError
from reco.local.stack import README_PORTS, ROLES, Stack

pytestmark = pytest.mark.unit


def test_tools_are_found_in_the_checkout() -> None:
    assert (servers.tools_dir() / "install-kafka.sh").is_file()


def test_without_a_checkout_starting_a_server_says_to_run_from_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # What an engine installed from a wheel sees: no tools/ beside the package.
    monkeypatch.setattr(servers, "REPO_ROOT", tmp_path)
    servers._service_paths.cache_clear()
    with pytest.raises(ServerError, match="checkout"):
        RedisServer(base_dir=tmp_path).start()
    servers._service_paths.cache_clear()


def test_stack_takes_the_ports_given_and_free_ones_for_the_rest(tmp_path: Path) -> None:
    stack = Stack({}, tmp_path, ports={"processor": README_PORTS["processor"]})
    assert stack["processor"].port == 8082
    assert stack["processor"].url == "http://127.0.0.1:8082"
    assert stack["processor"].env["RECO_PORT"] == "8082"
    others = {stack[role].port for role in ROLES if role != "processor"}
    assert len(others) == 3
    assert not others & set(README_PORTS.values())


def test_stack_refuses_a_port_for_a_role_it_does_not_run(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown roles"):
        Stack({}, tmp_path, ports={"apl": 8080})


def test_readme_ports_are_the_roles_defaults() -> None:
    from reco.settings import ApiSettings, ArchiverSettings, IngestSettings, ProcessorSettings

    # The fields' defaults, not instances: a RECO_PORT in the environment would win there.
    defaults = {
        "api": ApiSettings.model_fields["port"].default,
        "ingest": IngestSettings.model_fields["port"].default,
        "processor": ProcessorSettings.model_fields["port"].default,
        "archiver": ArchiverSettings.model_fields["port"].default,
    }
    assert defaults == README_PORTS
