"""The command line: clear one-line errors and non-zero exits, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_MASTER_KEY


def idp(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    return subprocess.run([sys.executable, "-m", "idp.cli", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IDP_ISUER": "x"}, "error: unknown setting IDP_ISUER (did you mean IDP_ISSUER?)"),
        ({"IDP_DATABASE_URL": "nonsense"}, "error: IDP_DATABASE_URL is not a database URL"),
        ({"IDP_REDIS_URL": "redis://127.0.0.1:1/0"}, "error: IDP_REDIS_URL: Redis is unreachable"),
        ({"IDP_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"},
         "error: the database at IDP_DATABASE_URL does not answer"),
        ({"IDP_MODE": "production"}, "error: production mode needs IDP_MASTER_KEY"),
        ({"IDP_TRUSTED_PROXIES": "*"}, "error: IDP_TRUSTED_PROXIES: '*' is not an IP address"),
        ({"IDP_MFA_REQUIRED_ROLES": "teacher,techer"},
         "error: IDP_MFA_REQUIRED_ROLES: unknown role techer"),
    ],
)
def test_bad_configuration_is_one_line(tmp_path: Path, env: dict[str, str], message: str) -> None:
    result = idp("serve", env={"IDP_VAR_DIR": str(tmp_path), **env})
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_workers_need_redis(tmp_path: Path) -> None:
    result = idp("serve", "--workers", "2", env={"IDP_VAR_DIR": str(tmp_path)})
    assert result.returncode == 2 and "needs IDP_REDIS_URL" in result.stderr


def demo_var(tmp_path: Path) -> dict[str, str]:
    """A fresh var directory, migrated, with the demo city: the environment to reach it."""
    env = {"IDP_VAR_DIR": str(tmp_path), "IDP_MASTER_KEY": TEST_MASTER_KEY}
    assert idp("db", "upgrade", env=env).returncode == 0
    assert idp("demo", env=env).returncode == 0
    return env


def test_upgrade_demo_verify_on_a_fresh_var(tmp_path: Path) -> None:
    env = {"IDP_VAR_DIR": str(tmp_path), "IDP_MASTER_KEY": TEST_MASTER_KEY}
    assert idp("db", "upgrade", env=env).returncode == 0
    first = idp("demo", env=env)
    assert first.returncode == 0, first.stderr
    demo = json.loads((tmp_path / "demo.json").read_text())
    assert (tmp_path / "demo.json").stat().st_mode & 0o077 == 0
    assert idp("demo", env=env).returncode == 0
    assert json.loads((tmp_path / "demo.json").read_text()) == demo  # idempotent
    verify = idp("audit", "verify", env=env)
    assert verify.returncode == 0 and "audit chain intact" in verify.stdout


def test_version() -> None:
    result = idp("version", env={})
    assert result.returncode == 0 and result.stdout.strip()


def _without_idp_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's IDP_* settings (the suite's own) out of the way, as ``idp()`` does."""
    for name in [k for k in os.environ if k.startswith("IDP_")]:
        monkeypatch.delenv(name)


