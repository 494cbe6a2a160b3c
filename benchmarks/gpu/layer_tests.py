"""The layer-tests part: the default suite's layer tests through pytest."""

import os


class _Outcomes:
    """A pytest plugin counting outcomes into the recorder as they come,
    so a run stopped at its deadline still leaves its counts. Under
    pytest-xdist the workers' reports reach this hook in the controller.
    """

    def __init__(self, recorder):
        self.recorder = recorder
        self.counts = dict.fromkeys(
            ("passed", "failed", "errors", "skipped"), 0
        )
        self.failures = []

    def pytest_runtest_logreport(self, report):
        if report.skipped:
            outcome = "skipped"
        elif report.failed:
            outcome = "failed" if report.when == "call" else "errors"
            message = str(report.longrepr).strip().splitlines()[-1:]
            self.failures.append(f"{report.nodeid}: {' '.join(message)[:300]}")
        elif report.when == "call":
            outcome = "passed"
        else:
            return  # a passing setup or teardown
        self.counts[outcome] += 1
        self.recorder.update(**self.counts, failures=self.failures[:30])


def run(recorder, sizes):
    """The layer tests through pytest, in this process, on its backend."""
    import pytest

    command = [*sizes["files"], "-m", "not slow", "-q", "-rs"]
    command += ["-p", "no:cacheprovider"]
    if sizes["select"]:
        command += ["-k", sizes["select"]]
    if sizes["workers"]:
        command += ["-n", str(sizes["workers"]), "--dist", "loadfile"]
    recorder.update(
        backend=os.environ["KERAS_BACKEND"],
        pytest_args=command,
        jax_default_matmul_precision=os.environ.get(
            "JAX_DEFAULT_MATMUL_PRECISION"
        ),
    )
    outcomes = _Outcomes(recorder)
    recorder.update(**outcomes.counts, failures=[])
    exit_code = pytest.main(command, plugins=[outcomes])
    recorder.update(
        status="ok" if exit_code == 0 else "failed", exit_code=int(exit_code)
    )
