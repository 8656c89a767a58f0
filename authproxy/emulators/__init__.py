"""Built-in emulators of the five upstream APIs authproxy ships presets for.

Real aiohttp apps, served on real sockets: `authproxy demo` runs them so the proxy can be tried
offline, and the test suite uses them as fake upstreams. Each module (`cosmic`, `coco`, `crux`,
`cucumberstudio`, `emnify`) offers `make_app(settings=None, *, clock=time.time)`, a typed
`STATE` app key, `NAME`, `LOGIN_PATH` and `DEMO_CREDENTIALS`; `start_emulators()` serves all
five.
"""

from authproxy.emulators.common import Clock, EmulatorState, emulator_state
from authproxy.emulators.demo_stack import EmulatorStack, RunningEmulator, start_emulators

__all__ = [
    "Clock",
    "EmulatorStack",
    "EmulatorState",
    "RunningEmulator",
    "emulator_state",
    "start_emulators",
]
