"""The one runner of child processes, under a time and a memory limit.

A measurement runs in a process of its own when its peak memory must be
its own (a long sequence), when it needs another Keras backend (the
encoder on JAX or PyTorch), or when it must end by a deadline whatever it
does (a part of the GPU check). `Child` starts `python -m MODULE ARGS`
from the repository root, in a process group of its own, and `wait`
watches it: past its time or memory limit the whole group is killed and
the status says which limit it passed.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATUSES = ("ok", "error", "timed out", "memory cap")
_GIB = 1024**3


def _status_bytes(pid, field):
    """A memory field of /proc/PID/status in bytes, or 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024  # given in kB
    except OSError:
        pass
    return 0


def peak_rss_bytes():
    """This process's peak resident set size since it started its program.

    `VmHWM`, the high-water mark of this program's memory, and not
    `getrusage(RUSAGE_SELF).ru_maxrss`: Linux carries `ru_maxrss` over
    from the parent through fork and exec, so a child of a 2 GiB parent
    reports at least 2 GiB.
    """
    return _status_bytes("self", "VmHWM")


def last_json(text):
    """The last line of `text` that is a JSON object, as a dict."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{") and line.endswith("}"):
            return json.loads(line)
    raise ValueError(f"No JSON line in the output: {text[-300:]!r}")


class Child:
    """`python -m module *args` in a child process, under its limits.

    Args:
        module: str, the module to run, e.g. `"benchmarks.long_sequence"`.
        args: list of str, its arguments.
        env: dict of environment variables set over this process's
            (`KERAS_BACKEND`, ...). The child imports this tree's
            `benchmarks` and `keras_mha` whatever its working directory.
        time_limit_s: float or `None`; the child is killed that many
            seconds after its start.
        memory_limit_bytes: int or `None`; the child is killed once its
            resident set passes it.

    The limits are checked while `wait` runs; children started together
    run side by side, each against its own deadline.
    """

    def __init__(
        self, module, args, env=None, time_limit_s=None, memory_limit_bytes=None
    ):
        self.time_limit_s = time_limit_s
        self.memory_limit_bytes = memory_limit_bytes
        env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (ROOT, os.environ.get("PYTHONPATH")) if p
        )
        # stdout and stderr in order in one file; closed in `wait`.
        self.output = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.start = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env=env,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its group: killed with its children
        )

    def _passed_limit(self, rss):
        limit = self.memory_limit_bytes
        if limit is not None and rss > limit:
            return "memory cap", f"over {limit / _GIB:.1f} GiB"
        limit = self.time_limit_s
        if limit is not None and time.monotonic() - self.start > limit:
            return "timed out", f"over its {limit:.0f} s"
        return None

    def wait(self):
        """Watches the child until it ends or passes a limit.

        Returns:
            A dict with `status` (one of `STATUSES`), `reason` unless it
            is "ok", the wall `seconds` from its start, the highest
            resident set seen, `watched_peak_rss_bytes`, and `output`,
            what it printed.
        """
        watched, passed = 0, None
        while self.process.poll() is None:
            rss = _status_bytes(self.process.pid, "VmRSS")
            watched = max(watched, rss)
            passed = self._passed_limit(rss)
            if passed:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait()
                break
            time.sleep(0.05)
        result = {
            "status": "ok",
            "seconds": time.monotonic() - self.start,
            "watched_peak_rss_bytes": watched,
        }
        self.output.seek(0)
        output = self.output.read()
        self.output.close()
        if passed:
            result["status"], result["reason"] = passed
        elif self.process.returncode != 0:
            # Crashed, or killed by the system (out of memory).
            tail = (output.strip().splitlines() or ["no output"])[-1]
            result["status"] = "error"
            result["reason"] = f"exit {self.process.returncode}: {tail[-300:]}"
        return {**result, "output": output}
