"""A pickle read the way the unpickler reads it, without running it: every global it imports, on a stream of
any size in flat memory (payloads are skipped, never held), the arrays that joblib writes between opcodes
stepped over exactly as joblib.load reads them, and a precise reason when the bytes are not a pickle or end
early. Which globals are dangerous is picklescan's judgement (mlci.scan.models); this module only says
which globals there are, including those a pickle computes at load time (("unknown", "unknown")).

The stack is simulated (marks, tuples, dicts, memo), so a STACK_GLOBAL's module and name are the values
the unpickler would pop, not a guess from the opcodes before it; calls build opaque objects, and BUILD
merges their state like `__dict__.update`. joblib's NumpyArrayWrapper (joblib.load reads the array's raw
bytes right after its BUILD) is sized from its shape and dtype; a plain pickle.load reads those bytes as
opcodes, so that reading is tried too, and anything ambiguous stops the walk with a reason.
"""
from __future__ import annotations

import io
import pickle
import pickletools
import re
import struct
from collections import ChainMap
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

from mlci.scan.picklevalues import (
    ARRAY,
    BIGSTR,
    BIGTUPLE,
    BYTES,
    LIST,
    LITERALS,
    NUMBER,
    SET,
    WRAPPER,
    Dct,
    NotPickle,
    Obj,
    Opaque,
    Ref,
    Truncated,
    array_layout,
    holds,
    why,
)
from mlci.scan.streams import Reader

HEAD = 64 * 1024  # what the sniffer reads of every file
_KEEP = 4096  # longer strings are kept as "some string": no module or attribute name is that long
_MAX_STACK = 1_000_000  # stack entries, marks and memo entries: bounds on memory for hostile input
_MAX_MEMO = 5_000_000
_SPECULATE = 64 * 1024  # how far a plain pickle.load's reading of joblib array bytes is followed
_IDENT = re.compile(r"[A-Za-z_][\w.]*")
_OPS = {op.code.encode("latin-1")[0]: op for op in pickletools.opcodes}
Unknown = ("unknown", "unknown")


@dataclass
class Walk:
    """What walking a stream found: the globals in order, complete pickles, and why it stopped early."""

    globals: dict[tuple[str, str], None] = field(default_factory=dict)
    pickles: int = 0
    opcodes: int = 0
    protocol: int | None = None  # of the first pickle (None: protocol 0 or 1, which declare none)
    error: str | None = None
    truncated: bool = False  # the error is the end of the stream (inside the first pickle)
    trailing: bool = False  # bytes that are not a pickle follow the last complete one


def walk(stream: BinaryIO, *, limit: int | None = None) -> Walk:
    """Walk every pickle in `stream` (joblib arrays stepped over) to its end; `error` says why it stopped
    early. A first pickle that is broken is an error; after one complete pickle, bytes that are not another
    one end the walk quietly (PyTorch's legacy format and others append raw data), their globals kept."""
    found = Walk()
    reader = Reader(stream, limit)
    try:
        while True:
            _Machine(reader, found, joblib=True).run()
            found.pickles += 1
            if reader.at_eof():
                return found
    except NotPickle as exc:
        if found.pickles == 0:
            found.error, found.truncated = str(exc), isinstance(exc, Truncated)
        found.trailing = found.pickles > 0
    return found


def probe(head: bytes) -> bool:
    """Whether a file's first bytes may be a pickle: they walk as one, or end inside one (then only the walk
    of the whole file decides: text whose first letter reads as a 1.8 GB string length ends inside it).
    Text, CSV, JSON and binary data break the stack rules within a few opcodes."""
    found = walk(io.BytesIO(head))
    return found.truncated or verdict(found) is not None


def verdict(found: Walk) -> Literal["pickle", "broken"] | None:
    """What a walk of a whole file says it is: a pickle, a broken pickle (one that declares a protocol, or
    imports globals, and stops being a pickle after a few opcodes: the unpickler would run what came before),
    or not a pickle at all."""
    if found.protocol is None and not _plausible(found):
        return None
    if found.protocol is None and not found.globals and found.trailing:
        return None  # protocol 0/1 data with more after it: text that happened to parse ("Currently": C, 117 bytes, .)
    if found.pickles:
        return "pickle"
    if found.opcodes >= 4 and (found.protocol is not None or found.globals):
        return "broken"
    return None


