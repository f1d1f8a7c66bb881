"""Supervisor for one local job: run it, enforce its timeout, record how it ended.

Started detached by ``LocalBackend.launch`` as the leader of the job's process
group. It ignores SIGTERM so that ``cancel`` (which signals the whole group)
stops the job while the supervisor survives to write ``exit.json``.

    python -m ci_runner.backend.supervise JOB_DIR [--timeout S] -- COMMAND...
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path


def main(argv: list[str]) -> int:
    job_dir = Path(argv[0])
    split = argv.index("--")
    options, command = argv[1:split], argv[split + 1 :]
    timeout = float(options[options.index("--timeout") + 1]) if "--timeout" in options else None
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    child = subprocess.Popen(
        command, preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL)
    )
    timed_out = False
    try:
        code = child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        print(f"[ci-runner] timeout: stopping the job after {timeout:.0f}s", flush=True)
        child.terminate()
        try:
            code = child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            code = child.wait()
    record = {
        "exit_code": code,
        "finished_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "timed_out": timed_out,
        "timeout_s": timeout,
    }
    tmp = job_dir / "exit.json.tmp"
    tmp.write_text(json.dumps(record) + "\n")
    os.replace(tmp, job_dir / "exit.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
