"""Serving overhead: `mlsm-nb serve` vs a minimal Starlette app calling the same score functions directly.

Both run on uvicorn with the same number of workers over the same bundle (the
example notebooks: lead_rules 1.0.0 and 2.0.0, lead_lr 1.0.0, champion 1.0.0);
the minimal app is `minimal_app` below: parse JSON, `score_batch` per model in
run order, nest the results, dump JSON, nothing else (no checks, metrics, swap,
limits, token or batching). A third server is serve without batching
(`--batch-max-size 1`). Load comes from wrk (Debian's `wrk`), alternating between
the servers within each round; the ratios are medians of per-round ratios. Each
measurement also gives the server's CPU per request (from /proc), the figure that
holds best on a shared machine.

1. one-record requests from `--connections` (default 8), serve at its batching defaults (or `--batch`):
   throughput ratio serve / minimal (target >= 0.9), p50 and p99 latency;
2. 1,000-record requests: records per second, and the ratio;
3. batching: one-record requests from `--batch-connections` (default 32): serve, serve without batching
   and minimal; targets: serve >= 2 x serve without batching at p99 <= 50 ms, and >= 1 x minimal;
4. the same two apps called in this process through ASGI, one request at a time (no sockets, so no
   batching: a lone request's cost): CPU per request;
5. 10 hot swaps under load (8 async httpx clients sending 5-record requests, so that batches are
   queued as the swaps happen, while the bundle symlink is switched between two bundles whose models
   differ in status): failed requests and mixed responses (target 0 and 0).

`--reasons` measures instead what reasons cost (`_reasons`, which lead_lr gives and champion passes on):
serve and the minimal app each over the bundle as shipped and over one whose lead_lr gives none (its
`score` and `score_frame` without the reasons lines, nothing else changed), the four servers alternating
within each round, one-record and 1,000-record requests; then the same four through ASGI in this process
(CPU per request, the steadier figure). Target: with reasons >= 0.9 x without, serve and minimal alike.

    .venv/bin/python bench/serve.py [--workers N] [--rounds R] [--seconds S] [--connections C]
        [--batch-connections C] [--batch "--batch-max-size N --batch-max-latency-ms MS"] [--no-swaps]
        [--reasons]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
MLSM_NB = str(Path(sys.executable).with_name("mlsm-nb"))

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("BENCH_BODY")):read("*a")
function done(summary, latency, requests)
  io.write(string.format('{"requests": %d, "seconds": %f, "p50_us": %d, "p99_us": %d, "errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout))
end
"""


def minimal_app():
    """The baseline: the same score functions (`score_batch` per model) behind one Starlette route."""
    import orjson
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from mlsm_nb.core.batch import score_batch
    from mlsm_nb.notebook import load_bundle

    models = load_bundle(os.environ["BENCH_BUNDLE"])

    async def score(request):
        body = orjson.loads(await request.body())
        records = body if isinstance(body, list) else [body]
        entries = {}
        for model in models:
            needs = {(d["name"], d["version"]): entries[d["name"], d["version"]] for d in getattr(model, "models", ())}
            entries[model.key] = score_batch(model, records, needs).entries
        documents = []
        for i, record in enumerate(records):
            results = {}
            for model in models:
                results.setdefault(model.name, {})[model.version] = entries[model.key][i]
            documents.append({"id": record["id"], "results": results})
        return Response(orjson.dumps({"documents": documents}), media_type="application/json")

    return Starlette(routes=[Route("/score", score, methods=["POST"])])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, process: subprocess.Popen, probe: str = "/health") -> None:
    import httpx

    for _ in range(300):
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            httpx.post(url + "/score", content=b"{}", timeout=2) if probe == "/score" else httpx.get(url + probe)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def start_serve(bundle: Path, workers: int, *options: str) -> tuple[str, subprocess.Popen]:
    port = free_port()
    process = subprocess.Popen([MLSM_NB, "serve", str(bundle), "--port", str(port), "--workers", str(workers),
                                "--poll", "0.2", *options], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_up(url, process)
    return url, process


def start_minimal(bundle: Path, workers: int) -> tuple[str, subprocess.Popen]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "--app-dir", str(Path(__file__).parent), "--factory",
                                "serve:minimal_app", "--port", str(port), "--workers", str(workers),
                                "--log-level", "warning", "--no-access-log"],
                               env={**os.environ, "BENCH_BUNDLE": str(bundle)}, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_up(url, process, "/score")
    return url, process


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by process `pid` and its children (the workers), from /proc."""
    def own(stat: str) -> tuple[int, float]:
        fields = stat.rsplit(")", 1)[1].split()
        return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    total = own(Path(f"/proc/{pid}/stat").read_text())[1]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent, used = own((entry / "stat").read_text())
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid:
                total += used
    return total


def wrk(url: str, body: Path, script: Path, seconds: int, connections: int, pid: int) -> dict:
    """Load `url` with wrk; also the server's CPU seconds per request (steadier than rates on a busy machine)."""
    cpu = cpu_seconds(pid)
    result = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url + "/score"],
                            capture_output=True, text=True, env={**os.environ, "BENCH_BODY": str(body)}, check=True)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    out["cpu_per_request"] = (cpu_seconds(pid) - cpu) / max(1, out["requests"])
    return out


