"""PNG figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from typing import Iterable, Sequence

from doascope import ParameterError


def azimuth_plot(track: Iterable[tuple[float, float, float]], path: str, *, title: str = "",
                 duration: float | None = None, truth: Sequence[float] = ()) -> None:
    """Azimuth over time: one dot per reported source, shaded by its power; true azimuths dashed."""
    import matplotlib

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
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as exc:
        raise ParameterError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
