"""``python -m bench.table [small|full]``: the last run's figures as the Markdown table of
docs/performance.md, from ``var/bench/<scale>.jsonl``."""

import json
import sys
from typing import Any

from bench.report import RESULTS_DIR


def _lines(scale: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for text in (RESULTS_DIR / f"{scale}.jsonl").read_text().splitlines():
        line = json.loads(text)
        found.setdefault(line["measure"], []).append(line)
    return found


def _queries(n: int) -> str:
    return "1 query" if n == 1 else f"{n} queries"


def rows(scale: str) -> list[tuple[str, str, str, str]]:
    """(measure, project, raw, project ÷ raw) per line of the table."""
    m = _lines(scale)
    out = []
    if "ingest" in m:
        i = m["ingest"][0]
        out.append(
            (
                f"1. Ingest, {i['orders']:,} orders ({i['project']['rows']:,} rows), {i['loaders']} loaders",
                f"{i['project']['rows_per_s']:,.0f} rows/s",
                f"{i['raw']['rows_per_s']:,.0f} rows/s",
                f"{i['ratio']}",
            )
        )
    for c in m.get("claim", []):
        p, r = c["project"], c["raw"]
        out.append(
            (
                f"2. Claim next, {c['claimers']} claimer(s), {c['open_items']:,} open in the queue",
                f"{p['claims_per_s']:,.0f}/s, p95 {p['p95_ms']} ms, double claims "
                f"{p['double_claims']} (history {p['double_claims_in_history']})",
                f"{r['claims_per_s']:,.0f}/s, p95 {r['p95_ms']} ms, double claims {r['double_claims']}",
                f"{c['ratio']}",
            )
        )
    for q in m.get("queue_page", []):
        p, r = q["project"], q["raw"]
        out.append(
            (
                f"3. Queue page at {q['orders']:,} orders ({q['open_items']:,} open items)",
                f"p50 {p['p50_ms']} / p95 {p['p95_ms']} ms, {p['queries_per_request']} queries",
                f"p50 {r['p50_ms']} / p95 {r['p95_ms']} ms, 1 query",
                f"{q['ratio']} (p95)",
            )
        )
    for a in m.get("api", []):
        for part in ("list", "detail"):
            p, r = a[part]["project"], a[part]["raw"]
            out.append(
                (
                    f"4. Order API {part} at {a['orders']:,} orders",
                    f"p50 {p['p50_ms']} / p95 {p['p95_ms']} ms, {p['queries_per_request']} queries",
                    f"p50 {r['p50_ms']} / p95 {r['p95_ms']} ms, {_queries(r['queries'])}",
                    f"{a[part]['ratio']} (p95)",
                )
            )
    for w in m.get("webhook", []):
        p, r = w["project"], w["raw"]
        out.append(
            (
                f"5. Webhook accept, {w['senders']} senders",
                f"{p['accepted_per_s']:,.0f}/s, p95 {p['p95_ms']} ms (server {p['server_p95_ms']} ms)",
                f"{r['inserted_per_s']:,.0f}/s, p95 {r['p95_ms']} ms",
                f"{w['ratio']}",
            )
        )
    for rl in m.get("relay", []):
        d, s = rl["drain"], rl["steady"]
        out.append(
            (
                f"6. Outbox relay, drain {d['project']['delivered']:,}",
                f"{d['project']['delivered_per_s']:,.0f}/s",
                f"{d['raw']['delivered_per_s']:,.0f}/s",
                f"{d['ratio']}",
            )
        )
        out.append(
            (
                f"6. Outbox relay, steady: {s['offered_per_s']}/s offered for {s['offered']:,} messages",
                f"{s['delivered_per_s']}/s delivered; commit to delivery p50 "
                f"{s['commit_to_delivery_p50_ms']} / p95 {s['commit_to_delivery_p95_ms']} ms",
                "—",
                "—",
            )
        )
    for sw in m.get("sweeps", []):
        for part, label in (
            ("escalation", "Escalation sweep (SLA warnings + 20 rules)"),
            ("stall", "Stall sweep"),
        ):
            p, r = sw[part]["project"], sw[part]["raw"]
            work = (
                f"{p['firings']} firings, {p['sla_warnings']} warnings"
                if part == "escalation"
                else f"{p['opened']} opened"
            )
            out.append(
                (
                    f"7. {label} at {sw['open_items']:,} open items",
                    f"{p['seconds']} s, {p['queries']} queries ({work})",
                    f"{r['seconds']} s, {_queries(r['queries'])} (reads only)",
                    f"{sw[part]['ratio']}",
                )
            )
    for mem in m.get("memory", []):
        out.append(
            (
                "8. Peak RSS: web worker / background worker",
                f"{mem.get('web_worker_peak_rss_mb')} MB / {mem.get('background_worker_peak_rss_mb')} MB",
                f"{mem['raw_process_rss_mb']} MB (bare Django process)",
                "—",
            )
        )
    return out


def main(scale: str) -> None:
    print("| measure | project | raw SQL | project ÷ raw |")
    print("|---|---|---|---|")
    for row in rows(scale):
        print("| " + " | ".join(row) + " |")
    for line in _lines(scale).get("machine", []):
        print(
            f"\nMachine: {line['nproc']} CPUs ({line['cpu']}), {line['memory_gib']} GiB, "
            f"Python {line['python']}, PostgreSQL {line['postgresql']}; "
            f"the Python yardstick loop took {line.get('python_loop_ms')} ms."
        )
    for line in _lines(scale).get("run", []):
        print(f"\nThe run took {line['seconds']} s; load average at its end {line['load_average']}.")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "full")