async def swaps_under_load(url: str, link: Path, bundles: list[Path], swaps: int, clients: int) -> dict:
    """Switch `link` between `bundles` `swaps` times while clients score; count failures and mixed answers."""
    import httpx

    from mlsm_nb.leads import generate_leads

    leads = list(generate_leads(5, seed=3))
    stop = asyncio.Event()
    counts = {"requests": 0, "failed": 0, "mixed": 0}
    statuses: dict[str, set] = {}

    async def client():
        async with httpx.AsyncClient(timeout=60) as http:
            while not stop.is_set():
                try:
                    response = await http.post(url + "/score", json=leads)
                except httpx.HTTPError:
                    counts["failed"] += 1
                    continue
                counts["requests"] += 1
                if response.status_code != 200:
                    counts["failed"] += 1
                    continue
                body = response.json()
                seen = {d["results"]["lead_lr"]["1.0.0"]["_status"] for d in body["documents"]}
                statuses.setdefault(body["bundle"], set()).update(seen)
                if len(seen) != 1 or response.headers["x-mlsm-bundle"] != body["bundle"]:
                    counts["mixed"] += 1

    async def swapper():
        async with httpx.AsyncClient(timeout=60) as http:
            for i in range(swaps):
                before = (await http.get(url + "/health")).json()["bundle"]["sha256"]
                tmp = link.with_name("current.new")
                tmp.symlink_to(bundles[(i + 1) % len(bundles)])
                os.replace(tmp, link)
                while (await http.get(url + "/health")).json()["bundle"]["sha256"] == before:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)
        stop.set()

    await asyncio.gather(swapper(), *(client() for _ in range(clients)))
    counts["bundles_seen"] = len(statuses)
    counts["mixed"] += sum(len(s) != 1 for s in statuses.values())  # one bundle answered with two statuses
    return counts


async def _post(app, body: bytes) -> None:
    """One POST /score straight through an ASGI app (no socket, no server)."""
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return messages.pop() if messages else {"type": "http.disconnect"}

    status = []

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    scope = {"type": "http", "method": "POST", "path": "/score", "raw_path": b"/score", "query_string": b"",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
             "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1),
             "root_path": "", "app": app}
    await app(scope, receive, send)
    assert status == [200], status


def in_process_cpu(bundle: Path, bodies: dict[str, bytes], rounds: int) -> dict:
    """CPU ms per request of both apps called in this process, alternating (best of `rounds`)."""
    from mlsm_nb.serve.app import ServeSettings, create_app

    os.environ["BENCH_BUNDLE"] = str(bundle)
    apps = {"serve": create_app(ServeSettings(str(bundle))), "minimal": minimal_app()}
    return in_process_cpu_apps(apps, bodies, rounds)


