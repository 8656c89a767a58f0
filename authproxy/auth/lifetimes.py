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

Pure and clock-free: the manager passes ages in seconds.
"""

from __future__ import annotations

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
