"""The conftest check: a test that starts a server or a kernel without the slow mark fails."""

import shutil
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

SOURCE = '''
import socket
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def listener():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s


def test_binds_unmarked():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))


def test_starts_a_kernel_unmarked():
    subprocess.run([sys.executable, "-c", "pass", "ipykernel_launcher"], check=True)


def test_first_user_of_a_shared_server(listener):
    pass


def test_later_user_of_a_shared_server(listener):
    pass


@pytest.mark.slow
def test_binds_marked():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))


def test_starts_a_plain_process():
    subprocess.run([sys.executable, "-c", "pass"], check=True)
'''


@pytest.mark.slow  # it runs pytest in a process of its own
def test_unmarked_tests_that_start_servers_or_kernels_fail(pytester):
    shutil.copy(HERE / "conftest.py", pytester.path / "conftest.py")
    pytester.makepyfile(test_inner=SOURCE)
    pytester.makeini("[pytest]\nmarkers =\n    slow: starts things\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 6 and outcomes.get("errors") == 4  # the 4 unmarked starters fail at teardown
    result.stdout.fnmatch_lines(["*teardown of test_binds_unmarked*", "not marked slow, yet it binds a socket*",
                                 "*teardown of test_starts_a_kernel_unmarked*", "not marked slow, yet it starts*",
                                 "*teardown of test_later_user_of_a_shared_server*",
                                 "not marked slow, yet it uses fixture 'listener', which binds a socket*"])
