"""The project as a wheel (issue 20, item 2): it builds without setuptools' warnings, carries
the page, and `profiles serve` from it, outside the checkout, serves the page and its files."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # a Redis for `profiles serve`
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "wheel-test-token-0123456789"
SKIPPED = (".git", ".venv", ".services", "*cache*", "build", "test-artifacts", "*.egg-info")


def run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=300, **kwargs
    )  # type: ignore[call-overload]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def test_the_wheel_carries_the_page_and_serves_it(tmp_path: Path) -> None:
    source = tmp_path / "source"  # setuptools leaves build/ beside the sources: not here
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*SKIPPED))
    built = run(sys.executable, "-m", "pip", "wheel", source, "--no-deps", "-w", tmp_path / "dist")
    assert built.returncode == 0, built.stderr
    assert "Warning" not in built.stdout + built.stderr, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("profile_streams-*.whl")

    # A scratch environment with the wheel installed; the dependencies come from this one's
    # site-packages (a path in a .pth: not this checkout, whose editable install is not
    # activated that way).
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    python = venv / "bin" / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    (Path(purelib.stdout.strip()) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel)
    assert installed.returncode == 0, installed.stderr
    where = run(python, "-c", "import explorer; print(explorer.__file__)", cwd=tmp_path)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr

    port = free_port()
    server = subprocess.Popen(
        [venv / "bin" / "profiles", "serve", "--port", str(port)],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PROFILES_API_TOKENS": f"*={TOKEN}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                status, page = get(base + "/")
                break
            except OSError:
                assert time.monotonic() < deadline, "profiles serve did not answer"
                time.sleep(0.1)
        assert status == 200 and page == (ROOT / "explorer/static/index.html").read_text()
        assert re.search(r'src="static/app\.js"', page), page
        for source in (ROOT / "explorer/static").iterdir():  # the page's modules and styles
            assert get(f"{base}/static/{source.name}") == (200, source.read_text()), source.name
    finally:
        server.terminate()
        server.wait(timeout=30)