def median_rate(runs: list[dict], records: int = 1) -> float:
    return statistics.median(records * x["requests"] / x["seconds"] for x in runs)


def round_ratios(a: list[dict], b: list[dict]) -> list[float]:
    """Per-round throughput ratios a / b (the servers alternate within each round)."""
    return [(x["requests"] / x["seconds"]) / (y["requests"] / y["seconds"]) for x, y in zip(a, b, strict=True)]


def latency(runs: list[dict]) -> str:
    p50 = statistics.median(x["p50_us"] for x in runs) / 1000
    p99 = statistics.median(x["p99_us"] for x in runs) / 1000
    return f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"


def cpu_ms(runs: list[dict]) -> float:
    return statistics.median(x["cpu_per_request"] for x in runs) * 1e3


def rounds_text(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)})"


def report(args, results: dict) -> None:
    print(f"workers: {args.workers}, rounds: {args.rounds}, {args.seconds:g} s per measurement, "
          f"{args.connections} connections (2 for 1,000-record requests; {args.batch_connections} for the "
          f"batching comparison); serve batching: {args.batch or 'its defaults'}")
    for name in ("serve", "minimal"):
        one, k = results[name]["one"], results[name]["thousand"]
        errors = sum(x["errors"] for x in one + k)
        print(f"{name:9} one-record: {median_rate(one):8.0f} req/s  {latency(one)}  CPU {cpu_ms(one):.2f} ms/req | "
              f"1,000-record: {median_rate(k, 1000):8.0f} records/s  CPU {cpu_ms(k):.1f} ms/req | "
              f"non-2xx/socket errors: {errors}")
    print(f"throughput ratio serve/minimal, one-record requests: "
          f"{rounds_text(round_ratios(results['serve']['one'], results['minimal']['one']))}; target >= 0.9; "
          f"CPU ratio (minimal/serve) {cpu_ms(results['minimal']['one']) / cpu_ms(results['serve']['one']):.2f}")
    print(f"throughput ratio serve/minimal, 1,000-record requests: "
          f"{rounds_text(round_ratios(results['serve']['thousand'], results['minimal']['thousand']))}; "
          f"CPU ratio {cpu_ms(results['minimal']['thousand']) / cpu_ms(results['serve']['thousand']):.2f}")
    print(f"{args.batch_connections} connections, one-record requests:")
    for name in ("serve", "unbatched", "minimal"):
        many = results[name]["many"]
        errors = sum(x["errors"] for x in many)
        print(f"  {name:9} {median_rate(many):8.0f} req/s  {latency(many)}  CPU {cpu_ms(many):.2f} ms/req | "
              f"non-2xx/socket errors: {errors}")
    many = {name: results[name]["many"] for name in results}
    print(f"  serve/unbatched {rounds_text(round_ratios(many['serve'], many['unbatched']))} (target >= 2 at p99 <= "
          f"50 ms; CPU ratio {cpu_ms(many['unbatched']) / cpu_ms(many['serve']):.2f}); serve/minimal "
          f"{rounds_text(round_ratios(many['serve'], many['minimal']))} (target >= 1; CPU ratio "
          f"{cpu_ms(many['minimal']) / cpu_ms(many['serve']):.2f})")


# lead_lr's lines that give `_reasons`, and what they become in the bundle without reasons
_NO_REASONS = {
    "    reasons = top_reasons({FEATURE_FIELDS.get(name, name): part for name, part in parts.items()})\n": "",
    'return {"score": 1 / (1 + math.exp(-z)), "_reasons": reasons}': 'return {"score": 1 / (1 + math.exp(-z))}',
    '{"score": 1 / (1 + np.exp(-z)), "_reasons": frame_reasons(parts)}': '{"score": 1 / (1 + np.exp(-z))}',
}


