"""Load on the Gradio app: `python app.py` started on loopback (127.0.0.1) as its own process, then N concurrent
gradio_client sessions each sending one specimen of M metaphases (the bundled examples, repeated) to `/analyze`.
Every session is bounded in time and the whole run by a deadline; the server is stopped at the end in any case.

Reports errors (must be 0), whether every report's karyotype equals the single-process pipeline's for the same
files, total and per-session seconds, and the server's peak RSS (VmHWM, else psutil samples).

    python benchmarks/app_load.py                         # the full run: 8 sessions x 5 metaphases
    python benchmarks/app_load.py --sessions 2 --images 2 # a quick check

Writes benchmarks/results/app_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [ROOT / "examples" / f"{name}.jpg" for name in ("1091302", "1091442", "1091714")]
STUDY = "constitutional"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int, cache: str, deadline: float) -> subprocess.Popen:
    """`python app.py` on 127.0.0.1:port with its Gradio cache in `cache`, returned once it answers (or raise when
    it dies or the deadline passes)."""
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_TEMP_DIR": cache, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the app exited with status {server.returncode} before answering")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
                return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise TimeoutError("the app did not answer before the deadline")


class PeakRSS(threading.Thread):
    """Samples the RSS of a process and its children until stopped; `peak` in bytes."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process, self.peak, self.running = psutil.Process(pid), 0, True

    def run(self):
        while self.running:
            try:
                rss = self.process.memory_info().rss + sum(c.memory_info().rss for c in self.process.children(True))
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            time.sleep(0.1)

    def high_water_mark(self) -> int | None:
        """The kernel's own peak RSS of the server process (Linux VmHWM), when it can be read."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        line = next((line for line in status.splitlines() if line.startswith("VmHWM:")), None)
        return int(line.split()[1]) * 1024 if line else None


def session(url: str, number: int, files: list[Path], timeout: float) -> dict:
    """One client session: the specimen to /analyze; its karyotype, errors and seconds."""
    from gradio_client import Client, handle_file

    started = time.monotonic()
    try:
        client = Client(url, download_files=False, verbose=False)
        job = client.submit(files=[handle_file(str(path)) for path in files], study=STUDY,
                            specimen_id=f"load-{number}", api_name="/analyze")
        karyotype, _, report, _ = job.result(timeout=timeout)
        return {"session": number, "karyotype": report["karyotype"], "shown": karyotype,
                "analysed": report["counts"]["analysed"], "file_errors": report["errors"],
                "seconds": round(time.monotonic() - started, 2)}
    except Exception as error:  # a failed session is counted, never fatal to the run
        return {"session": number, "error": f"{type(error).__name__}: {error}",
                "seconds": round(time.monotonic() - started, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--images", type=int, default=5, help="metaphases per specimen (the examples, repeated)")
    parser.add_argument("--session-timeout", type=float, default=900, help="seconds one session may take")
    parser.add_argument("--deadline", type=float, default=1800, help="seconds the whole run may take")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "app_load.json")
    args = parser.parse_args()
    deadline = time.monotonic() + args.deadline
    files = [EXAMPLES[i % len(EXAMPLES)] for i in range(args.images)]

    from karyohf import KaryotypePipeline
    from karyohf.cli import unique_names

    expected = KaryotypePipeline.from_pretrained()(files, study=STUDY, names=unique_names(files)).karyotype
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cache = tempfile.TemporaryDirectory(prefix="karyohf-app-load-")
    server = start_server(port, cache.name, deadline)
    monitor = PeakRSS(server.pid)
    monitor.start()
    try:
        idle_rss = psutil.Process(server.pid).memory_info().rss
        started = time.monotonic()
        with ThreadPoolExecutor(args.sessions) as pool:
            futures = [pool.submit(session, url, i, files, args.session_timeout) for i in range(args.sessions)]
            done, late = wait(futures, timeout=max(1.0, deadline - time.monotonic()))
            results = [future.result() for future in done]
            results += [{"session": None, "error": "not finished before the deadline"} for _ in late]
        total = time.monotonic() - started
        alive = server.poll() is None
        peak = monitor.high_water_mark() or monitor.peak
    finally:
        monitor.running = False
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        cache.cleanup()
    errors = [r["error"] for r in results if "error" in r]
    correct = [r for r in results if "error" not in r and r["karyotype"] == expected and not r["file_errors"]]
    seconds = sorted(r["seconds"] for r in results if "error" not in r)
    summary = {
        "sessions": args.sessions, "metaphases_per_session": args.images, "study": STUDY,
        "files": [path.name for path in files], "expected_karyotype": expected,
        "errors": len(errors), "error_messages": errors, "correct_reports": len(correct),
        "all_correct": len(correct) == args.sessions, "server_alive_after": alive,
        "total_seconds": round(total, 2),
        "session_seconds": {"min": seconds[0], "median": seconds[len(seconds) // 2], "max": seconds[-1]}
        if seconds else None,
        "metaphases_per_second": round(args.sessions * args.images / total, 3),
        "server_rss_mb": {"idle": round(idle_rss / 2**20, 1), "peak": round(peak / 2**20, 1)},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "results": sorted(results, key=lambda r: (r["session"] is None, r["session"] or 0)),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k not in ("results", "machine")}, indent=2))
    sys.exit(0 if not errors and summary["all_correct"] else 1)


if __name__ == "__main__":
    main()