def test_serve_gives_busy_workers_time_to_answer_the_supervisor(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn kills a worker that misses its supervisor's ping for 5 s by default; on a
    saturated host that is a busy worker and its sign-ins, so the default here is 30 s."""
    import uvicorn
    from typer.testing import CliRunner

    from idp import cli

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    _without_idp_settings(monkeypatch)
    monkeypatch.setenv("IDP_VAR_DIR", str(tmp_path))
    runner = CliRunner()
    assert runner.invoke(cli.app, ["serve"]).exit_code == 0
    assert seen["timeout_worker_healthcheck"] == cli.WORKER_HEALTHCHECK_SECONDS == 30
    assert runner.invoke(cli.app, ["serve", "--worker-healthcheck-seconds", "90"]).exit_code == 0
    assert seen["timeout_worker_healthcheck"] == 90
    refused = runner.invoke(cli.app, ["serve", "--worker-healthcheck-seconds", "0"])
    assert refused.exit_code == 2


def test_serve_believes_forwarded_headers_only_from_the_trusted_proxies(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind a load balancer (IDP_TRUSTED_PROXIES), the client is the rightmost address in
    X-Forwarded-For that is not a trusted proxy: what a client writes at the left of the
    header is never believed, and other peers' headers are ignored."""
    import uvicorn
    from fastapi.testclient import TestClient
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    from idp import cli

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    _without_idp_settings(monkeypatch)
    monkeypatch.setenv("IDP_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("IDP_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7")
    cli.serve(host="127.0.0.1", port=8000, workers=1, worker_healthcheck_seconds=30)
    assert seen["proxy_headers"] is True
    assert seen["forwarded_allow_ips"] == ["10.0.0.0/8", "192.0.2.7"]

    async def echo(scope, receive, send) -> None:
        body = f"{scope['client'][0]} {scope['scheme']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    wrapped = ProxyHeadersMiddleware(echo, trusted_hosts=seen["forwarded_allow_ips"])
    headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9", "X-Forwarded-Proto": "https"}
    balancer = TestClient(wrapped, client=("10.1.2.3", 40000))  # no lifespan: plain http
    assert balancer.get("/", headers=headers).text == "203.0.113.9 https"
    direct = TestClient(wrapped, client=("198.51.100.1", 40000))
    assert direct.get("/", headers=headers).text == "198.51.100.1 http"


def test_list_settings_are_comma_separated_in_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From the process environment, as ``idp serve`` reads them (pydantic-settings would
    otherwise parse a list setting as JSON and fail on ``teacher,city_admin``)."""
    from core.settings import load_settings

    _without_idp_settings(monkeypatch)
    monkeypatch.setenv("IDP_VAR_DIR", str(tmp_path))  # not the project's own var/
    monkeypatch.setenv("IDP_MFA_REQUIRED_ROLES", "teacher, city_admin")
    monkeypatch.setenv("IDP_SIGNING_ALGS", "SM2,RS256")
    monkeypatch.setenv("IDP_TRUSTED_PROXIES", "10.0.0.0/8,::1")
    settings = load_settings()
    assert settings.mfa_required_roles == ("teacher", "city_admin")
    assert settings.signing_algs == ("SM2", "RS256")
    assert settings.trusted_proxies == ("10.0.0.0/8", "::1")


@pytest.mark.parametrize("value", ["10.0.0.1/8", "*", "lb.internal"])
def test_a_trusted_proxy_uvicorn_would_not_match_is_refused(value: str) -> None:
    """uvicorn keeps what it cannot read as a network as a literal that never matches: such
    a setting would silently trust nobody, so it is refused up front."""
    from core.settings import ConfigError, load_settings

    with pytest.raises(ConfigError, match="IDP_TRUSTED_PROXIES"):
        load_settings({"IDP_TRUSTED_PROXIES": value})


def test_the_app_itself_refuses_an_unknown_mfa_role(settings) -> None:
    """Also when started without the CLI (uvicorn on idp.app:create_app, the tests)."""
    from idp.app import create_app

    with pytest.raises(ValueError, match="unknown role techer"):
        create_app(settings.model_copy(update={"mfa_required_roles": ("teacher", "techer")}))


@pytest.mark.parametrize("args", [("db", "upgrade", "nonsense"), ("db", "downgrade", "nonsense"),
                                  ("rollover", "--year", "0", "--dry-run"),
                                  ("rollover", "--year", "99999", "--dry-run"),
                                  ("rollover", "--year", "2027", "--dry-run",
                                   "--graduated-grace-days", "999999999")])
def test_bad_arguments_are_an_error_not_a_traceback(tmp_path: Path, args: tuple[str, ...]) -> None:
    env = {"IDP_VAR_DIR": str(tmp_path)}
    assert idp("db", "upgrade", env=env).returncode == 0
    result = idp(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "error" in result.stderr.lower()