def notebooks_without_reasons(folder: Path) -> Path:
    """A copy of the example notebooks in `folder` whose lead_lr gives no `_reasons` (champion then passes
    none on); its scores are the same."""
    shutil.copytree(NOTEBOOKS, folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    path = folder / "lead_lr.ipynb"
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "score" in c["metadata"].get("tags", []))
    source = "".join(cell["source"])
    for old, new in _NO_REASONS.items():
        if old not in source:
            raise SystemExit(f"bench: lead_lr's score cell no longer has {old.strip()!r}; update _NO_REASONS")
        source = source.replace(old, new)
    cell["source"] = source
    path.write_text(json.dumps(nb))
    return folder


def in_process_cpu_apps(apps: dict, bodies: dict[str, bytes], rounds: int) -> dict:
    """CPU ms per request of ASGI `apps` (name -> app) called in this process, alternating (best of `rounds`)."""
    out: dict = {}

    async def measure():
        for size, body in bodies.items():
            repeat = 1000 if size == "one" else 20
            for app in apps.values():
                for _ in range(5):
                    await _post(app, body)
            for _ in range(rounds):
                for name, app in apps.items():
                    started = time.process_time()
                    for _ in range(repeat):
                        await _post(app, body)
                    out.setdefault(size, {}).setdefault(name, []).append((time.process_time() - started) / repeat * 1e3)

    asyncio.run(measure())
    return {size: {name: min(times) for name, times in by_app.items()} for size, by_app in out.items()}


