"""Measure 2, claim next: claimer processes (their own connections) calling
``workqueue.work_item_claim_next`` in a loop, against the same number of processes running
one raw ``UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id``
statement in autocommit. Before every round the claims of the previous one are undone
and the table vacuumed, so every round starts from the same 200,000 open items."""

import time
from collections import Counter
from typing import Any

from bench.database import connect
from bench.report import ms, percentile, ratio
from bench.workers import Ready, run

QUEUE = "planning"
ROUNDS = 2
RAW_CLAIM = """
UPDATE core_workitem SET assignee_id = %(user)s, claimed_at = now()
WHERE id = (
    SELECT id FROM core_workitem
    WHERE queue_id = %(queue)s AND state = 'open' AND assignee_id IS NULL
      AND (snoozed_until IS NULL OR snoozed_until <= now())
    ORDER BY priority_key DESC, created_at, id
    FOR UPDATE SKIP LOCKED LIMIT 1
)
RETURNING id
"""


def project_claimer(username: str, seconds: float, *, ready: Ready) -> dict[str, Any]:
    from django.contrib.auth.models import User

    from fulfillment.core import workqueue

    user = User.objects.get(username=username)
    queue = workqueue.queue_get(slug=QUEUE)
    workqueue.may_work(user, queue)  # the user's teams, cached on the user as a web request would
    ready()
    return _loop(lambda: _pk(workqueue.work_item_claim_next(queue=queue, user=user)), seconds)


def _pk(item: Any) -> int | None:
    return None if item is None else item.pk


def raw_claimer(url: str, user_id: int, queue_id: int, seconds: float, *, ready: Ready) -> dict[str, Any]:
    with connect(url) as conn:
        params = {"user": user_id, "queue": queue_id}

        def claim() -> int | None:
            row = conn.execute(RAW_CLAIM, params).fetchone()
            return None if row is None else row[0]

        ready()
        return _loop(claim, seconds)


def _loop(claim: Any, seconds: float) -> dict[str, Any]:
    ids, latencies = [], []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        pk = claim()
        latencies.append(time.perf_counter() - started)
        if pk is None:
            break
        ids.append(pk)
    return {"ids": ids, "latencies": latencies}


def reset(url: str, queue_id: int) -> None:
    """Undo the previous round's claims (and their history rows) and vacuum."""
    with connect(url) as conn:
        conn.execute(
            "DELETE FROM core_workitemevent WHERE action = 'claimed' AND item_id IN "
            "(SELECT id FROM core_workitem WHERE queue_id = %s AND assignee_id IS NOT NULL)",
            (queue_id,),
        )
        conn.execute(
            "UPDATE core_workitem SET assignee_id = NULL, claimed_at = NULL "
            "WHERE queue_id = %s AND assignee_id IS NOT NULL",
            (queue_id,),
        )
        conn.execute("VACUUM (ANALYZE) core_workitem")
        conn.execute("VACUUM core_workitemevent")


def _best(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the most claims per second; double claims of every round add up."""
    best = dict(max(rounds, key=lambda r: r["claims_per_s"]))
    for key in ("double_claims", "double_claims_in_history"):
        if key in best:
            best[key] = sum(r[key] for r in rounds)
    return best


def _doubles_in_history(url: str) -> int:
    """Items with more than one 'claimed' history row: each would be a double claim."""
    with connect(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM (SELECT item_id FROM core_workitemevent WHERE action = 'claimed' "
            "GROUP BY item_id HAVING count(*) > 1) AS doubles"
        ).fetchone()[0]


def _round(target: str, args: list[tuple[Any, ...]]) -> dict[str, Any]:
    results, wall = run(target, args)
    ids = [pk for r in results for pk in r["ids"]]
    latencies = [s for r in results for s in r["latencies"]]
    doubles = sum(n - 1 for n in Counter(ids).values() if n > 1)
    return {
        "claims": len(ids),
        "claims_per_s": round(len(ids) / wall, 1),
        "p50_ms": ms(percentile(latencies, 50)),
        "p95_ms": ms(percentile(latencies, 95)),
        "double_claims": doubles,
    }


def measure(
    url: str, usernames: list[str], claimers: tuple[int, ...], seconds: float
) -> list[dict[str, Any]]:
    from django.contrib.auth.models import User

    from fulfillment.core.models import Queue, WorkItem

    queue_id = Queue.objects.get(slug=QUEUE).pk
    open_items = WorkItem.objects.filter(queue_id=queue_id, state="open", assignee__isnull=True).count()
    users = dict(User.objects.filter(username__in=usernames).values_list("username", "pk"))
    lines = []
    for n in claimers:
        names = usernames[:n]
        projects, raws = [], []
        # Project and raw alternate, twice each; the better round of each counts, so that
        # other work on a shared machine, which comes and goes, weighs on both alike.
        for _ in range(ROUNDS):
            reset(url, queue_id)
            project = _round("bench.claim.project_claimer", [(name, seconds) for name in names])
            project["double_claims_in_history"] = _doubles_in_history(url)
            projects.append(project)
            reset(url, queue_id)
            raws.append(
                _round("bench.claim.raw_claimer", [(url, users[name], queue_id, seconds) for name in names])
            )
        project = _best(projects)
        raw = _best(raws)
        lines.append(
            {
                "claimers": n,
                "open_items": open_items,
                "rounds": ROUNDS,
                "project": project,
                "raw": raw,
                "ratio": ratio(project["claims_per_s"], raw["claims_per_s"]),
            }
        )
    reset(url, queue_id)
    return lines
