"""The local end-to-end demo behind `./dev demo`.

Starts Azurite (in memory) and the AtHoc simulator with demo users, runs the mapping sync, uploads
sample BOBO exports of the last hour to the incoming container, hands each file to the blob trigger's
code path (`shared.pipeline.ingest_blob`) concurrently, as the Functions host would, then prints where
each file went and what AtHoc now holds.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from shared.runtime import Runtime
from shared.settings import Settings
from tools.athoc_sim import AtHocSimulator
from tools.azurite import start_azurite

TIMEZONE = "Europe/London"
DUTY = "On-Duty-DTG"
PEOPLE = [  # (collar number as BOBO writes it, AtHoc login)
    ("00101", "a.khan@force.example"),
    ("00102", "b.jones@force.example"),
    ("00103", "c.smith@force.example"),
    ("00104", "d.evans@force.example"),
    ("00105", "e.wright@force.example"),
    ("00106", "f.taylor@force.example"),
]


def _stamp(moment: datetime) -> tuple[str, str, str]:
    return moment.strftime("%Y%m%d"), moment.strftime("%H%M%S"), moment.strftime("%Y%m%d%H%M%S")


def _row(kind: str, collar: str, moment: datetime) -> str:
    day, clock, created = _stamp(moment)
    return f"{kind},{collar},P{collar[-3:]},{day},{clock},{created},3,51.501,-0.141,12.5"


def sample_files(now_local: datetime) -> dict[str, bytes]:
    """A few minutes of BOBO exports, plus the kinds of file operators hand-make or misplace."""
    t = now_local.replace(microsecond=0) - timedelta(minutes=50)
    export_1 = [_row("BON", "00101", t), _row("BON", "00102", t + timedelta(seconds=13)), _row("BON", "00103", t)]
    export_2 = [
        _row("BOF", "00102", t + timedelta(minutes=20)),
        _row("BON", "00104", t + timedelta(minutes=21)),
        _row("BON", "00999", t + timedelta(minutes=21)),
    ]
    simple = ["Employee_ID,Status,Timestamp", f"00105,On Duty,{(t + timedelta(minutes=30)):%Y-%m-%d %H:%M:%S}"]
    with_bad_rows = [
        _row("BON", "00106", t + timedelta(minutes=40)),
        "BON,00106,P106,20251340,250000,20251340250000,0,0,0,0",
        "XYZ,00103,P103,20251022,074142,20251022074142,0,0,0,0",
    ]
    return {
        f"bobo-{t:%Y%m%d-%H%M}.csv": ("\r\n".join(export_1) + "\r\n").encode(),
        f"bobo-{t + timedelta(minutes=21):%Y%m%d-%H%M}.csv": ("\n".join(export_2) + "\n").encode(),
        "handmade-simple.csv": ("\n".join(simple) + "\n").encode("utf-8-sig"),
        f"bobo-{t + timedelta(minutes=40):%Y%m%d-%H%M}.csv": ("\n".join(with_bad_rows) + "\n").encode(),
        "shift-notes.txt": b"not an export: goes to failed with its reason\n",
    }


def run(as_json: bool = False) -> int:
    out = (lambda *a: None) if as_json else print
    zone = ZoneInfo(TIMEZONE)
    azurite = start_azurite()
    sim = AtHocSimulator().start()
    try:
        for collar, login in PEOPLE:
            sim.add_user(login, collar=str(int(collar)))
        # Someone booked on two days ago and never off: the cleanup's business.
        sim.add_user(
            "g.old@force.example",
            collar="107",
            duty=(datetime.now(zone) - timedelta(hours=50)).strftime("%d/%m/%Y %H:%M:%S"),
        )
        settings = Settings.from_env(
            {
                "ATHOC_SERVER_URL": sim.url,
                "ATHOC_ORG_CODE": "DEMO",
                "ATHOC_CLIENT_ID": "bobo-sync",
                "ATHOC_CLIENT_SECRET": "sim-client-secret",
                "ATHOC_USERNAME": "svc-bobo",
                "ATHOC_PASSWORD": "sim-password",
                "BOBO_STORAGE": azurite.connection_string,
                "BOBO_TIMEZONE": TIMEZONE,
                "BOBO_BATCH_WINDOW_SECONDS": "1",
                "BOBO_BLOB_TRIGGER_SOURCE": "LogsAndContainerScan",
            }
        )
        runtime = Runtime(settings)
        runtime.ensure_ready()
        out(f"Azurite on 127.0.0.1:{azurite.blob_port} (blob); AtHoc simulator at {sim.url}; zone {TIMEZONE}")
        out("")

        from shared.mapping_sync import run_mapping_sync

        mapping = run_mapping_sync(runtime, force=True, trigger="demo")
        out(
            f"1. Mapping sync: {mapping.status}, {mapping.to_json().get('mappings_total')} mappings from "
            f"{mapping.to_json().get('users_fetched')} AtHoc users"
        )

        files = sample_files(datetime.now(zone))
        for name, body in files.items():
            runtime.storage.write_blob(settings.incoming_container, name, body)
        out(f"2. Uploaded {len(files)} files to {settings.incoming_container}")

        from shared.pipeline import ingest_blob
        from shared.process_report import ProcessReport

        reports: list[ProcessReport] = []
        lock = threading.Lock()

        def trigger(name: str) -> None:
            report = ingest_blob(runtime, name, trigger="demo")
            if report is not None and report.batches:
                with lock:
                    reports.append(report)

        threads = [threading.Thread(target=trigger, args=(name,)) for name in files]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        total = ProcessReport()
        for report in reports:
            total.add(report)
        out(
            f"3. {len(files)} trigger invocations ran concurrently: {total.batches} batch(es), "
            f"{sim.count('sync')} SyncByCommonNames request(s)"
        )
        out(
            f"   files {total.files_seen}: {total.files_processed} processed, {total.files_failed} failed, "
            f"{total.files_retry} waiting; rows {total.rows_read} read, {total.rows_rejected} rejected; "
            f"users updated {total.users_updated}, not found {total.users_not_found}, "
            f"unmapped employees {total.unmapped_employees}"
        )
        out("")
        out("   where each file went:")
        for item in sorted(total.files, key=lambda f: f["name"]):
            reason = f"  ({item['reason']})" if item.get("reason") else ""
            out(f"     {item['name']:<28} -> {item.get('destination', item['outcome'])}{reason}")
        rejects = [b.name for b in runtime.storage.container(settings.rejects_container).list_blobs()]
        if rejects:
            out(f"   rejected rows reported in {settings.rejects_container}: {', '.join(rejects)}")

        from shared.cleanup import run_cleanup

        cleanup = run_cleanup(runtime, dry_run=False, trigger="demo").to_json()
        out("")
        out(
            f"4. Stale-duty cleanup: {cleanup.get('users_checked')} users with a duty value checked, "
            f"{cleanup.get('cleared')} cleared (older than {settings.auto_cleanup_hours:g} h)"
        )
        out("")
        out(f"5. What AtHoc holds now ({DUTY}; empty = off duty):")
        holdings = []
        for user in sorted(sim.users(), key=lambda u: u["LOGIN_ID"]):
            value = user.get(DUTY) or ""
            holdings.append({"login": user["LOGIN_ID"], "collar": user.get("Collar-Number"), "duty": value})
            out(f"     {user['LOGIN_ID']:<26} collar {user.get('Collar-Number') or '-':<5} {value or '(off duty)'}")

        from shared.status_report import build_status

        health = build_status(runtime).health
        out("")
        out(
            f"6. Status verdict: {'healthy' if health.healthy else 'attention needed'}"
            + "".join(f"\n     - {reason}" for reason in health.reasons)
        )
        if as_json:
            print(
                json.dumps(
                    {"process": total.to_json(), "cleanup": cleanup, "athoc": holdings, "mapping": mapping.to_json()},
                    default=str,
                )
            )
        return 0
    finally:
        sim.stop()
        azurite.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON summary instead of text")
    parser.add_argument("--verbose", action="store_true", help="also show the app's log lines (stderr)")
    args = parser.parse_args(argv)
    # The summary below says what happened; the app's own log lines are for App Insights.
    logging.basicConfig(level=logging.INFO, format="  log %(levelname)s %(name)s: %(message)s")
    logging.getLogger("shared").setLevel(logging.INFO if args.verbose else logging.CRITICAL)
    logging.getLogger("azure").setLevel(logging.WARNING)
    return run(as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
