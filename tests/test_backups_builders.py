"""Pure parts of backups: the exact command lines per engine (on the host and inside a Compose
service), and the streaming compression (round trip, damage and truncation detection)."""

import io
import os

import pytest

from deploy_ops import compression
from deploy_ops.databases import engine_for, postgresql, sniff_vendor
from deploy_ops.databases import mysql as mysql_engine
from deploy_ops.exceptions import ConfigurationError

pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")

PG = {
    "ENGINE": "django.db.backends.postgresql",
    "NAME": "site",
    "USER": "app",
    "PASSWORD": "pg-secret",
    "HOST": "db.internal",
    "PORT": "5433",
}
MY = {"ENGINE": "django.db.backends.mysql", "NAME": "site", "USER": "app", "PASSWORD": "my-secret", "HOST": "db.internal", "PORT": "3307"}


def test_pg_dump_command_passes_the_password_by_environment_only():
    command = postgresql.dump_command(PG)
    assert command.argv == ("pg_dump", "--no-password", "-U", "app", "-h", "db.internal", "-p", "5433", "-d", "dbname='site'")
    assert command.env == {"PGPASSWORD": "pg-secret"}
    assert command.secrets == ("pg-secret",)


def test_psql_restore_command_is_one_transaction_stopping_at_the_first_error():
    command = postgresql.restore_command(PG)
    assert command.argv == (
        "psql",
        "-X",
        "-q",
        "-1",
        "-v",
        "ON_ERROR_STOP=1",
        "--no-password",
        "-U",
        "app",
        "-h",
        "db.internal",
        "-p",
        "5433",
        "-d",
        "dbname='site'",
    )
    assert command.env == {"PGPASSWORD": "pg-secret"}


def test_postgres_ssl_options_go_to_libpq_environment_variables():
    command = postgresql.version_command({**PG, "PASSWORD": "", "OPTIONS": {"sslmode": "require", "sslrootcert": "/ca.pem"}})
    assert command.argv == (
        "psql",
        "-X",
        "-A",
        "-t",
        "--no-password",
        "-U",
        "app",
        "-h",
        "db.internal",
        "-p",
        "5433",
        "-d",
        "dbname='site'",
        "-c",
        "SHOW server_version",
    )
    assert command.env == {"PGSSLMODE": "require", "PGSSLROOTCERT": "/ca.pem"}
    assert command.secrets == ()


def test_postgres_service_passfile_and_client_certificates_reach_libpq_as_dbshell_gives_them():
    options = {"service": "site", "passfile": "/run/pgpass", "sslmode": "verify-full", "sslcert": "/client.crt", "sslkey": "/client.key"}
    command = postgresql.dump_command({"ENGINE": "django.db.backends.postgresql", "NAME": "", "PASSWORD": "", "OPTIONS": options})
    # With a service and no NAME, the service file names the database: no -d overrides it.
    assert command.argv == ("pg_dump", "--no-password")
    assert command.env == {
        "PGSERVICE": "site",
        "PGPASSFILE": "/run/pgpass",
        "PGSSLMODE": "verify-full",
        "PGSSLCERT": "/client.crt",
        "PGSSLKEY": "/client.key",
    }


def test_postgres_without_name_or_service_connects_to_the_postgres_database():
    assert postgresql.dump_command({**PG, "NAME": ""}).argv[-2:] == ("-d", "dbname='postgres'")


def test_mysqldump_command_is_a_consistent_snapshot_with_routines_and_triggers():
    command = mysql_engine.dump_command(MY)
    assert command.argv == (
        "mysqldump",
        "--user=app",
        "--host=db.internal",
        "--port=3307",
        "--default-character-set=utf8mb4",
        "--single-transaction",
        "--routines",
        "--triggers",
        "--events",
        "--hex-blob",
        "--no-tablespaces",
        "site",
    )
    assert command.env == {"MYSQL_PWD": "my-secret"}
    assert command.secrets == ("my-secret",)


def test_mysql_defaults_file_comes_first_and_a_socket_replaces_the_host():
    command = mysql_engine.load_command(
        {**MY, "OPTIONS": {"read_default_file": "/etc/my.cnf", "unix_socket": "/run/mysqld.sock"}}, "scratch"
    )
    assert command.argv == (
        "mysql",
        "--defaults-file=/etc/my.cnf",
        "--user=app",
        "--socket=/run/mysqld.sock",
        "--port=3307",
        "--default-character-set=utf8mb4",
        "scratch",
    )


def test_the_table_swap_is_one_rename_statement():
    sql = mysql_engine.swap_tables_sql("site", "site__restore_1", "site__replaced_1", ["a", "b`c"], ["a"])
    assert sql == (
        "RENAME TABLE `site`.`a` TO `site__replaced_1`.`a`, `site`.`b``c` TO `site__replaced_1`.`b``c`, `site__restore_1`.`a` TO `site`.`a`"
    )


