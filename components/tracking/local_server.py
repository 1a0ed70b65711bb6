"""MLflow's scoring server (`mlflow models serve`) for one model on loopback, started and waited for:
what the serving tests and `benchmarks/serving_load.py` run requests against."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request


class ServerDidNotStart(RuntimeError):
    pass


def start(model_uri: str, tracking_uri: str, port: int, timeout: float = 180.0) -> tuple[subprocess.Popen, str]:
    """(the server process, its base URL) once /ping answers. The server runs in its own process group
    (stop it with `stop`); its stderr is kept for the error when it does not come up. A SQLite store is
    opened where it is now first: the server would read a moved store's model files at its old path."""
    from components.tracking.mlflow_store import relocate

    relocate(tracking_uri)
    bin_dir = os.path.dirname(sys.executable)  # the server execs `uvicorn` from PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([os.path.join(bin_dir, "mlflow"), "models", "serve", "-m", model_uri, "--env-manager",
                             "local", "-h", "127.0.0.1", "-p", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    url, deadline = f"http://127.0.0.1:{port}", time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{url}/ping", timeout=2)
            return proc, url
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                stop(proc)
                raise ServerDidNotStart(f"mlflow models serve -m {model_uri} did not answer /ping in {timeout:.0f} s: "
                                        + proc.stderr.read().decode()[-3000:]) from None
            time.sleep(1)


def stop(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    proc.wait()
