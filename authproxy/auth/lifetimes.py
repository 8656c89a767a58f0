"""Token lifetimes an API does not announce, learned from the ages at which its tokens die.

Crux (and any custom flow with `expiry: {from: none}`) hands out tokens without saying how long
they live. Without knowing, the proxy uses a token until the upstream refuses it, so every lifetime
ends in one refused request that must be replayed, and a streamed body (not replayable) reaches
the client as a 401. `LifetimeLearner` watches the age at which each token is first refused:

* Two tokens IN A ROW that died at similar ages (the shorter at least `SIMILAR` of the longer)
  are evidence of a lifetime; the shorter age becomes the learned lifetime, and the token manager
  renews at `renew_at` of it, ahead of the death. A token replaced before it died breaks the row,
  so revocations, which strike at random ages and are rarely back to back, do not teach a
  lifetime.
* A token accepted at an age beyond the learned lifetime means the server's setting changed: the
  learned value is dropped and learning starts again.
* Some servers answer a new login with the token they already issued while it lives (Django REST
  framework's `get_or_create`). Renewing early cannot help there: `sticky` is set once a login
  returns the token already held, and renewal then waits for the learned death instead.

Pure and clock-free: the manager passes times in POSIX seconds.
"""

from __future__ import annotations

from authproxy.auth.expiry import renew_deadline
from authproxy.auth.grant import Grant

SIMILAR = 0.75


class LifetimeLearner:
    __slots__ = ("_deaths", "learned", "sticky")

    def __init__(self) -> None:
        self.learned: float | None = None
        self.sticky = False
        self._deaths: list[float] = []  # ages at death of consecutive tokens, at most two

    def died(self, age: float) -> None:
        """A token was refused for the first time at `age` seconds, after being accepted."""
        if age <= 0:
            return
        self._deaths = [*self._deaths[-1:], age]
        if len(self._deaths) == 2:
            shorter, longer = sorted(self._deaths)
            if shorter >= SIMILAR * longer:
                self.learned = shorter

    def replaced(self) -> None:
        """A token was renewed before it died: the next death does not follow one in a row."""
        self._deaths.clear()

    def accepted(self, age: float) -> None:
        """A token was accepted at `age`: beyond the learned lifetime, that lifetime is stale."""
        if self.learned is not None and age > self.learned:
            self.learned = None
            self._deaths.clear()

    def renewed(self, previous: Grant, grant: Grant, now: float) -> Grant:
        """`grant`, which replaced `previous` while it was still held (a renewal before any
        refusal): the same token answered again keeps its age, and marks the server sticky."""
        token = grant.values.get("token")
        if token is None or token != previous.values.get("token"):
            self.replaced()
            return grant
        if grant.expires_at is not None:
            return grant  # its announced expiry says how long it lives
        self.sticky = True
        self.accepted(now - previous.obtained_at)
        return Grant(grant.values, None, previous.obtained_at)

    def deadline(self, grant: Grant, renew_at: float, jitter: float) -> float | None:
        """When to renew `grant`: `renew_at` of its lifetime, announced or learned; None: never
        ahead of a refusal."""
        expires = grant.expires_at
        if expires is None and self.learned is not None:
            if self.sticky:
                # A login before the token dies gets the same token back: renew at its death.
                return grant.obtained_at + self.learned
            expires = grant.obtained_at + self.learned
        return renew_deadline(grant.obtained_at, expires, renew_at, jitter)

    def lifted_by(self, grant: Grant, now: float) -> bool:
        """`grant` was accepted now: True when that drops the learned lifetime."""
        if grant.expires_at is not None or self.learned is None:
            return False
        before = self.learned
        self.accepted(now - grant.obtained_at)
        return self.learned != before
