"""One virtualenv per peer queue, each with the redis-py its library supports.

The peers cannot share one environment: arq 0.28 requires redis<6, SAQ's `redis` extra
requires redis<8, taskiq-redis 1.2.4 requires redis>=8 (and redis-py 8 caps a connection
pool at 100 connections by default, where 5.x-7.x did not cap it, which breaks SAQ with
1,000 tasks in flight). So each peer runs (its client side and its workers) under
`benchmarks/.venvs/<queue>/bin/python`, made here from pinned requirements the first time
it is needed; ours runs under the interpreter that runs the benchmark.

    python -m benchmarks.envs            # make (or refresh) all of them now
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.settings import REPO_ROOT

ENVS_DIR = REPO_ROOT / "benchmarks" / ".venvs"
MARKER = "bench-requirements.txt"

#: the HTTP client of the goodput workload's peer workers (`benchmarks/workers/goodput_*`):
#: the version our own OpenAI backend runs on
HTTPX = "httpx==0.29.0"
#: the event loop every asyncio process of a run may use (`benchmarks.settings.LOOP_ENV`)
UVLOOP = "uvloop==0.23.0"
#: pinned peer versions; redis-py resolves to the newest each one allows
REQUIREMENTS = {
    "arq": ["arq==0.28.0", "hiredis>=3.0", "packaging", HTTPX, UVLOOP],
    "saq": ["saq[redis,hiredis]==0.26.4", "typing_extensions", "packaging", HTTPX, UVLOOP],
    "taskiq": ["taskiq==0.13.0", "taskiq-redis==1.2.4", "hiredis>=3.0", "packaging", HTTPX,
               UVLOOP],
    "taskiq-list": ["taskiq==0.13.0", "taskiq-redis==1.2.4", "hiredis>=3.0", "packaging",
                    UVLOOP],
    "dramatiq": ["dramatiq[redis]==2.2.1", "hiredis>=3.0", "packaging", UVLOOP],
}


def env_python(queue: str) -> Path:
    """Where the interpreter of `queue`'s environment is (it may not exist yet)."""
    return ENVS_DIR / queue / "bin" / "python"


def is_current(queue: str) -> bool:
    """Whether `queue`'s environment exists and was built from today's requirements."""
    marker = ENVS_DIR / queue / MARKER
    wanted = "\n".join(REQUIREMENTS[queue]) + "\n"
    return env_python(queue).exists() and marker.exists() and marker.read_text() == wanted


def ensure_env(queue: str, say=print) -> Path:
    """The interpreter for `queue`, building its environment first if needed."""
    if queue not in REQUIREMENTS:
        return Path(sys.executable)
    if not is_current(queue):
        build_env(queue, say)
    return env_python(queue)


def build_env(queue: str, say=print) -> None:
    """python -m venv, then pip install the pinned requirements (from the package index)."""
    target = ENVS_DIR / queue
    say(f"[{queue}] building {target} ({', '.join(REQUIREMENTS[queue])}) ...")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(target)], check=True)
    pip = [str(env_python(queue)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *REQUIREMENTS[queue]], check=True)
    (target / MARKER).write_text("\n".join(REQUIREMENTS[queue]) + "\n")


def main() -> None:
    for queue in REQUIREMENTS:
        build_env(queue)


if __name__ == "__main__":
    main()
