"""``doascope batch``: a corpus of recordings localized in parallel (a local process pool or Ray),
resumable, into one table."""
