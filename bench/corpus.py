"""The device corpus, measured: ``make corpus`` (or ``make bench`` section corpus / fuzz).

corpus: one row per profile (simulator/profiles/*.json) and transport, from one
whole-gateway run each (tests/corpus/runner.py): discovered, read error (worst
of TotW, Hz, PhV over MMS against the simulator, % of rating / nominal),
volt-var error at 1.06 pu (% of rated VA), false trips (trip, cease or
curtailment events and writes on a normal grid), seconds from agent start to
the first good value over MMS, on hybrids the storage columns (SoC error over
MMS in percentage points, seconds a charge setpoint took to be followed, the
reserve held: most discharge W with the reserve above the SoC), and the
checks that failed.

fuzz: mutated and random Modbus answers over TCP and RTU (tests/hal/fuzz_modbus.py),
100,000 frames by default, half on each transport, in two processes.

    python bench/corpus.py [--fuzz N] [--only corpus,fuzz] [--workers 4]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from simulator.profile import all_profiles  # noqa: E402
from tests.corpus.runner import run_all  # noqa: E402
from tests.hal.fuzz_modbus import fuzz_run  # noqa: E402

FUZZ_PROFILE = os.path.join(ROOT, "simulator", "profiles", "exception2-unimplemented-span.json")


def _fmt(v, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def corpus(report=None, workers: int = 4) -> list[dict]:
    """Run every profile (and the RTU ones over RTU too); print one row each."""
    profiles = all_profiles()
    t0 = time.monotonic()
    res = run_all([p.path for p in profiles],
                  rtu_for={p.name for p in profiles if p.expect.get("rtu")}, workers=workers)
    print(f"{'profile':<40} {'link':<4} {'found':>5} {'read err %':>10} {'vv err %VA':>10} "
          f"{'false trips':>11} {'1st good s':>10} {'SoC err':>7} {'follow s':>8} "
          f"{'rsv W':>5}  failed checks")
    rows = []
    for key in sorted(res):
        r = res[key]
        failed = [c for c, ok in r["checks"].items() if not ok]
        if r.get("error"):
            failed.append(f"error: {r['error']}")
        found = "yes" if r["checks"].get("discovered") else "NO"
        print(f"{r['profile']:<40} {r['transport']:<4} {found:>5} "
              f"{_fmt(r.get('read_error_pct'), '.3f'):>10} {_fmt(r.get('volt_var_error_pct')):>10} "
              f"{_fmt(r.get('false_trips'), 'd'):>11} {_fmt(r.get('first_good_s')):>10} "
              f"{_fmt(r.get('soc_error_pct')):>7} {_fmt(r.get('setpoint_follow_s')):>8} "
              f"{_fmt(r.get('reserve_max_discharge_w'), '.0f'):>5}  "
              f"{', '.join(failed) or '-'}", flush=True)
        rows.append(r)
    ok = sum(1 for r in rows if all(r["checks"].values()) and not r.get("error"))
    print(f"{ok} of {len(rows)} runs pass every check ({time.monotonic() - t0:.0f} s)")
    if report is not None:
        report("device corpus: runs passing every check", f"{ok} / {len(rows)}",
               f"{len(profiles)} profiles, python bench/corpus.py for the table")
        worst = max((abs(r["volt_var_error_pct"]) for r in rows
                     if r.get("volt_var_error_pct") is not None), default=None)
        report("device corpus: worst volt-var error at 1.06 pu", f"{_fmt(worst)} % VA",
               "IEEE 1547-2018 Table 3: 5 %")
        report("device corpus: false trips on a normal grid",
               str(sum(r.get("false_trips") or 0 for r in rows)), "")
        hybrids = [r for r in rows if "setpoint_followed" in r["checks"]]
        if hybrids:
            report("device corpus: hybrids following a storage setpoint within 10 s",
                   f"{sum(1 for r in hybrids if r['checks']['setpoint_followed'])} / "
                   f"{len(hybrids)}", "reserve held on "
                   f"{sum(1 for r in hybrids if r['checks'].get('reserve_held'))}")
    return rows


def _quiet() -> None:
    """Fuzz workers: the library's per-frame complaints are the point, not news."""
    logging.disable(logging.CRITICAL)


def fuzz(report=None, frames: int = 100_000) -> list[dict]:
    """Half the frames over TCP, half over RTU, side by side; print what got through."""
    half = max(1, frames // 2)
    jobs = [(True, 21), (False, 22)]
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, initializer=_quiet) as pool:
        futs = [pool.submit(fuzz_run, FUZZ_PROFILE, half, tcp, seed, 0.02,
                            max(60.0, half / 20.0), 0.1) for tcp, seed in jobs]
        results = [f.result() for f in futs]
    for r in results:
        bad = sum(v for k, v in r["mutations"].items() if k != "ok")
        line = (f"{r['transport']}: {r['frames']} frames ({bad} malformed) in {r['seconds']} s, "
                f"{r['polls']} polls ({r['failed_polls']} failed), raised {len(r['raised'])}, "
                f"malformed values served good {len(r['wrong_good'])}, slowest poll "
                f"{r['max_poll_s']} s (bound {r['poll_bound_s']} s), memory growth "
                f"{r['mem_growth_bytes'] / 1e3:.0f} kB")
        print(line, flush=True)
        if report is not None:
            report(f"Modbus fuzz {r['transport']}: malformed values served good",
                   str(len(r["wrong_good"])),
                   f"{r['frames']} frames, {bad} malformed; crashes {len(r['raised'])}; "
                   f"slowest poll {r['max_poll_s']} s; "
                   f"memory +{r['mem_growth_bytes'] / 1e3:.0f} kB")
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", default="corpus")
    ap.add_argument("--fuzz", type=int, default=100_000, help="frames for the fuzz section")
    ap.add_argument("--workers", type=int, default=4, help="profiles run side by side")
    args = ap.parse_args()
    only = set(args.only.split(","))
    if "corpus" in only:
        corpus(workers=args.workers)
    if "fuzz" in only:
        fuzz(frames=args.fuzz)
    return 0


if __name__ == "__main__":
    sys.exit(main())
