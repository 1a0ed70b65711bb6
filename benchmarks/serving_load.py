"""Load test of a served generator (`mlflow models serve`, loopback only): can bad and oversized requests
knock it over? Not part of the test suite.

    python benchmarks/serving_load.py --model-uri models:/mnist5k-dcgan/1 --tracking-uri sqlite:///mlflow/mlflow.db
    python benchmarks/serving_load.py --log-from data/train     # log data/train's generator with this checkout's code

Three phases of `--seconds` each, every request bounded by `--timeout`:
  clean     `--clients` threads send 16-sample requests back to back: requests/s, p50/p95 latency;
  attacked  the same, while one more thread sends oversized ({"num_samples": 100000}) and badly typed
            requests in turn: the good requests' requests/s and p95, and what the attacker got back;
  stop      SIGTERM to the server: seconds until it exits (killed after `--stop-wait`).
The server's peak resident memory is sampled throughout."""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GOOD = {"inputs": {"num_samples": 16, "seed": 0}}
ATTACKS = [{"inputs": {"num_samples": 100000}}, {"dataframe_records": [{"num_samples": "many"}]},
           {"dataframe_records": [{"num_samples": -5}]}, {"dataframe_records": [{"num_samples": 2, "steps": 5}]}]


from components.tracking import local_server  # noqa: E402


def _post(url: str, body: dict, timeout: float) -> tuple[int, float, bool]:
    """(HTTP status, or 0 for a timeout/connection error; seconds; whether the answer carried a traceback)."""
    req = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    started, text = time.perf_counter(), b""
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
            status = resp.status
    except urllib.error.HTTPError as e:
        text, status = e.read(), e.code
    except OSError:
        status = 0
    return status, time.perf_counter() - started, b"stack_trace" in text or b"Traceback" in text


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of the server and its children (uvicorn), from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, StopIteration):
            pass
    return total / 1024


def _phase(url: str, seconds: float, clients: int, timeout: float, attack: bool) -> dict:
    good: list[tuple[int, float, bool]] = []
    attacked: list[tuple[int, float, bool]] = []
    stop = time.perf_counter() + seconds

    def client(out, bodies):
        i = 0
        while time.perf_counter() < stop:
            out.append(_post(url, bodies[i % len(bodies)], timeout))
            i += 1

    threads = [threading.Thread(target=client, args=(good, [GOOD])) for _ in range(clients)]
    if attack:
        threads.append(threading.Thread(target=client, args=(attacked, ATTACKS)))
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ok = [s for code, s, _ in good if code == 200]
    out = {"seconds": round(wall, 2), "good_requests": len(good), "good_ok": len(ok),
           "requests_per_s": round(len(ok) / wall, 2),
           "p50_s": round(statistics.median(ok), 4) if ok else None,
           "p95_s": round(statistics.quantiles(ok, n=20)[-1], 4) if len(ok) >= 2 else None}
    if attack:
        codes: dict[str, int] = {}
        for code, _, _ in attacked:
            codes[str(code)] = codes.get(str(code), 0) + 1
        out["attack_requests"] = len(attacked)
        out["attack_status_counts"] = codes  # "0": timed out or connection refused
        out["attack_answers_with_traceback"] = sum(tb for _, _, tb in attacked)
        out["attack_max_s"] = round(max((s for _, s, _ in attacked), default=0.0), 2)
    return out


def _log(folder: Path, tmp: Path) -> tuple[str, str]:
    import mlflow

    from components.config import load_params
    from components.tracking.logged_model import log_generator

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run():
        info = log_generator(folder, load_params(REPO / "params.yaml", []).serving.max_samples)
    return info.model_uri, uri


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-uri", help="a logged/registered model (served with the code it was logged with)")
    src.add_argument("--log-from", help="a generator folder (data/train) to log with this checkout's code first")
    ap.add_argument("--tracking-uri", default=f"sqlite:///{REPO / 'mlflow' / 'mlflow.db'}")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=30.0, help="client-side limit per request")
    ap.add_argument("--stop-wait", type=float, default=30.0)
    ap.add_argument("--label", default="", help="free text kept in the report (e.g. before / after)")
    ap.add_argument("--out", default=str(REPO / "reports" / "benchmarks" / "serving_load.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_uri, tracking_uri = (_log(Path(args.log_from), Path(tmp)) if args.log_from
                                   else (args.model_uri, args.tracking_uri))
        server, url = local_server.start(model_uri, tracking_uri, 5000 + os.getpid() % 1000)
        peak = [0.0]
        sampling = threading.Event()

        def sample_memory():
            while not sampling.wait(0.2):
                peak[0] = max(peak[0], _tree_rss_mb(server.pid))

        watcher = threading.Thread(target=sample_memory, daemon=True)
        watcher.start()
        try:
            _post(url, GOOD, args.timeout)  # warm-up
            report = {"model_uri": model_uri, "label": args.label, "clients": args.clients,
                      "request": GOOD, "attacks": ATTACKS,
                      "clean": _phase(url, args.seconds, args.clients, args.timeout, attack=False),
                      "attacked": _phase(url, args.seconds, args.clients, args.timeout, attack=True)}
            os.killpg(server.pid, signal.SIGTERM)
            started = time.perf_counter()
            try:
                server.wait(timeout=args.stop_wait)
                report["sigterm_exit_s"] = round(time.perf_counter() - started, 2)
            except subprocess.TimeoutExpired:
                report["sigterm_exit_s"] = None  # did not stop: killed below
        finally:
            sampling.set()
            local_server.stop(server)
        report["peak_rss_mb"] = round(peak[0], 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
