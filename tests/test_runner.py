"""The one runner: a failure carries the redacted argv, exit code, stderr tail and duration."""

import fcntl
import sys

import pytest

from deploy_ops.exceptions import CommandFailed, ToolMissing
from deploy_ops.runner import PIPE_BYTES, TAIL_CHARS, Command, open_process, run

SECRET = "hunter2-Secret"


def python(code: str, **kwargs) -> Command:
    return Command((sys.executable, "-c", code), **kwargs)


def test_a_failure_shows_the_command_exit_code_and_indented_stderr_with_secrets_redacted():
    command = python(f"import sys; sys.stderr.write('bad login for {SECRET}\\nsecond line\\n'); sys.exit(4)", secrets=(SECRET,))
    with pytest.raises(CommandFailed) as error:
        run(command)
    message = str(error.value)
    assert error.value.returncode == 4
    assert SECRET not in message and SECRET not in " ".join(error.value.argv)
    assert message.startswith("Command failed with exit code 4 after ")
    assert message.endswith("\n    bad login for ***\n    second line")


def test_a_secret_passed_by_environment_reaches_the_process_but_not_the_log(caplog):
    caplog.set_level("INFO", logger="deploy_ops.runner")
    finished = run(python("import os; print(os.environ['PGPASSWORD'] == 'hunter2-Secret')", env={"PGPASSWORD": SECRET}, secrets=(SECRET,)))
    assert finished.stdout.strip() == "True"
    assert SECRET not in caplog.text and "run: " in caplog.text


def test_a_missing_executable_is_a_sentence_with_an_install_hint():
    with pytest.raises(
        ToolMissing, match=r"^'pg_dump_does_not_exist' was not found on this host's PATH\. Install it, or put it on PATH\.$"
    ):
        run(Command(("pg_dump_does_not_exist", "--version")))


def test_only_the_tail_of_a_long_stderr_is_kept():
    with pytest.raises(CommandFailed) as error:
        run(python("import sys; sys.stderr.write('x' * 100000 + 'THE END'); sys.exit(1)"))
    assert error.value.stderr_tail.endswith("THE END")
    assert len(error.value.stderr_tail) <= TAIL_CHARS + 1


def test_a_command_that_runs_too_long_is_stopped_and_reported_as_timed_out():
    with pytest.raises(CommandFailed, match=r"^Command timed out after 0\.[0-9]s: ") as error:
        run(python("import time; time.sleep(30)"), timeout=0.5)
    assert error.value.timed_out and error.value.returncode is None


def test_a_streaming_reader_reports_a_failure_after_its_output():
    with pytest.raises(CommandFailed, match="exit code 3") as error:
        with open_process(python("import sys; print('partial'); sys.stderr.write('dump broke'); sys.exit(3)"), reading=True) as pipe:
            assert pipe.read() == b"partial\n"
    assert error.value.stderr_tail == "dump broke"


def test_a_writer_whose_process_stops_reading_reports_its_stderr_not_a_broken_pipe():
    code = "import sys; sys.stdin.readline(); sys.stderr.write('ERROR: syntax error at line 1'); sys.exit(3)"
    with pytest.raises(CommandFailed, match="ERROR: syntax error at line 1"):
        with open_process(python(code), reading=False) as pipe:
            for _ in range(200):
                pipe.write(b"x" * 65536 + b"\n")


@pytest.mark.parametrize("reading", [True, False])
def test_a_streaming_pipe_gets_a_wide_buffer_so_the_dump_tool_is_not_held_back(reading):
    code = "import sys; sys.stdout.write('x')" if reading else "import sys; sys.stdin.read()"
    with open_process(python(code), reading=reading) as pipe:
        assert fcntl.fcntl(pipe.fileno(), fcntl.F_GETPIPE_SZ) == PIPE_BYTES
        if reading:
            assert pipe.read() == b"x"