def test_inside_a_compose_service_the_tools_run_by_exec_with_the_password_passed_by_name(settings, ops_dirs):
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "COMPOSE_COMMAND": ["docker", "compose"], "COMPOSE_PROJECT": "site"}
    dump = postgresql.dump_command(PG, service="db")
    assert dump.argv == (
        "docker",
        "compose",
        "-p",
        "site",
        "exec",
        "-T",
        "-e",
        "PGPASSWORD",
        "db",
        "pg_dump",
        "--no-password",
        "-U",
        "app",
        "-d",
        "dbname='site'",
    )
    assert dump.env == {"PGPASSWORD": "pg-secret"}
    assert dump.secrets == ("pg-secret",)
    assert dump.cwd == str(ops_dirs)
    restore = mysql_engine.load_command(MY, "scratch", service="db")
    assert restore.argv == (
        "docker",
        "compose",
        "-p",
        "site",
        "exec",
        "-T",
        "-e",
        "MYSQL_PWD",
        "db",
        "mysql",
        "--user=app",
        "--default-character-set=utf8mb4",
        "scratch",
    )


def test_the_engine_takes_the_exec_service_from_the_settings(settings, ops_dirs):
    settings.DATABASES = {**settings.DATABASES, "target": PG}
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "BACKUP_EXEC_SERVICE": "db"}
    engine = engine_for("target")
    assert engine.vendor == "postgresql" and engine.exec_service == "db"


def test_engine_for_refuses_an_unsupported_backend(settings):
    settings.DATABASES = {**settings.DATABASES, "odd": {"ENGINE": "django.db.backends.oracle", "NAME": "x"}}
    with pytest.raises(
        ConfigurationError, match="uses 'django.db.backends.oracle'; deploy_ops backs up PostgreSQL, MySQL/MariaDB and SQLite"
    ):
        engine_for("odd")


@pytest.mark.parametrize(
    "head, vendor",
    [
        (b"--\n-- PostgreSQL database dump\n--\n", "postgresql"),
        (b"-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB\n", "mysql"),
        (b"-- MySQL dump 10.13\n", "mysql"),
        (b"SQLite format 3\x00\x10\x00", "sqlite"),
        (b"hello", None),
    ],
)
def test_a_dump_without_metadata_is_recognized_by_its_first_bytes(head, vendor):
    assert sniff_vendor(head) == vendor


# -- compression ------------------------------------------------------------------------------
DATA = b"".join(b"INSERT INTO t VALUES (%d, 'row %s');\n" % (n, os.urandom(6).hex().encode()) for n in range(200_000)) + os.urandom(3 << 20)


def compress(method: str, data: bytes = DATA) -> bytes:
    raw = io.BytesIO()
    with compression.writer(raw, method) as stream:
        for start in range(0, len(data), 300_000):
            stream.write(data[start : start + 300_000])
    return raw.getvalue()


@pytest.mark.parametrize("method", ["gzip", "zstd", "none"])
def test_compression_round_trip_in_chunks_of_bounded_size(method):
    packed = compress(method)
    pieces = list(compression.chunks(io.BytesIO(packed), method))
    assert b"".join(pieces) == DATA
    # zstd cannot cap one piece's output; 16 KiB of this SQL-like text stays well under 1 MiB.
    assert max(map(len, pieces)) <= compression.CHUNK


def test_gzip_output_is_read_by_the_standard_gzip_module_and_multi_member_files_are_read():
    import gzip

    packed = compress("gzip", b"first\n")
    assert gzip.decompress(packed) == b"first\n"
    assert b"".join(compression.chunks(io.BytesIO(packed + gzip.compress(b"second\n")), "gzip")) == b"first\nsecond\n"


@pytest.mark.parametrize("method", ["gzip", "zstd"])
def test_a_truncated_stream_is_reported_as_ending_early(method):
    packed = compress(method)
    with pytest.raises(compression.CorruptStream, match=f"the {method} data ends early"):
        b"".join(compression.chunks(io.BytesIO(packed[: len(packed) - 100]), method))


@pytest.mark.parametrize("method", ["gzip", "zstd"])
def test_one_flipped_byte_is_reported_as_damage(method):
    packed = bytearray(compress(method))
    packed[len(packed) // 3] ^= 0x04
    with pytest.raises(compression.CorruptStream, match=f"the {method} data is damaged"):
        b"".join(compression.chunks(io.BytesIO(bytes(packed)), method))


def test_the_file_suffix_follows_the_compression():
    assert [compression.suffix(method) for method in ("gzip", "zstd", "none")] == [".gz", ".zst", ""]
    assert [compression.compression_of(name) for name in ("a.sql.gz", "a.sql.zst", "a.sql", "a.sqlite3")] == [
        "gzip",
        "zstd",
        "none",
        "none",
    ]


def test_read_ahead_yields_every_chunk_in_order_and_raises_the_sources_error_after_them():
    from deploy_ops.compression import read_ahead

    def source():
        yield from (bytes([n]) * 10 for n in range(50))
        raise ValueError("the file is cut short")

    received = []
    with pytest.raises(ValueError, match="cut short"):
        for chunk in read_ahead(source(), depth=3):
            received.append(chunk)
    assert received == [bytes([n]) * 10 for n in range(50)]


def test_read_ahead_stops_its_thread_and_closes_the_source_when_the_consumer_leaves_early():
    import threading

    from deploy_ops.compression import read_ahead

    closed = threading.Event()

    def endless():
        try:
            while True:
                yield b"x" * 100
        finally:
            closed.set()

    reader = read_ahead(endless(), depth=2)
    assert next(reader) == b"x" * 100
    reader.close()
    assert closed.wait(5)
    assert not [thread for thread in threading.enumerate() if thread.name == "deploy_ops-read-ahead"]
