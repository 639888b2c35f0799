"""A real MongoDB wire-protocol server for tests: SecantusDB on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pymongo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SecantusServer:
    """Start, stop and restart one SecantusDB server with its own data directory."""

    def __init__(self, data_dir: Path, port: int | None = None, auth: bool = False):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.auth = auth
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> SecantusServer:
        command = [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(self.port),
                   "--storage-path", str(self.data_dir), "--log-level", "WARNING"]
        if self.auth:
            command.append("--auth")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir.parent / f"secantus-{self.port}.log", "ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"SecantusDB exited with {self.process.returncode}; see {log.name}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    client = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=1000)
                    client.admin.command("ping")
                    client.close()
                    return self
            except (OSError, pymongo.errors.PyMongoError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SecantusDB did not answer on port {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def require_login(self, user: str, password: str) -> SecantusServer:
        """Restart with authentication on, `user` (root) the only one who can log in."""
        client = pymongo.MongoClient(self.uri)
        client.admin.command("createUser", user, pwd=password, roles=["root"])
        client.close()
        self.stop()
        self.auth = True
        return self.start()

    def kill(self) -> None:
        if self.process:
            self.process.kill()
            self.process.wait()
        self.process = None


class ServeServer:
    """`mlsm-nb serve BUNDLE_DIR` as a subprocess on a free loopback port, driven over HTTP."""

    def __init__(self, bundle_dir: Path, *args: str, env: dict | None = None, log_dir: Path | None = None):
        import os

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [str(Path(sys.executable).with_name("mlsm-nb")), "serve", str(bundle_dir),
                        "--port", str(self.port), *args]
        self.env = {**os.environ, **(env or {})}
        self.log_path = Path(log_dir or bundle_dir).parent / f"serve-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> ServeServer:
        import httpx

        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlsm-nb serve exited with {self.process.returncode}: {self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"mlsm-nb serve did not answer within {timeout} s: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode if self.process else None
        self.process = None
        return code


def open_live_page(playwright, url: str, token: str):
    """serve's live page in Debian's chromium, the bearer token given through its form: (browser, page,
    problems), `problems` collecting console errors and page errors as they happen."""
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(url + "/")
    page.wait_for_selector("#token-form:not([hidden])")
    page.fill("#token-input", token)
    page.click("#token button")
    return browser, page, problems


def wait_for(predicate, timeout: float = 30, step: float = 0.1):
    """The first true value `predicate` gives, asked every `step` seconds; AssertionError after `timeout`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")