def _plausible(found: Walk) -> bool:
    """Protocol 0 and 1 declare nothing: such a pickle's globals must at least be names."""
    return all(_IDENT.fullmatch(m) and _IDENT.fullmatch(n) for m, n in found.globals if (m, n) != Unknown)


_SIZED = {"bytes1": ("<B", "bytes"), "bytes4": ("<I", "bytes"), "bytes8": ("<Q", "bytes"),
          "bytearray8": ("<Q", "bytes"), "string1": ("<B", "str1"), "string4": ("<i", "str1"),
          "unicodestring1": ("<B", "str"), "unicodestring4": ("<I", "str"), "unicodestring8": ("<Q", "str"),
          "long1": ("<B", "long"), "long4": ("<i", "long")}


class _Machine:
    """The unpickler's stack machine over opaque values, for one pickle (up to its STOP)."""

    def __init__(self, reader: Reader, found: Walk, *, joblib: bool,
                 memo: MutableMapping[Any, Any] | None = None, stacks: list[list[Any]] | None = None,
                 speculative: bool = False) -> None:
        self.r, self.found, self.joblib, self.speculative = reader, found, joblib, speculative
        self.memo: MutableMapping[Any, Any] = {} if memo is None else memo
        self.metastack: list[list[Any]] = stacks[:-1] if stacks else []
        self.stack: list[Any] = stacks[-1] if stacks else []
        self.wrapper_seen = False

    def run(self) -> None:
        """Read opcodes up to and including STOP."""
        table = _DISPATCH
        while True:
            at = self.r.pos
            code = self.r.read(1)
            if not code:
                raise Truncated(f"truncated at byte {at}: the pickle has no STOP")
            op = _OPS.get(code[0])
            if op is None:
                raise NotPickle(f"byte {at}: {code!r} is not a pickle opcode")
            arg = self._arg(op, at)
            self.found.opcodes += 1
            try:
                if table[op.name](self, arg):
                    return
            except NotPickle:
                raise
            except (IndexError, KeyError, TypeError, ValueError) as exc:
                raise NotPickle(f"byte {at}: {op.name}: {why(exc)}") from None

    def _arg(self, op: pickletools.OpcodeInfo, at: int) -> Any:
        if op.arg is None:
            return None
        name = op.arg.name
        try:
            if name in _SIZED:
                fmt, kind = _SIZED[name]
                raw = self.r.read(struct.calcsize(fmt))
                if len(raw) < struct.calcsize(fmt):
                    raise Truncated(f"truncated at byte {self.r.pos} (in {op.name}'s length)")
                n = struct.unpack(fmt, raw)[0]
                if n < 0:
                    raise NotPickle(f"byte {at}: {op.name} with a negative length")
                if n > _KEEP:
                    self.r.skip(n)
                    return {"bytes": BYTES, "long": NUMBER}.get(kind, BIGSTR)
                data = self.r.read(n)
                if len(data) < n:
                    raise Truncated(f"truncated at byte {self.r.pos} (inside {op.name})")
                if kind == "str":
                    return data.decode("utf-8", "surrogatepass")
                return {"bytes": BYTES, "str1": data.decode("latin-1")}.get(kind) or pickle.decode_long(data)
            if name == "stringnl_noescape_pair":  # GLOBAL, INST: as the unpickler reads them (UTF-8 lines)
                return (self._line(op).decode("utf-8"), self._line(op).decode("utf-8"))
            return op.arg.reader(self.r)  # type: ignore[arg-type]  # read() and readline() are all it uses
        except (ValueError, UnicodeDecodeError, struct.error, OverflowError) as exc:
            if self.r.at_eof():
                raise Truncated(f"truncated at byte {self.r.pos} (inside {op.name})") from None
            raise NotPickle(f"byte {at}: {op.name}: {why(exc)}") from None

    def _line(self, op: pickletools.OpcodeInfo) -> bytes:
        data = self.r.readline()
        if not data.endswith(b"\n"):
            raise Truncated(f"truncated at byte {self.r.pos} (inside {op.name})")
        return data[:-1]

    # -- the stack

    def push(self, value: Any) -> None:
        if len(self.stack) >= _MAX_STACK:
            raise NotPickle(f"more than {_MAX_STACK} values on the stack")
        self.stack.append(value)

    def pop(self) -> Any:
        if not self.stack:
            raise NotPickle(f"byte {self.r.pos - 1}: stack underflow")
        return self.stack.pop()

    def top(self) -> Any:
        if not self.stack:
            raise NotPickle(f"byte {self.r.pos - 1}: stack underflow")
        return self.stack[-1]

    def mark(self, _: Any) -> None:
        if len(self.metastack) >= _MAX_STACK:
            raise NotPickle(f"more than {_MAX_STACK} marks")
        self.metastack.append(self.stack)
        self.stack = []

    def pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise NotPickle(f"byte {self.r.pos - 1}: no MARK on the stack")
        items, self.stack = self.stack, self.metastack.pop()
        return items

    def target(self, kinds: tuple[Any, ...]) -> Any:
        """The object an APPEND, SETITEM, ADDITEMS or BUILD changes: a container or an object, never a
        literal (the unpickler fails on those)."""
        value = self.top()
        if isinstance(value, LITERALS) or (isinstance(value, Opaque) and value not in kinds):
            raise NotPickle(f"byte {self.r.pos - 1}: cannot change a {type(value).__name__} value")
        return value

    # -- opcodes (a true return value: STOP)

    def stop(self, _: Any) -> bool:
        self.pop()
        return True

    def proto(self, arg: int) -> None:
        if not 0 <= arg <= pickle.HIGHEST_PROTOCOL:
            raise NotPickle(f"byte {self.r.pos - 2}: unsupported pickle protocol {arg}")
        if self.found.opcodes == 1:
            self.found.protocol = arg

    def literal(self, arg: Any) -> None:
        if isinstance(arg, str):
            arg = arg if len(arg) <= _KEEP else BIGSTR
        elif isinstance(arg, int) and not -(1 << 64) < arg < (1 << 64):
            arg = NUMBER
        self.push(arg)

    def global_(self, arg: tuple[str, str]) -> None:
        self.push(self.record(*arg))

    def stack_global(self, _: Any) -> None:
        name, module = self.pop(), self.pop()
        if isinstance(module, str) and isinstance(name, str):
            self.push(self.record(module, name))
        elif any(isinstance(v, (int, float, bytes, type(None))) or v in (BYTES, NUMBER) for v in (module, name)):
            raise NotPickle(f"byte {self.r.pos - 1}: STACK_GLOBAL needs two strings")
        else:  # a name computed at load time (a call's result, an over-long string): no scanner can tell
            self.push(self.record(*Unknown))

    def record(self, module: str, name: str) -> Ref:
        ref = Ref(module, name)
        self.found.globals[(module, name)] = None
        self.wrapper_seen = self.wrapper_seen or (module, name) == WRAPPER
        return ref

    def ext(self, code: int) -> None:
        # The copyreg extension registry of the loading process resolves the code: only what that program
        # registered itself can be reached (CPython registers nothing).
        self.push(self.record("copyreg", f"_extension_registry[{code}]"))

    def tuple_(self, items: list[Any]) -> None:
        self.push(tuple(items) if len(items) <= 64 else BIGTUPLE)

    def call(self, func: Any, args: Any) -> None:
        if isinstance(func, LITERALS) or isinstance(func, Opaque):
            raise NotPickle(f"byte {self.r.pos - 1}: calls a {type(func).__name__} value")
        if not (isinstance(args, (tuple, Obj)) or args is BIGTUPLE):
            raise NotPickle(f"byte {self.r.pos - 1}: a call's arguments are not a tuple")
        self.push(Obj(func, args))

    def build(self, _: Any) -> None:
        state = self.pop()
        obj = self.target((ARRAY,))
        if not isinstance(obj, Obj) or self.speculative:
            return
        obj.state = state
        for part in state if isinstance(state, tuple) and len(state) == 2 else (state,):
            if isinstance(part, Dct):
                obj.attrs.update(part)
        if self.joblib and self.wrapper_seen and self._is_wrapper(obj):
            self._joblib_array(obj)
            self.stack[-1] = ARRAY

    def _is_wrapper(self, obj: Obj) -> bool:
        """Whether joblib.load would take this object for a NumpyArrayWrapper (its isinstance check): made
        by the class itself or by a constructor given the class (copyreg._reconstructor, object.__new__);
        an object whose making mlci cannot follow in a file that imports the class is ambiguous."""
        wrapper = Ref(*WRAPPER)
        if obj.func == wrapper:
            return True
        if obj.func is None:  # a persistent id: joblib.load has no persistent_load and fails on it
            return False
        held = holds(obj.args, wrapper, 0) if isinstance(obj.func, Ref) else None
        if held is None:
            raise NotPickle(f"byte {self.r.pos - 1}: BUILD of an object made in a way mlci cannot follow, in a "
                            "joblib file: cannot tell whether array bytes follow")
        return held

    def _joblib_array(self, obj: Obj) -> None:
        """Step over the array joblib.load reads after this wrapper's BUILD (NumpyArrayWrapper.read_array):
        an object array is a nested pickle (walked, fresh memo); else 1 + n padding bytes (with
        `numpy_array_alignment_bytes`), then shape x itemsize raw bytes."""
        at = self.r.pos
        count, itemsize, objects = array_layout(obj.attrs, at)
        if objects:
            _Machine(self.r, self.found, joblib=False).run()
            return
        self._speculate()
        if obj.attrs.get("numpy_array_alignment_bytes") is not None:
            padding = self.r.read(1)
            if not padding:
                raise Truncated(f"truncated at byte {at} (a joblib array's padding)")
            self.r.skip(padding[0])
        self.r.skip(count * itemsize)

    def _speculate(self) -> None:
        """pickle.load (not joblib.load) reads the array's bytes as opcodes: follow that reading for up to
        64 KiB on a copy of the state; its globals count. It must break (modern joblib writes a padding
        byte 1-16, never an opcode) or end the pickle; still going at 64 KiB is ambiguous."""
        first = self.r.peek(1)
        if not first or first[0] not in _OPS:
            return
        window = self.r.peek(_SPECULATE)
        shadow = _Machine(Reader(io.BytesIO(window), None), self.found, joblib=False,
                          memo=ChainMap({}, self.memo), stacks=[*map(list, self.metastack), list(self.stack)],
                          speculative=True)
        opcodes = self.found.opcodes
        try:
            shadow.run()
        except Truncated:
            if len(window) == _SPECULATE:
                raise NotPickle(f"byte {self.r.pos}: the bytes of a joblib array also read as pickle opcodes "
                                f"for {_SPECULATE} bytes: ambiguous") from None
        except NotPickle:
            pass
        self.found.opcodes = opcodes

    def put(self, key: Any) -> None:
        if len(self.memo) >= _MAX_MEMO and key not in self.memo:
            raise NotPickle(f"more than {_MAX_MEMO} memo entries")
        self.memo[key] = self.top()

    def get(self, key: Any) -> None:
        if key not in self.memo:
            raise NotPickle(f"byte {self.r.pos}: memo entry {key} was never stored")
        self.push(self.memo[key])


