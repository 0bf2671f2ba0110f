"""Where a repository's own report template renders: Jinja's sandbox (no attribute or call escapes it), bounded
in time, memory and output. The template comes with the MR, so `{% for %}` in `{% for %}` over `range(99999)`
or `{{ "x" * 10**10 }}` must end as a template error (exit 2), not hold the report job's runner."""
from __future__ import annotations

import resource
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any

import jinja2
import jinja2.sandbox

RENDER_SECONDS = 10  # a report's template renders in milliseconds
MAX_CHARS = 1_000_000  # GitLab's limit on a note's length; GitHub's is far lower
MEMORY_HEADROOM = 1 << 30  # address space a render may add to what the process already has
MAX_POWER_BITS = 4096  # `a ** b` on integers whose result would be longer than this is refused


class OverBudget(Exception):
    """The template went over one of the bounds."""


class BoundedEnvironment(jinja2.sandbox.SandboxedEnvironment):
    """The sandbox with `*` and `**` checked before they allocate (range() is bounded by Jinja already)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, str | bytes | list | tuple) and isinstance(count, int) \
                        and len(sequence) * count > MAX_CHARS:
                    raise OverBudget(f"a repetition of {len(sequence)} x {count} is longer than {MAX_CHARS}")
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 \
                and right * abs(left).bit_length() > MAX_POWER_BITS:
            raise OverBudget(f"{left} ** {right} is longer than {MAX_POWER_BITS} bits")
        return super().call_binop(context, operator, left, right)


def render(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """The template's text, streamed and counted: OverBudget past MAX_CHARS or RENDER_SECONDS, MemoryError past
    MEMORY_HEADROOM."""
    pieces: list[str] = []
    total = 0
    with _bounded():
        for piece in template.generate(**context):
            total += len(piece)
            if total > MAX_CHARS:
                raise OverBudget(f"it renders more than {MAX_CHARS} characters")
            pieces.append(piece)
    return "".join(pieces)


@contextmanager
def _bounded() -> Iterator[None]:
    """A timer (SIGALRM, in the main thread only: where the CLI renders) and a soft address-space limit."""
    timed = threading.current_thread() is threading.main_thread()
    previous: Any = None
    if timed:
        previous = signal.signal(signal.SIGALRM, _expired)
        signal.setitimer(signal.ITIMER_REAL, RENDER_SECONDS)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _address_space() + MEMORY_HEADROOM
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    limited = soft == resource.RLIM_INFINITY or soft > cap
    if limited:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        if limited:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        if timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _expired(_signum: int, _frame: FrameType | None) -> None:
    raise OverBudget(f"it took longer than {RENDER_SECONDS} s to render")


def _address_space() -> int:
    """This process's virtual memory size (VmSize), in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")
