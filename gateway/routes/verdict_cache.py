"""The server's verdict on each claim, kept while the claim's evidence is unchanged."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from gateway import claims as claim_store
from gateway import verdicts
from gateway.routes.claim_models import Verdict

VERDICT_CACHE = 256
"""Claims whose last verdict is kept (recomputed only when their evidence changed)."""


class VerdictCache:
    """Claim id -> (evidence fingerprint, verdict): the last server-side verdict of each claim.

    One lock per claim, so that concurrent requests for the same claim evaluate it once.
    """

    def __init__(self, size: int = VERDICT_CACHE) -> None:
        self.size = size
        self.verdicts: dict[int, tuple[Any, Verdict]] = {}
        self.locks: dict[int, asyncio.Lock] = {}

    async def verdict(self, pool: asyncpg.Pool, stored: claim_store.StoredClaim, size: int) -> Verdict:
        """The server's verdict on the claim's full evidence as of the checkpoint of ``size``."""
        lock = self.locks.setdefault(stored.id, asyncio.Lock())
        async with lock, pool.acquire() as conn:
            mark = await verdicts.fingerprint(conn, stored, size)
            cached = self.verdicts.get(stored.id)
            if cached is not None and cached[0] == mark:
                return cached[1].model_copy(update={"checkpoint_size": size})
            evaluation = await verdicts.evaluate_claim(conn, stored, size)
        verdict = Verdict.model_validate(verdicts.verdict_json(evaluation, size))
        if len(self.verdicts) >= self.size:
            self.verdicts.pop(next(iter(self.verdicts)))  # the oldest
        self.verdicts[stored.id] = (mark, verdict)
        if len(self.locks) > 4 * self.size:
            for claim_id in [i for i, lock in self.locks.items() if not lock.locked() and i != stored.id]:
                del self.locks[claim_id]
        return verdict
