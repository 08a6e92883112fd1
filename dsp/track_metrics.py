"""How trustworthy are the tracks? Coverage, ghosts and identity switches against a known truth.

Pure numeric: the caller gives, per frame, the time, which talkers were speaking and where they
were, and the tracks that were reported. The three measures are the ones a user sees:

- coverage: of the (frame, speaking talker) pairs, the fraction with a reported track within
  ``cover_deg`` of the talker;
- ghosts: of the (frame, reported track) pairs, the fraction farther than ``ghost_deg`` from every
  talker who spoke within the last ``recent_s`` seconds (a track may outlive a short pause, not
  invent a source);
- identity switches per talker-minute, by CLEAR-MOT's rule (Bernardin & Stiefelhagen, 2008): each
  frame, speaking talkers and tracks are matched one to one within ``cover_deg`` (a talker keeps the
  track it was matched to while that one stays close, the others are matched by the Hungarian
  method); a switch is a talker matched to another id than the one it was last matched to. One to
  one: while two talkers share one track, it counts for one of them, so a crossing whose tracks
  come out right costs no switch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from doascope.dsp.assignment import linear_sum_assignment

_FAR = 1e6  # cost of a pair farther than cover_deg (never matched)


@dataclass(frozen=True)
class TrackScores:
    """Scores of one run (or several, pooled: see :func:`pool`)."""

    pairs: int              # (frame, speaking talker) pairs
    covered: int            # ... with a track within cover_deg
    reports: int            # (frame, reported track) pairs
    ghosts: int             # ... far from every recent talker
    switches: int           # identity switches
    talker_minutes: float   # speaking time summed over talkers, minutes
    error_sum: float        # summed error (deg) of the covered pairs

    @property
    def coverage(self) -> float:
        return self.covered / self.pairs if self.pairs else float("nan")

    @property
    def ghost_rate(self) -> float:
        return self.ghosts / self.reports if self.reports else 0.0

    @property
    def switches_per_minute(self) -> float:
        return self.switches / self.talker_minutes if self.talker_minutes else 0.0

    @property
    def mean_error(self) -> float:
        return self.error_sum / self.covered if self.covered else float("nan")


def pool(scores) -> TrackScores:
    """Several runs' scores as one (sums of counts, not a mean of ratios)."""
    scores = list(scores)
    return TrackScores(*(sum(getattr(s, f) for s in scores) for f in TrackScores.__dataclass_fields__))


def angular_distance(a, b) -> np.ndarray:
    """Absolute azimuth difference in degrees, in [0, 180], broadcasting."""
    d = np.abs((np.asarray(a, float) - np.asarray(b, float)) % 360.0)
    return np.minimum(d, 360.0 - d)


def score_tracks(times, speaking, truth_azimuth, tracks, *, cover_deg: float = 15.0, ghost_deg: float = 20.0,
                 recent_s: float = 1.5) -> TrackScores:
    """Score reported tracks against the truth.

    Parameters
    ----------
    times : (frames,) seconds, increasing
    speaking : (frames, talkers) bool, whether each talker speaks in each frame
    truth_azimuth : (frames, talkers) degrees, where each talker is
    tracks : per frame, a sequence of (id, azimuth in degrees)
    """
    times = np.asarray(times, float)
    speaking = np.asarray(speaking, bool)
    truth = np.asarray(truth_azimuth, float)
    n_frames, n_talkers = speaking.shape
    if len(tracks) != n_frames or truth.shape != speaking.shape or times.shape != (n_frames,):
        raise ValueError("times, speaking, truth_azimuth and tracks must describe the same frames")
    last_spoke = np.full(n_talkers, -np.inf)
    last_id = [None] * n_talkers
    pairs = covered = reports = ghosts = switches = 0
    error_sum = 0.0
    step = float(np.median(np.diff(times))) if n_frames > 1 else 0.0
    for f in range(n_frames):
        last_spoke[speaking[f]] = times[f]
        ids = np.array([int(i) for i, _ in tracks[f]], int)
        az = np.array([float(a) for _, a in tracks[f]], float)
        if az.size:
            d = angular_distance(az[:, None], truth[f][None, :])        # (tracks, talkers)
            recent = times[f] - last_spoke <= recent_s
            far = ~np.any((d <= ghost_deg) & recent[None, :], axis=1)
            reports += az.size
            ghosts += int(far.sum())
        talkers = np.nonzero(speaking[f])[0]
        pairs += talkers.size
        if not az.size:
            continue
        near = d[:, talkers].min(axis=0)
        covered += int(np.sum(near <= cover_deg))
        error_sum += float(np.sum(near[near <= cover_deg]))
        # Identity as CLEAR-MOT matches it, one to one: a talker keeps the track it was matched to
        # while that one is still close enough and nobody else's; the others are matched by the
        # Hungarian method inside cover_deg. A track between two talkers counts for one of them only.
        match, taken = {}, set()
        for k in talkers:
            keep = np.nonzero((ids == last_id[k]) & (d[:, k] <= cover_deg))[0]
            if keep.size and int(keep[0]) not in taken:
                match[int(k)] = int(keep[0])
                taken.add(int(keep[0]))
        rest = [int(k) for k in talkers if int(k) not in match]
        free = [j for j in range(az.size) if j not in taken]
        if rest and free:
            cost = d[np.ix_(free, rest)]
            for a, b in zip(*linear_sum_assignment(np.where(cost <= cover_deg, cost, _FAR))):
                if cost[a, b] <= cover_deg:
                    match[rest[b]] = free[a]
        for k, j in match.items():
            if last_id[k] is not None and last_id[k] != ids[j]:
                switches += 1
            last_id[k] = ids[j]
    minutes = float(speaking.sum()) * step / 60.0
    return TrackScores(pairs, covered, reports, ghosts, switches, minutes, error_sum)