def reasons_bench(args, tmp: Path, script: Path, one: Path, thousand: Path) -> None:
    """serve and minimal, each with and without reasons, side by side (`--reasons`)."""
    from mlsm_nb.notebook.extract import extract_bundle
    from mlsm_nb.serve.app import ServeSettings, create_app

    bundles = {"with": tmp / "with", "without": tmp / "without"}
    extract_bundle([NOTEBOOKS], bundles["with"])
    extract_bundle([notebooks_without_reasons(tmp / "plain")], bundles["without"])
    servers = {}
    try:
        for kind, bundle in bundles.items():
            servers["serve", kind] = start_serve(bundle, args.workers, *args.batch.split())
            servers["minimal", kind] = start_minimal(bundle, args.workers)
        for url, process in servers.values():  # warm up
            wrk(url, one, script, 1, args.connections, process.pid)
        results: dict = {key: {"one": [], "thousand": []} for key in servers}
        for _ in range(args.rounds):
            for key, (url, process) in servers.items():
                results[key]["one"].append(wrk(url, one, script, args.seconds, args.connections, process.pid))
                results[key]["thousand"].append(wrk(url, thousand, script, args.seconds, 2, process.pid))
    finally:
        for _, process in servers.values():
            process.terminate()
            process.wait(30)
    print(f"reasons: workers {args.workers}, rounds {args.rounds}, {args.seconds:g} s per measurement, "
          f"{args.connections} connections (2 for 1,000-record requests); wall-clock throughput, and the server's "
          "CPU per request (from /proc)")
    for app in ("serve", "minimal"):
        for size, records in (("one", 1), ("thousand", 1000)):
            with_, without = results[app, "with"][size], results[app, "without"][size]
            unit = "req/s" if records == 1 else "records/s"
            print(f"  {app:7} {'one-record' if records == 1 else '1,000-record':12} with "
                  f"{median_rate(with_, records):8.0f} {unit}, without {median_rate(without, records):8.0f}: "
                  "ratio with/without "
                  f"{rounds_text(round_ratios(with_, without))} (target >= 0.9); CPU {cpu_ms(with_):.3f} / "
                  f"{cpu_ms(without):.3f} ms/req (ratio without/with {cpu_ms(without) / cpu_ms(with_):.2f})")
    for size in ("one", "thousand"):
        ratio = {kind: rounds_text(round_ratios(results["serve", kind][size], results["minimal", kind][size]))
                 for kind in bundles}
        print(f"  serve/minimal, {'one-record' if size == 'one' else '1,000-record'}: with reasons {ratio['with']}, "
              f"without {ratio['without']}")
    apps = {}
    for kind, bundle in bundles.items():
        os.environ["BENCH_BUNDLE"] = str(bundle)
        apps["serve", kind] = create_app(ServeSettings(str(bundle)))
        apps["minimal", kind] = minimal_app()
    steady = in_process_cpu_apps(apps, {"one": one.read_bytes(), "thousand": thousand.read_bytes()}, 3)
    for size, by_app in steady.items():
        print(f"  in-process CPU per {'one-record' if size == 'one' else '1,000-record'} request (ASGI, no sockets): "
              + "; ".join(f"{app} with {by_app[app, 'with']:.3f} / without {by_app[app, 'without']:.3f} ms "
                          f"(ratio without/with {by_app[app, 'without'] / by_app[app, 'with']:.2f})"
                          for app in ("serve", "minimal")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--batch-connections", type=int, default=32,
                        help="connections of the batching comparison (serve, serve unbatched, minimal)")
    parser.add_argument("--batch", default="", help="serve's batching options, e.g. '--batch-max-size 32 "
                        "--batch-max-latency-ms 2' (default: serve's defaults)")
    parser.add_argument("--no-swaps", action="store_true", help="skip the hot swaps under load")
    parser.add_argument("--reasons", action="store_true", help="measure instead what `_reasons` cost: serve and "
                        "minimal each with and without them, side by side")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("needs wrk: apt-get install wrk")
    from mlsm_nb.leads import generate_leads
    from mlsm_nb.notebook.extract import extract_bundle

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        tmp = Path(tmp)
        script = tmp / "post.lua"
        script.write_text(WRK_SCRIPT)
        one = tmp / "one.json"
        one.write_text(json.dumps(next(generate_leads(1, seed=8))))
        thousand = tmp / "thousand.json"
        thousand.write_text(json.dumps(list(generate_leads(1000, seed=9))))
        if args.reasons:
            reasons_bench(args, tmp, script, one, thousand)
            return
        extract_bundle([NOTEBOOKS], tmp / "a")
        extract_bundle([NOTEBOOKS], tmp / "b", status_override="draft", status_reason="bench: the other bundle")
        link = tmp / "current"
        link.symlink_to(tmp / "a")

        servers = {"serve": start_serve(link, args.workers, *args.batch.split()),
                   "unbatched": start_serve(tmp / "a", args.workers, "--batch-max-size", "1"),
                   "minimal": start_minimal(tmp / "a", args.workers)}
        try:
            results: dict = {name: {"one": [], "thousand": [], "many": []} for name in servers}
            for url, process in servers.values():  # warm up: first calls import and compile
                wrk(url, one, script, 1, args.connections, process.pid)
            for _ in range(args.rounds):
                for name, (url, process) in servers.items():
                    if name != "unbatched":
                        results[name]["one"].append(wrk(url, one, script, args.seconds, args.connections,
                                                        process.pid))
                        results[name]["thousand"].append(wrk(url, thousand, script, args.seconds, 2, process.pid))
                    results[name]["many"].append(wrk(url, one, script, args.seconds, args.batch_connections,
                                                     process.pid))
            report(args, results)
            steady = in_process_cpu(tmp / "a", {"one": one.read_bytes(), "thousand": thousand.read_bytes()}, 3)
            print(f"in-process CPU per request (ASGI calls one at a time, no sockets), serve / minimal: "
                  f"one-record {steady['one']['serve']:.3f} / {steady['one']['minimal']:.3f} ms "
                  f"(ratio {steady['one']['minimal'] / steady['one']['serve']:.2f}); 1,000-record "
                  f"{steady['thousand']['serve']:.1f} / {steady['thousand']['minimal']:.1f} ms "
                  f"(ratio {steady['thousand']['minimal'] / steady['thousand']['serve']:.2f})")
            if not args.no_swaps:
                swap = asyncio.run(swaps_under_load(servers["serve"][0], link, [tmp / "a", tmp / "b"], 10, 8))
                print(f"10 hot swaps under load: {swap['requests']} requests, {swap['failed']} failed, "
                      f"{swap['mixed']} mixed, {swap['bundles_seen']} bundles answered (target 0 failed, 0 mixed)")
        finally:
            for _, process in servers.values():
                process.terminate()
                process.wait(30)


if __name__ == "__main__":
    main()