def _tuple(n: int) -> Callable[[_Machine, Any], None]:
    def op(m: _Machine, _: Any) -> None:
        items = [m.pop() for _ in range(n)][::-1]
        m.push(tuple(items))
    return op


def _append(m: _Machine, _: Any) -> None:
    m.pop()
    m.target((LIST,))


def _appends(m: _Machine, _: Any) -> None:
    m.pop_mark()
    m.target((LIST,))


def _setitem(m: _Machine, _: Any) -> None:
    value, key = m.pop(), m.pop()
    target = m.target(())
    if isinstance(target, Dct):
        target.put(key, value)


def _setitems(m: _Machine, _: Any) -> None:
    items = m.pop_mark()
    if len(items) % 2:
        raise NotPickle(f"byte {m.r.pos - 1}: SETITEMS with an odd number of items")
    target = m.target(())
    if isinstance(target, Dct):
        for i in range(0, len(items), 2):
            target.put(items[i], items[i + 1])


def _dict(m: _Machine, _: Any) -> None:
    items = m.pop_mark()
    if len(items) % 2:
        raise NotPickle(f"byte {m.r.pos - 1}: DICT with an odd number of items")
    value = Dct()
    for i in range(0, len(items), 2):
        value.put(items[i], items[i + 1])
    m.push(value)


