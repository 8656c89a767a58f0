"""Getting a new grant for a route: a refresh when one is possible, else a login.

A refused refresh falls back to a login with the credentials; a refresh that timed out does not
(the upstream does not answer, and a login would wait just as long). Every attempt is counted.
"""

from __future__ import annotations

import structlog

from authproxy.auth.driver import AuthDriver
from authproxy.auth.flow import can_refresh, login_flow, refresh_flow
from authproxy.auth.grant import Grant
from authproxy.auth.stats import AuthStats
from authproxy.auth_spec import AuthSpec
from authproxy.errors import LoginFailed, LoginTimeout

log = structlog.get_logger("authproxy.auth")


async def renew_or_login(
    spec: AuthSpec,
    driver: AuthDriver,
    current: Grant | None,
    now: float,
    stats: AuthStats,
) -> Grant:
    route = driver.route
    if current is not None and can_refresh(spec, current):
        try:
            grant = await driver.run(refresh_flow(spec, route, current, now))
        except LoginFailed as error:
            stats.refreshed(error)
            if isinstance(error, LoginTimeout):
                raise
            reason = error.detail
            log.info("refresh failed; logging in with credentials", route=route, reason=reason)
        else:
            stats.refreshed(None)
            return grant
    try:
        grant = await driver.run(login_flow(spec, route, now))
    except LoginFailed as error:
        stats.logged_in(error)
        raise
    stats.logged_in(None)
    return grant
