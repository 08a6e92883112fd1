"""``bench --position``: position mode's searches on simulated rooms (error and cost per block)."""

from __future__ import annotations

import time

import numpy as np

from doascope.app.bench.common import Pace, console, new_table
from doascope.hardware_profiles import load_profile

POSITION_SETUPS = {"6 wall mics": "room_walls_6mic", "3 arrays x 4 mics": "room_three_arrays"}
POSITION_SEARCHES = {"grid": {"spacing": 0.05}, "coarse-to-fine": {}, "src": {}}


def position_bench(quick: bool, out: dict, *, n_scenes: int | None = None) -> None:
    """Position error and cost per block of each search, one talker in simulated rooms.

    Every search runs on the very same smoothed GCC-PHAT correlations of each block, so errors and
    times differ only by the search; triangulation uses the arrays' own far-field SRP-PHAT. Scored
    blocks: the talker speaks during at least half the block and the activity gate is open.
    """
    from doascope.config import position_defaults
    from doascope.sim.scenes import simulate_room
    from doascope.dsp.position import PositionLocalizer

    con = console()
    n_scenes = n_scenes or (3 if quick else 12)
    duration = 3.0 if quick else 4.0
    rows = []
    pace = Pace(f"position, simulated rooms ({n_scenes} per set-up)", len(POSITION_SETUPS) * n_scenes)
    for label, pid in POSITION_SETUPS.items():
        prof = load_profile(pid)
        opts = position_defaults(prof.sample_rate)
        room = prof.room
        errors: dict[str, list[float]] = {}
        times: dict[str, list[float]] = {}
        evals: dict[str, list[int]] = {}
        for i in range(n_scenes):
            rng = np.random.default_rng(500 + i)
            src = np.array([rng.uniform(room[0, 0] + 0.8, room[0, 1] - 0.8),
                            rng.uniform(room[1, 0] + 0.8, room[1, 1] - 0.8), rng.uniform(1.1, 1.8)])
            rec = simulate_room(prof.positions, prof.sample_rate, src[None], room_dim=tuple(room[:, 1] - room[:, 0]),
                                duration=duration, rt60=float(rng.uniform(0.2, 0.6)),
                                snr_db=float(rng.uniform(5, 25)), seed=i)
            searches = list(POSITION_SEARCHES) + (["triangulation"] if len(prof.groups) >= 2 else [])
            for search in searches:
                loc = PositionLocalizer(prof.positions, room=room, fs=prof.sample_rate, search=search,
                                        groups=prof.groups, search_options=POSITION_SEARCHES.get(search), **opts)
                srp = loc.srp
                spent = [0.0]
                if search != "triangulation":   # time the search alone, GCC-PHAT excluded
                    inner = srp.search

                    def timed(method, _inner=inner, **kw):
                        t0 = time.perf_counter()
                        res = _inner(method, **kw)
                        spent[0] += time.perf_counter() - t0
                        return res
                    srp.search = timed
                else:
                    inner_b = loc._triangulate

                    def timed_t(X, _inner=inner_b):
                        t0 = time.perf_counter()
                        res = _inner(X)
                        spent[0] += time.perf_counter() - t0
                        return res
                    loc._triangulate = timed_t
                for res in loc.locate(rec.audio):
                    if not res.active or rec.on[res.start:res.stop, 0].mean() < 0.5:
                        spent[0] = 0.0
                        continue
                    if res.sources:
                        s = res.sources[0]
                        errors.setdefault(search, []).append(float(np.linalg.norm([s.x - src[0], s.y - src[1],
                                                                                   s.z - src[2]])))
                    else:
                        errors.setdefault(search, []).append(np.inf)   # a missed block counts as a miss
                    times.setdefault(search, []).append(spent[0])
                    evals.setdefault(search, []).append(res.evaluations)
                    spent[0] = 0.0
            pace.step()
        ref_t = np.median(times["grid"])
        ref_e = np.median(evals["grid"])
        for search in errors:
            e = np.array(errors[search])
            t = float(np.median(times[search]))
            row = {"setup": label, "profile": pid, "search": search, "blocks": int(e.size),
                   "median_m": float(np.median(e)), "p90_m": float(np.percentile(e, 90)),
                   "within_0.3m": float(np.mean(e <= 0.3)), "ms_per_block": t * 1e3,
                   "evaluations": float(np.median(evals[search])),
                   "speedup_time": float(ref_t / t) if t > 0 else None,
                   "speedup_evaluations": float(ref_e / np.median(evals[search])) if np.median(evals[search]) else None}
            rows.append(row)
    table = new_table(f"Position of one talker in a 6 x 5 x 3 m room (RT60 0.2-0.6 s, SNR 5-25 dB, {n_scenes} scenes "
                   "per setup, blocks where the talker speaks); search time per block excludes the shared "
                   "GCC-PHAT; speed-up against the exhaustive 5 cm grid",
                   ["array", "method", "blocks", "median (m)", "p90 (m)", "<= 0.3 m", "ms/block", "points",
                    "speed-up (time)", "speed-up (points)"])
    for r in rows:
        table.add_row(r["setup"], r["search"], str(r["blocks"]), f"{r['median_m']:.3f}", f"{r['p90_m']:.3f}",
                      f"{r['within_0.3m']:.0%}", f"{r['ms_per_block']:.2f}",
                      "-" if not r["evaluations"] else f"{r['evaluations']:.0f}",
                      f"{r['speedup_time']:.0f}x" if r["speedup_time"] else "-",
                      f"{r['speedup_evaluations']:.0f}x" if r["speedup_evaluations"] else "-")
    con.print(table)
    out["position"] = rows