def _obj(m: _Machine, _: Any) -> None:
    items = m.pop_mark()
    if not items:
        raise NotPickle(f"byte {m.r.pos - 1}: OBJ without a class")
    m.call(items[0], tuple(items[1:]))


def _inst(m: _Machine, arg: tuple[str, str]) -> None:
    args = m.pop_mark()
    m.push(Obj(m.record(*arg), tuple(args)))


def _newobj_ex(m: _Machine, _: Any) -> None:
    m.pop()  # kwargs
    args = m.pop()
    m.call(m.pop(), args)


def _reduce(m: _Machine, _: Any) -> None:
    args = m.pop()
    m.call(m.pop(), args)


def _pop(m: _Machine, _: Any) -> None:
    if m.stack:
        m.stack.pop()
    else:
        m.pop_mark()


def _readonly(m: _Machine, _: Any) -> None:
    m.top()


def _memoize(m: _Machine, _: Any) -> None:
    m.put(len(m.memo))


def _push(value: Any) -> Callable[[_Machine, Any], None]:
    return lambda m, _: m.push(value)


def _container(value: Any) -> Callable[[_Machine, Any], None]:
    return lambda m, _: m.push(Dct() if value is Dct else value)


def _from_mark(value: Any) -> Callable[[_Machine, Any], None]:
    def op(m: _Machine, _: Any) -> None:
        m.pop_mark()
        m.push(value)
    return op


