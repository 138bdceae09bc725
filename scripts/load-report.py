#!/usr/bin/env python3
"""Bodies for, and the report of, the HTTP load test (scripts/load-test.sh).

  load-report.py bodies OUT [--lines 2000] [--readings 5] [--sensors 2000]
      one JSON array of readings per line, for `oha -Z` (a random line per request)
  load-report.py report DIR --out docs/load-test.md --svg docs/load-test.svg [--meta KEY=VALUE ...]
      reads DIR/<endpoint>-<connections>.json (oha --output-format json) and
      DIR/<endpoint>-<connections>.conns (peak established connections seen by
      the server), writes the markdown report and its chart
  load-report.py test
      checks the parsing and the chart on made-up numbers

Python 3 standard library only.
"""

import argparse
import glob
import json
import os
import random
import re
import sys

REGIONS = ["norte", "nordeste", "centro-oeste", "sudeste", "sul"]
ENDPOINTS = {
    "post": "POST /api/v1/events",
    "get": "GET /api/v1/stats/averages?window=24h",
}
TARGET_P99_MS = 100.0


def bodies(out, lines, readings, sensors, seed=6):
    rng = random.Random(seed)
    with open(out, "w") as f:
        for _ in range(lines):
            items = []
            for _ in range(readings):
                s = rng.randrange(sensors)
                tag = "brasil.%s.sensor%04d" % (REGIONS[s % len(REGIONS)], s + 1)
                items.append({"tag": tag, "value": round(rng.uniform(10, 100), 2)})
            f.write(json.dumps(items, separators=(",", ":")) + "\n")


def parse_run(oha, conns):
    """One oha JSON answer (and the peak connection count) as a row."""
    codes = {str(k): int(v) for k, v in (oha.get("statusCodeDistribution") or {}).items()}
    errors = {str(k): int(v) for k, v in (oha.get("errorDistribution") or {}).items()}
    pct = oha.get("latencyPercentiles") or {}
    summary = oha["summary"]

    def ms(key):
        v = pct.get(key)
        return None if v is None else v * 1000.0

    bad_status = sum(n for c, n in codes.items() if not c.startswith("2"))
    return {
        "requests": sum(codes.values()) + sum(errors.values()),
        "rps": float(summary["requestsPerSec"]),
        "p50": ms("p50"),
        "p90": ms("p90"),
        "p99": ms("p99"),
        "max": None if summary.get("slowest") is None else summary["slowest"] * 1000.0,
        "codes": codes,
        "errors": errors,
        "failed": bad_status + sum(errors.values()),
        "peak_connections": conns,
        "seconds": float(summary["total"]),
    }


def load_runs(d):
    runs = {}
    for path in glob.glob(os.path.join(d, "*-*.json")):
        m = re.match(r"(post|get)-(\d+)\.json$", os.path.basename(path))
        if not m:
            continue
        endpoint, c = m.group(1), int(m.group(2))
        with open(path) as f:
            oha = json.load(f)
        conns = None
        cpath = path[: -len(".json")] + ".conns"
        if os.path.exists(cpath):
            with open(cpath) as f:
                text = f.read().strip()
                conns = int(text) if text else None
        runs[(endpoint, c)] = parse_run(oha, conns)
    return runs


def fmt_ms(v):
    if v is None:
        return "-"
    return "%.1f" % v if v < 100 else "%.0f" % v


def fmt_int(v):
    return "-" if v is None else "{:,}".format(int(round(v)))


def fmt_map(m):
    return ", ".join("%s: %s" % (k, fmt_int(v)) for k, v in sorted(m.items())) or "none"


