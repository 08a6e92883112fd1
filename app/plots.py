"""PNG figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from typing import Iterable, Sequence

from doascope import ParameterError


def azimuth_plot(track: Iterable[tuple[float, float, float]], path: str, *, title: str = "",
                 duration: float | None = None, truth: Sequence[float] = ()) -> None:
    """Azimuth over time: one dot per reported source, shaded by its power; true azimuths dashed."""
    from doascope.extras import optional_import

    matplotlib = optional_import("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = list(track)
    fig, ax = plt.subplots(figsize=(9, 4), dpi=110)
    if pts:
        t, az, pw = zip(*pts)
        sc = ax.scatter(t, az, c=pw, s=9, cmap="viridis", vmin=0, vmax=max(max(pw), 1e-6))
        fig.colorbar(sc, ax=ax, label="power")
    for a in truth:
        ax.axhline(a, color="crimson", ls="--", lw=1)
    ax.set_ylim(0, 360)
    ax.set_yticks(range(0, 361, 45))
    if duration:
        ax.set_xlim(0, duration)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("azimuth (deg, CCW from +x)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    _save(fig, path)


def eval_plot(blocks, truth_times, truth, path: str, *, position: bool = False, title: str = "") -> None:
    """``doascope eval``'s figure: the truth (crosses) and the estimates (dots) over time, azimuth in
    DOA mode, x and y in position mode. ``blocks`` holds (t, [source dicts]); ``truth[i]`` the
    (sources, coords) truth at ``truth_times[i]``."""
    from doascope.extras import optional_import

    matplotlib = optional_import("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("x", "y") if position else ("azimuth",)
    fig, axes = plt.subplots(len(keys), 1, figsize=(9, 2.2 + 2.2 * len(keys)), dpi=110, sharex=True, squeeze=False)
    for k, (key, ax) in enumerate(zip(keys, axes[:, 0])):
        tt = [t for t, c in zip(truth_times, truth) for _ in range(len(c))]
        tv = [row[k] for c in truth for row in c]
        ax.scatter(tt, tv, marker="x", s=14, color="crimson", label="truth", zorder=3)
        et = [t for t, srcs in blocks for _ in srcs]
        ev = [s[key] for _, srcs in blocks for s in srcs]
        ax.scatter(et, ev, s=9, color="tab:blue", alpha=0.7, label="estimates")
        if key == "azimuth":
            ax.set_ylim(0, 360)
            ax.set_yticks(range(0, 361, 45))
            ax.set_ylabel("azimuth (deg)")
        else:
            ax.set_ylabel(f"{key} (m)")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[0, 0].set_title(title, fontsize=9)
    axes[-1, 0].set_xlabel("time (s)")
    _save(fig, path)


def _save(fig, path: str) -> None:
    """Write the figure and close it; an unwritable path is one clear error."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as exc:
        raise ParameterError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