def _persid(m: _Machine, _: Any) -> None:
    m.push(Obj(None, ()))


def _binpersid(m: _Machine, _: Any) -> None:
    m.pop()
    m.push(Obj(None, ()))


_LITERAL_OPS = ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING",
                "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8")
_DISPATCH: dict[str, Callable[[_Machine, Any], Any]] = {
    **{name: _Machine.literal for name in _LITERAL_OPS},
    **{name: _push(BYTES) for name in ("BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "NEXT_BUFFER")},
    "FLOAT": _push(NUMBER), "BINFLOAT": _push(NUMBER), "NONE": _push(None), "NEWTRUE": _push(True),
    "NEWFALSE": _push(False), "READONLY_BUFFER": _readonly,
    "EMPTY_TUPLE": _push(()), "TUPLE": lambda m, _: m.tuple_(m.pop_mark()), "TUPLE1": _tuple(1),
    "TUPLE2": _tuple(2), "TUPLE3": _tuple(3),
    "EMPTY_LIST": _container(LIST), "LIST": _from_mark(LIST), "APPEND": _append, "APPENDS": _appends,
    "EMPTY_DICT": _container(Dct), "DICT": _dict, "SETITEM": _setitem, "SETITEMS": _setitems,
    "EMPTY_SET": _container(SET), "ADDITEMS": lambda m, _: (m.pop_mark(), m.target((SET,))),
    "FROZENSET": _from_mark(SET),
    "POP": _pop, "DUP": lambda m, _: m.push(m.top()), "MARK": _Machine.mark, "POP_MARK": lambda m, _: m.pop_mark(),
    "PUT": _Machine.put, "BINPUT": _Machine.put, "LONG_BINPUT": _Machine.put, "MEMOIZE": _memoize,
    "GET": _Machine.get, "BINGET": _Machine.get, "LONG_BINGET": _Machine.get,
    "GLOBAL": _Machine.global_, "STACK_GLOBAL": _Machine.stack_global, "INST": _inst,
    "EXT1": _Machine.ext, "EXT2": _Machine.ext, "EXT4": _Machine.ext,
    "REDUCE": _reduce, "NEWOBJ": _reduce, "NEWOBJ_EX": _newobj_ex, "OBJ": _obj, "BUILD": _Machine.build,
    "PERSID": _persid, "BINPERSID": _binpersid,
    "PROTO": _Machine.proto, "FRAME": lambda m, _: None, "STOP": _Machine.stop,
}
assert set(_DISPATCH) == {op.name for op in pickletools.opcodes}, "every pickle opcode has a handler"
