"""Built-in emulators of the five upstream APIs authproxy ships presets for.

Real aiohttp apps, served on real sockets: `authproxy demo` runs them so the proxy can be tried
offline, and the test suite uses them as fake upstreams. Each module (`cosmic`, `coco`, `crux`,
`cucumberstudio`, `emnify`) offers `make_app(settings=None, *, clock=time.time)`, a typed
`STATE` app key, `NAME`, `LOGIN_PATH`, `DEMO_CREDENTIALS` and its `DEMO` declaration;
`demo_stack.start_emulators()` serves every one listed in `DEMOS`.
"""

from typing import Final

from authproxy.emulators import coco, cosmic, crux, cucumberstudio, emnify
from authproxy.emulators.common import Clock, DemoApi, EmulatorState, emulator_state

# The APIs of `authproxy demo`, in the order it lists them: each module declares its own `DEMO`.
DEMOS: Final[tuple[DemoApi, ...]] = (
    cosmic.DEMO,
    coco.DEMO,
    crux.DEMO,
    cucumberstudio.DEMO,
    emnify.DEMO,
)

__all__ = ["DEMOS", "Clock", "DemoApi", "EmulatorState", "emulator_state"]
