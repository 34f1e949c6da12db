"""`aigc serve --ray` refuses what it cannot start with, before it starts anything: these run with or
without the ray extra (tests/test_ray_serve.py runs the deployments themselves)."""

from __future__ import annotations

import sys

from click.testing import CliRunner

from aigc_studio.cli.main import cli


def test_serve_ray_without_the_extra_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as it does where it is not installed
    result = CliRunner().invoke(cli, ["serve", "--ray", "--port", "7861"])
    assert result.exit_code == 1
    assert "Ray Serve is not installed: .venv/bin/pip install -e '.[ray]'" in result.output
    assert "Traceback" not in result.output


def test_serve_ray_refuses_more_min_than_max_replicas(monkeypatch):
    monkeypatch.setenv("AIGC_RAY_MIN_REPLICAS", "3")
    monkeypatch.setenv("AIGC_RAY_MAX_REPLICAS", "2")
    result = CliRunner().invoke(cli, ["serve", "--ray"])
    assert result.exit_code == 1
    assert "ray_min_replicas (3) must not be more than ray_max_replicas (2)" in result.output


def test_serve_ray_refuses_an_address_that_is_not_one(monkeypatch):
    result = CliRunner().invoke(cli, ["serve", "--ray", "--address", "http://head:8265/"])
    assert result.exit_code == 1
    assert "ray_address must be empty (a local cluster), auto, ray://HOST:PORT or HOST:PORT" in result.output
    assert "'http://head:8265/'" in result.output
