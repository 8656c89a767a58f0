"""Refused tokens judged by evidence, never by how long ago the login was.

- A token the upstream accepted before (or one this process did not just obtain itself: from a
  store, or from another process) is stale when it is refused: drop it, log in once, replay.
- A token refused on its very first use right after a login is suspect. The first such refusal in
  a while still gets one new login and a replay (a revocation can land between a login and the
  token's first use); when that does not help, the request gets the upstream's answer, and
  further refusals are passed on for a backoff that doubles from 1 s. An upstream that refuses
  everything (or a path that always answers 401) therefore never causes a login per request; a
  replay that succeeds ends the backoff.

`RefusalEvidence` holds that state for one route's current token. Pure: the manager passes times.
"""

from __future__ import annotations

import structlog

log = structlog.get_logger("authproxy.auth")

HOLD_START, HOLD_CAP = 1.0, 300.0


class RefusalEvidence:
    __slots__ = ("_fresh_refusals", "_hold_until", "route", "suspect", "unproven")

    def __init__(self, route: str) -> None:
        self.route = route
        # The current token came from this process's own login or refresh and the upstream has
        # not accepted it yet; `suspect`: it was refused on its first use.
        self.unproven = False
        self.suspect = False
        # Refusals of tokens on their first use since the last replay that succeeded, and the
        # time until which refusals are passed on without a login.
        self._fresh_refusals = 0
        self._hold_until = 0.0

    def installed(self, *, fresh: bool) -> None:
        """A new current token; `fresh`: this process just logged in for it."""
        self.unproven = fresh
        self.suspect = False

    def holding(self, now: float) -> bool:
        """Refusals are being passed on without a login."""
        return now < self._hold_until

    def ends(self, now: float) -> bool:
        """Whether a refusal of the current token ends it (True: log in again and replay)."""
        if now < self._hold_until:
            return False
        if not self.unproven or self.suspect:
            return True  # accepted before, or a suspect whose backoff ran out
        return self._fresh_refused(now)

    def _fresh_refused(self, now: float) -> bool:
        """A token of this process's own login was refused on its first use: True when it gets
        one more login (the first such refusal since tokens last worked), else a hold."""
        self.suspect = True
        if self._fresh_refusals == 0:
            self._fresh_refusals = 1
            return True
        if now >= self._hold_until:  # concurrent refusals of one token count once
            self._hold(now)
        return False

    def accepted(self) -> None:
        """The current token worked (on a request that was not a replay)."""
        # A single retry left open (its replay never came back, or its login failed) is settled
        # by any token that works; a backoff that has grown is not: only a replay that succeeds
        # ends that one, so a path that always refuses cannot reset it with other requests.
        if self._fresh_refusals == 1:
            self._fresh_refusals = 0
        if self.unproven:
            self.unproven = self.suspect = False

    def replay_refused(self, *, current: bool, now: float) -> None:
        """The token a request was replayed with was refused too.

        Judged like a first send: a token taken from the store or from another process's login
        may have died in the same revocation and is merely stale (the caller may replay once
        more); one from this process's own login, refused on its first use, is suspect.
        """
        if current and self.unproven and not self.suspect:
            self._fresh_refused(now)

    def replay_accepted(self, *, current: bool) -> None:
        if current:
            self.unproven = self.suspect = False
        self._fresh_refusals = 0
        self._hold_until = 0.0

    def _hold(self, now: float) -> None:
        wait = min(HOLD_START * 2 ** max(0, self._fresh_refusals - 1), HOLD_CAP)
        self._fresh_refusals += 1
        self._hold_until = now + wait
        log.warning(
            "the upstream refuses tokens on their first use; passing its answers on",
            route=self.route,
            retry_in_seconds=round(wait, 1),
        )
