#!/usr/bin/env python3
"""Medians (and every run) of the reports bench/run-cluster.sh appended to RESULTS.

    bench/cluster-medians.py target/bench-cluster.jsonl
"""
import json
import re
import statistics
import sys
from collections import defaultdict

PUSHED = 100_000  # messages per push run in run-cluster.sh

runs = defaultdict(list)
for line in open(sys.argv[1]):
    row = json.loads(line)
    runs[row["label"]].append(row["report"])


def show(name, values, unit=""):
    values = [round(v, 2) for v in values]
    print(f"  {name:38} {round(statistics.median(values), 2):>12} {unit:4} runs: {values}")


for label, reports in runs.items():
    print(label)
    if label.startswith("push"):
        figures = [{f["name"]: f["value"] for f in r["figures"]} for r in reports]
        for name in ["delivered rate", "lost (ok but never received)", "latency p50", "latency p99"]:
            show(name, [f[name] for f in figures])
    elif label.startswith("rss"):
        show("bytes per connection", [r["bytes_per_connection"] for r in reports])
    elif label == "redis-commandstats":
        for command in ["evalsha", "publish"]:
            usec = [
                int(re.search(r"usec=(\d+)", line).group(1))
                for r in reports
                for line in r
                if line.startswith(f"cmdstat_{command}:")
            ]
            show(f"{command}: Redis µs per pushed message", [u / PUSHED for u in usec])
    elif label == "kick-us":
        show("pushctl kick, median of 20 (ms)", [r["median"] / 1000 for r in reports])
        show("pushctl kick, fastest of 20 (ms)", [min(r["runs"]) / 1000 for r in reports])
    else:
        show("value", [float(r) for r in reports])