def table(runs):
    rows = [
        "| endpoint | connections | peak open | requests | requests/s | p50 ms | p90 ms | p99 ms | max ms | failed | status codes | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for endpoint in ENDPOINTS:
        for c in sorted(c for e, c in runs if e == endpoint):
            r = runs[(endpoint, c)]
            rows.append(
                "| `%s` | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
                % (
                    ENDPOINTS[endpoint],
                    fmt_int(c),
                    fmt_int(r["peak_connections"]),
                    fmt_int(r["requests"]),
                    fmt_int(r["rps"]),
                    fmt_ms(r["p50"]),
                    fmt_ms(r["p90"]),
                    fmt_ms(r["p99"]),
                    fmt_ms(r["max"]),
                    fmt_int(r["failed"]),
                    fmt_map(r["codes"]),
                    fmt_map(r["errors"]),
                )
            )
    return "\n".join(rows)


def target_line(runs):
    r = runs.get(("post", 1000))
    if r is None:
        return "The target (POST at 1,000 connections) was not run."
    met = r["failed"] == 0 and r["p99"] is not None and r["p99"] < TARGET_P99_MS
    return "Target, `POST /api/v1/events` at 1,000 connections: %s failed requests, p99 %s ms (target: 0 and under %.0f ms): **%s**." % (
        fmt_int(r["failed"]),
        fmt_ms(r["p99"]),
        TARGET_P99_MS,
        "met" if met else "not met",
    )


def svg(runs):
    """Two panels: requests/s per level (bars), p99 latency per level (bars, target line)."""
    levels = sorted({c for _, c in runs})
    colors = {"post": "#1f77b4", "get": "#ff7f0e"}
    W, H, pad, top, gap = 960, 380, 60, 40, 40
    pw = (W - 2 * pad - gap) / 2
    ph = H - top - 70
    out = [
        '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">' % (W, H, W, H),
        '<rect width="100%" height="100%" fill="white"/>',
    ]

    def panel(x0, title, key, unit, target=None):
        vals = [runs[(e, c)][key] or 0 for e in ENDPOINTS for c in levels if (e, c) in runs]
        vmax = max(vals + [target or 0, 1e-9]) * 1.15
        out.append('<text x="%.1f" y="%d" font-size="14" font-weight="bold">%s</text>' % (x0, top - 15, title))
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#333"/>' % (x0, top + ph, x0 + pw, top + ph))
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#333"/>' % (x0, top, x0, top + ph))
        for i in range(5):
            v = vmax * i / 4
            y = top + ph - ph * i / 4
            out.append('<text x="%.1f" y="%.1f" text-anchor="end" fill="#555">%s</text>' % (x0 - 4, y + 4, fmt_int(v)))
            out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>' % (x0, y, x0 + pw, y))
        group = pw / max(len(levels), 1)
        bar = group / (len(ENDPOINTS) + 1)
        for gi, c in enumerate(levels):
            gx = x0 + gi * group
            out.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (gx + group / 2, top + ph + 16, fmt_int(c)))
            for bi, e in enumerate(ENDPOINTS):
                r = runs.get((e, c))
                if r is None or r[key] is None:
                    continue
                h = ph * r[key] / vmax
                bx = gx + bar / 2 + bi * bar
                out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>' % (bx, top + ph - h, bar * 0.9, h, colors[e]))
                label = fmt_int(r[key]) if key == "rps" else fmt_ms(r[key])
                out.append('<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%s</text>' % (bx + bar * 0.45, top + ph - h - 3, label))
        out.append('<text x="%.1f" y="%d" text-anchor="middle">connections (%s)</text>' % (x0 + pw / 2, top + ph + 34, unit))
        if target is not None:
            y = top + ph - ph * target / vmax
            out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#c00" stroke-dasharray="6,4"/>' % (x0, y, x0 + pw, y))
            out.append('<text x="%.1f" y="%.1f" text-anchor="end" fill="#c00">target %.0f ms</text>' % (x0 + pw, y - 4, target))

    panel(pad, "Requests per second", "rps", "requests/s")
    panel(pad + pw + gap + 20, "p99 latency", "p99", "ms", TARGET_P99_MS)
    lx = pad
    for e, name in ENDPOINTS.items():
        out.append('<rect x="%d" y="%d" width="12" height="12" fill="%s"/>' % (lx, H - 22, colors[e]))
        out.append('<text x="%d" y="%d">%s</text>' % (lx + 16, H - 12, name.replace("&", "&amp;")))
        lx += 340
    out.append("</svg>")
    return "\n".join(out) + "\n"


