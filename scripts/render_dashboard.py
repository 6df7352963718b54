#!/usr/bin/env python3
"""Draws the Grafana dashboard's panels from a Prometheus server: each panel's own PromQL
(deploy/grafana/dashboards/fluid-webhooks.json), evaluated with Prometheus's range-query API over
a time window, one small chart per panel, into one PNG. Used by scripts/render-dashboard.

usage: render_dashboard.py PROMETHEUS_URL START END OUT.png [RATE_WINDOW]
"""

import json
import math
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy/grafana/dashboards/fluid-webhooks.json"


def query_range(prometheus, expr, start, end, step):
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=30) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise SystemExit(f"Prometheus refused {expr}: {body}")
    return body["data"]["result"]


def legend(template, labels):
    if not template:
        return ",".join(f"{k}={v}" for k, v in labels.items() if k != "__name__") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def main():
    prometheus, start, end, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    window = sys.argv[5] if len(sys.argv) > 5 else None
    step = max(1, int((end - start) / 200))
    panels = json.loads(DASHBOARD.read_text())["panels"]
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels):
        ax.set_title(panel["title"], fontsize=10, loc="left")
        ax.grid(alpha=0.3)
        drawn = 0
        for target in panel.get("targets", []):
            expr = target["expr"]
            if window:  # a short run: shorter rate windows, so the lines follow the load
                expr = re.sub(r"\[(5m|15m)\]", f"[{window}]", expr)
            for series in query_range(prometheus, expr, start, end, step):
                points = [(float(t) - start, float(v)) for t, v in series["values"] if v not in ("NaN", "+Inf", "-Inf")]
                if not points:
                    continue
                xs, ys = zip(*points)
                ax.plot(xs, ys, label=legend(target.get("legendFormat"), series["metric"]), linewidth=1.2)
                drawn += 1
        if drawn:
            ax.legend(fontsize=7, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no data in this run", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_xlabel("seconds", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("fluid-webhooks dashboard, rendered from Prometheus", fontsize=12)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
