from __future__ import annotations

import stat
from pathlib import Path

import pytest

from core.settings import ConfigError, load_settings


def test_defaults_run_locally_and_generate_a_master_key_once(tmp_path: Path) -> None:
    settings = load_settings({"IDP_VAR_DIR": str(tmp_path)})
    assert settings.mode == "dev"
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'idp.sqlite3'}"
    assert settings.redis_url is None
    key_file = tmp_path / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = load_settings({"IDP_VAR_DIR": str(tmp_path)})
    assert again.master_key_bytes == settings.master_key_bytes
    assert len(settings.master_key_bytes) == 32


@pytest.mark.parametrize("name", ["IDP_TEST_DATABASE_URL", "IDP_BENCH_DATABASE_URL",
                                  "IDP_SCREENSHOTS", "IDP_FUZZ_SEED"])
def test_the_tests_and_benchmarks_variables_are_not_unknown_settings(tmp_path: Path,
                                                                     name: str) -> None:
    """Exported for a test or a benchmark run, they must not stop every idp command."""
    assert load_settings({"IDP_VAR_DIR": str(tmp_path), name: "x"}).mode == "dev"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"IDP_ISUER": "https://x"}, "unknown setting IDP_ISUER (did you mean IDP_ISSUER?)"),
        ({"IDP_DATABASE_URL": "not a url"}, "IDP_DATABASE_URL is not a database URL"),
        ({"IDP_DATABASE_URL": "mysql://u@h/db"}, "supported are sqlite and postgresql"),
        ({"IDP_REDIS_URL": "http://x"}, "IDP_REDIS_URL must start with redis://"),
        ({"IDP_ISSUER": "ftp://x"}, "IDP_ISSUER: must be an absolute http(s) URL"),
        ({"IDP_ISSUER": "https://x/?a=b"}, "must not contain a query"),
        ({"IDP_MASTER_KEY": "tooshort"}, "IDP_MASTER_KEY must be 32 random bytes"),
        ({"IDP_OLD_MASTER_KEYS": "nocolon"}, "IDP_OLD_MASTER_KEYS must look like"),
        ({"IDP_MODE": "staging"}, "IDP_MODE: Input should be 'dev' or 'production'"),
        ({"IDP_SM2_BACKEND": "fast"}, "IDP_SM2_BACKEND: must be auto, tongsuo or gmssl"),
        ({"IDP_DATABASE_POOL_SIZE": "many"}, "IDP_DATABASE_POOL_SIZE: Input should be a valid"),
        ({"IDP_SIGNING_ALGS": "RS256,ES256"}, "id_token_alg_default SM2 is not among signing_algs"),
        ({"IDP_SIGNING_ALGS": "SM2"}, "IDP_SIGNING_ALGS: must include RS256"),
        ({"IDP_ID_TOKEN_ALG_DEFAULT": "HS256"}, "IDP_ID_TOKEN_ALG_DEFAULT: Input should be"),
    ],
)
def test_bad_settings_give_one_line_errors(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"IDP_VAR_DIR": str(tmp_path), **environ})
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


def test_production_refuses_to_start_without_secrets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="production mode needs IDP_MASTER_KEY, IDP_DATABASE_URL"):
        load_settings({"IDP_VAR_DIR": str(tmp_path), "IDP_MODE": "production",
                       "IDP_ISSUER": "https://id.example.edu.cn"})
    assert not (tmp_path / "master.key").exists()


def test_production_needs_https_issuer(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="https:// IDP_ISSUER"):
        load_settings({"IDP_VAR_DIR": str(tmp_path), "IDP_MODE": "production",
                       "IDP_MASTER_KEY": "ab" * 32, "IDP_DATABASE_URL": "postgresql://h/db"})


def test_production_with_secrets_starts(tmp_path: Path) -> None:
    settings = load_settings({
        "IDP_VAR_DIR": str(tmp_path), "IDP_MODE": "production", "IDP_MASTER_KEY": "ab" * 32,
        "IDP_DATABASE_URL": "postgresql://h/db", "IDP_ISSUER": "https://id.example.edu.cn/",
    })
    assert settings.issuer == "https://id.example.edu.cn"
    assert settings.master_key_bytes == bytes([0xAB]) * 32


def test_errors_never_show_the_key(tmp_path: Path) -> None:
    secret = "S3cr3tS3cr3tS3cr3t"
    with pytest.raises(ConfigError) as caught:
        load_settings({"IDP_VAR_DIR": str(tmp_path), "IDP_MASTER_KEY": secret})
    assert secret not in str(caught.value)


def test_old_master_keys_parse(tmp_path: Path) -> None:
    settings = load_settings({"IDP_VAR_DIR": str(tmp_path),
                              "IDP_OLD_MASTER_KEYS": f"k0:{'cd' * 32}"})
    assert settings.old_master_key_bytes == {"k0": bytes([0xCD]) * 32}


def test_too_old_sqlite_is_a_config_error(monkeypatch, tmp_path) -> None:
    import sqlite3

    from core.db import make_engine

    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")
    with pytest.raises(ConfigError, match=r"SQLite 3\.34\.1 is too old"):
        make_engine(f"sqlite:///{tmp_path}/x.db")