def report(d, out, svg_path, meta):
    runs = load_runs(d)
    if not runs:
        sys.exit("no oha results (post-<c>.json, get-<c>.json) in %s" % d)
    with open(svg_path, "w") as f:
        f.write(svg(runs))
    m = dict(kv.split("=", 1) for kv in meta)
    md = [
        "# HTTP load report",
        "",
        "Regenerated by `just load` (`scripts/load-test.sh`; the text and numbers below are",
        "written by `scripts/load-report.py`, do not edit by hand). Analysis and history:",
        "[performance.md](performance.md#http-load-and-the-influxdb-peer).",
        "",
        "| | |",
        "|---|---|",
    ]
    for k in ["date", "machine", "vigia", "binary", "oha", "nats-server", "duration", "ulimit -n", "command"]:
        if k in m:
            md.append("| %s | %s |" % (k, m[k]))
    md += [
        "",
        "Each level runs `oha` for the duration with that many keep-alive connections, each",
        "sending its next request as soon as the last one is answered, against one `vigia up",
        "--no-sim` (release build) with its own `nats-server -js` and SurrealKV store in a",
        "temporary directory, all on this machine (loopback). `POST` bodies are JSON arrays of",
        "5 readings for random sensors of a 2,000-sensor fleet under `brasil` (a random line of",
        "2,000 prepared bodies per request); each is one `ReadingsRecorded` message that",
        "JetStream acknowledges before the API answers `202`. `GET` asks for the 24-hour",
        "averages of a store seeded with 2,000 sensors before the runs. The `GET` levels run",
        "first, on a store at rest; during the `POST` levels the persister drains the growing",
        "backlog on the same two cores. **peak open** is the most established connections the",
        "server's port had at once (sampled with `ss` every 0.5 s); **failed** is non-2xx",
        "answers plus transport errors (status codes and errors are listed).",
        "Latencies in milliseconds, from oha.",
        "",
        table(runs),
        "",
        target_line(runs),
        "",
        "![Requests per second and p99 latency per connection level](%s)" % os.path.basename(svg_path),
        "",
    ]
    with open(out, "w") as f:
        f.write("\n".join(md))
    print("wrote %s and %s" % (out, svg_path))


def self_test():
    import tempfile

    oha = {
        "summary": {"successRate": 1.0, "total": 20.0, "slowest": 0.25, "requestsPerSec": 5000.5},
        "latencyPercentiles": {"p50": 0.01, "p90": 0.02, "p99": 0.05},
        "statusCodeDistribution": {"202": 99990, "503": 10},
        "errorDistribution": {"connection closed": 5},
    }
    r = parse_run(oha, 1000)
    assert r["requests"] == 100005, r
    assert r["failed"] == 15, r
    assert abs(r["p99"] - 50.0) < 1e-9 and abs(r["max"] - 250.0) < 1e-9, r
    with tempfile.TemporaryDirectory() as d:
        for e in ["post", "get"]:
            with open(os.path.join(d, "%s-1000.json" % e), "w") as f:
                json.dump(oha, f)
            with open(os.path.join(d, "%s-1000.conns" % e), "w") as f:
                f.write("1000\n")
        runs = load_runs(d)
        assert set(runs) == {("post", 1000), ("get", 1000)}, runs
        text = table(runs)
        assert "| `POST /api/v1/events` | 1,000 | 1,000 | 100,005 | 5,000 | 10.0 | 20.0 | 50.0 | 250 | 15 | 202: 99,990, 503: 10 | connection closed: 5 |" in text, text
        assert "not met" in target_line(runs)
        picture = svg(runs)
        assert picture.startswith("<svg") and "target 100 ms" in picture
        body = os.path.join(d, "bodies.txt")
        bodies(body, 3, 5, 2000)
        lines = open(body).read().splitlines()
        assert len(lines) == 3 and all(len(json.loads(l)) == 5 for l in lines)
        assert all(i["tag"].startswith("brasil.") for i in json.loads(lines[0]))
    print("load-report.py: 1 passed, 0 failed")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bodies")
    b.add_argument("out")
    b.add_argument("--lines", type=int, default=2000)
    b.add_argument("--readings", type=int, default=5)
    b.add_argument("--sensors", type=int, default=2000)
    r = sub.add_parser("report")
    r.add_argument("dir")
    r.add_argument("--out", required=True)
    r.add_argument("--svg", required=True)
    r.add_argument("--meta", action="append", default=[])
    sub.add_parser("test")
    a = p.parse_args()
    if a.cmd == "bodies":
        bodies(a.out, a.lines, a.readings, a.sensors)
    elif a.cmd == "report":
        report(a.dir, a.out, a.svg, a.meta)
    else:
        self_test()


if __name__ == "__main__":
    main()
