"""Map values printed as ``bpftool map dump`` prints them when the map has BTF (plain mode).

bpftool (tools/bpf/bpftool/btf_dumper.c, json_writer.c) writes plain output through its JSON
writer in pretty mode: 4 spaces per nesting level, ``"name": value`` members on their own lines,
array elements on one line separated by ``,`` with the closing ``]`` on a new line. The rules
reproduced here:

- INT: unsigned ``%llu/%u/%hu/%hhu`` by bit width, signed ``%lld/%d/%hd/%hhd``; CHAR encoding:
  ``"c"`` when printable (no escaping), else ``0x%hhx``; BOOL: ``true``/``false`` from one byte;
  128-bit ints, bitfields and ints with a bit offset or a width that is
  not a whole byte count: hex, ``0x%llx`` (unsigned, only the field's bits).
- PTR: ``%p`` of glibc, i.e. ``0x7ffd80531cf8``, and ``(nil)`` for NULL.
- ENUM: the enumerator's name as a JSON string, else the signed value; ENUM64 the same.
- ARRAY: a string (JSON-quoted) when the element is a 1-byte ``char`` (or CHAR-encoded) INT
  and a NUL comes before any byte outside 0x20..0x7e; else ``[e0,e1,…`` + newline + ``]``.
- STRUCT/UNION: ``{`` + one ``"member": value`` line per member + ``}``; anonymous members get
  ``""``; bitfield members (kind_flag) are printed in hex.
- TYPEDEF/CONST/VOLATILE/RESTRICT (and TYPE_TAG, VAR on the way): the type they resolve to;
  ``const void`` prints nothing (bpftool's resolve fails).
- VAR: ``{"name": value}``; DATASEC: ``{"name": [v0,v1]}``.
- void: ``(unknown)``; FWD: ``(fwd-kind-invalid)``; other kinds (FLOAT, FUNC, …):
  ``(unsupported-kind`` — and, as in bpftool, the enclosing aggregate stops there.
- Not bpftool: data shorter than the type reads as zeros, and printing stops (like a bpftool
  error) after ``MAX_VALUES`` values, so a valid type such as ``char[0x7fffffff]`` cannot hang.
- JSON strings escape ``\\t \\n \\r \\f \\b " '`` and, as bpftool's json_writer does, print a
  backslash as ``\\n``.

Example from the bpftool patch that introduced the dumper (key ``int``, value ``struct A``)::

    [{
            "key": 0,
            "value": {
                "m": 1,
                "o": "c",
                "p": [15,16,17,18,15,16,17,18
                ],
                "s": 0x7ffd80531cf8,
                "t": {
                    "x": 5,
                    "y": 10
                },
                "w1": 0x7
            }
        }
    ]

(bpftool has since printed enums by name; that example predates it and showed ``"r": 1``.)

These rules were checked byte for byte against ``bpftool map dump`` v7.1.0 (libbpf 1.1) on live
ARRAY and PERCPU_ARRAY maps whose values covered every case above (structs with kind_flag
bitfields, strings, nested arrays, unions, typedefs, enums of 1 and 8 bytes, ENUM64, bool, char,
128-bit ints, pointers, a DATASEC value and a FLOAT member); the test expectations in
tests/test_btf.py are those values.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Iterable, Sequence

from .model import (
    INT_BOOL,
    INT_CHAR,
    INT_SIGNED,
    MODIFIERS,
    Array,
    Btf,
    Const,
    Datasec,
    Enum,
    Enum64,
    Fwd,
    Int,
    Ptr,
    Restrict,
    Struct,
    Typedef,
    Var,
    Volatile,
)

_ESCAPES = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x0C: "\\f", 0x08: "\\b", 0x5C: "\\n", 0x22: '\\"',
            0x27: "\\'"}


class JsonWriter:
    """bpftool's json_writer.c state machine (pretty mode)."""

    def __init__(self, depth: int = 0) -> None:
        self.out: list[str] = []
        self.depth = depth
        self.sep = ""

    def _eol(self) -> None:
        self.out.append("\n" + "    " * self.depth)

    def _eor(self) -> None:
        if self.sep:
            self.out.append(self.sep)
        self.sep = ","

    def _puts(self, raw: bytes) -> None:
        self.out.append('"' + "".join(_ESCAPES.get(c, chr(c)) for c in raw) + '"')

    def begin(self, c: str) -> None:
        self._eor()
        self.out.append(c)
        self.depth += 1
        self.sep = ""

    def end(self, c: str) -> None:
        self.depth -= 1
        if self.sep:
            self._eol()
        self.out.append(c)
        self.sep = ","

    def name(self, name: bytes | str) -> None:
        self._eor()
        self._eol()
        self.sep = ""
        self._puts(name.encode("latin-1") if isinstance(name, str) else name)
        self.out.append(": ")

    def printf(self, text: str) -> None:
        self._eor()
        self.out.append(text)

    def string(self, raw: bytes | str) -> None:
        self._eor()
        self._puts(raw.encode("latin-1") if isinstance(raw, str) else raw)

    def text(self) -> str:
        return "".join(self.out)


def _read(data: bytes, off: int, n: int) -> bytes:
    return data[off:off + n].ljust(n, b"\0") if off >= 0 else bytes(n)


def _s(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) else v


MAX_VALUES = 1 << 20


class _Dumper:
    """btf_dumper_do_type and friends; each method returns 0 or a negative errno like bpftool."""

    def __init__(self, btf: Btf, jw: JsonWriter) -> None:
        self.btf, self.jw = btf, jw
        self.budget = MAX_VALUES

    def do_type(self, type_id: int, bit_offset: int, data: bytes, off: int) -> int:
        if self.budget <= 0:
            return -_errno.E2BIG
        self.budget -= 1
        t = self.btf.type_by_id(type_id)
        if t is None:
            self.jw.printf("(unknown)")
            return 0
        if isinstance(t, Int):
            return self.int_(t, bit_offset, data, off)
        if isinstance(t, Struct):
            return self.struct(t, data, off)
        if isinstance(t, Array):
            return self.array(t, data, off)
        if isinstance(t, Enum64):
            return self.enum64(t, data, off)
        if isinstance(t, Enum):
            return self.enum(t, data, off)
        if isinstance(t, Ptr):
            v = int.from_bytes(_read(data, off, 8), "little")
            self.jw.printf(f"0x{v:x}" if v else "(nil)")
            return 0
        if isinstance(t, Fwd):
            self.jw.printf("(fwd-kind-invalid)")
            return -_errno.EINVAL
        if isinstance(t, Typedef | Volatile | Const | Restrict):
            resolved = self.resolve_type(type_id)
            return resolved if resolved < 0 else self.do_type(resolved, bit_offset, data, off)
        if isinstance(t, Var):
            self.jw.begin("{")
            self.jw.name(t.name)
            ret = self.do_type(t.type, bit_offset, data, off)
            self.jw.end("}")
            return ret
        if isinstance(t, Datasec):
            self.jw.begin("{")
            self.jw.name(t.name)
            self.jw.begin("[")
            ret = 0
            for vsi in t.vars:
                ret = self.do_type(vsi.type, 0, data, off + vsi.offset)
                if ret:
                    break
            self.jw.end("]")
            self.jw.end("}")
            return ret
        self.jw.printf("(unsupported-kind")
        return -_errno.EINVAL

    def resolve_type(self, type_id: int) -> int:
        """libbpf btf__resolve_type: skip modifiers, typedefs and vars; void is an error."""
        for _ in range(32):
            t = self.btf.type_by_id(type_id)
            if t is None:
                return -_errno.EINVAL
            if not isinstance(t, (*MODIFIERS, Var)):
                return type_id
            type_id = t.type
        return -_errno.EINVAL

    def int128(self, v: int) -> None:
        upper, lower = v >> 64, v & (2**64 - 1)
        self.jw.printf(f"0x{lower:x}" if not upper else f"0x{upper:x}{lower:016x}")

    def bitfield(self, nr_bits: int, bit_offset: int, data: bytes, off: int) -> None:
        """btf_dumper_bitfield: the field's bits, unsigned, in hex."""
        nbytes = (bit_offset + nr_bits + 7) // 8
        num = int.from_bytes(_read(data, off, nbytes), "little")
        self.int128((num >> bit_offset) & ((1 << nr_bits) - 1) & (2**128 - 1))

    def int_bits(self, t: Int, bit_offset: int, data: bytes, off: int) -> None:
        total = bit_offset + t.offset
        self.bitfield(t.bits, total & 7, data, off + (total >> 3))

    def int_(self, t: Int, bit_offset: int, data: bytes, off: int) -> int:
        bits = t.bits
        if bit_offset or t.offset or bits & 7:
            self.int_bits(t, bit_offset, data, off)
            return 0
        if bits == 128:
            self.int128(int.from_bytes(_read(data, off, 16), "little"))
            return 0
        enc = t.encoding
        if enc in (0, INT_SIGNED):
            if bits not in (8, 16, 32, 64):
                self.int_bits(t, bit_offset, data, off)
                return 0
            v = int.from_bytes(_read(data, off, bits // 8), "little")
            self.jw.printf(str(_s(v, bits) if enc == INT_SIGNED else v))
        elif enc == INT_CHAR:
            c = _read(data, off, 1)[0]
            self.jw.printf(f'"{chr(c)}"' if 0x20 <= c < 0x7F else f"0x{c:x}")
        elif enc == INT_BOOL:
            self.jw.printf("true" if _read(data, off, 1)[0] else "false")
        else:
            return -_errno.EINVAL
        return 0

    def struct(self, t: Struct, data: bytes, off: int) -> int:
        self.jw.begin("{")
        ret = 0
        for m in t.members:
            self.jw.name(m.name)
            pos = off + (m.bit_offset >> 3)
            if t.kflag and m.bitfield_size:
                self.bitfield(m.bitfield_size, m.bit_offset & 7, data, pos)
            else:
                ret = self.do_type(m.type, m.bit_offset & 7, data, pos)
                if ret:
                    break
        self.jw.end("}")
        return ret

    def is_str_array(self, t: Array, data: bytes, off: int) -> bool:
        """bpftool is_str_array: char elements and a NUL before any non-printable byte."""
        if not t.nelems:
            return False
        elem = self.btf.type_by_id(self.btf.skip_modifiers(t.type, typedefs=False))
        if not isinstance(elem, Int) or elem.size != 1:
            return False
        if elem.encoding != INT_CHAR and elem.name != "char":
            return False
        for c in _read(data, off, t.nelems):
            if c == 0:
                return True
            if c <= 0x1F or c >= 0x7F:
                return False
        return False

    def array(self, t: Array, data: bytes, off: int) -> int:
        if self.is_str_array(t, data, off):
            raw = _read(data, off, t.nelems)
            self.jw.string(raw[:raw.index(0)])
            return 0
        elem_size = self.btf.resolve_size(t.type)
        if elem_size < 0:
            return -_errno.EINVAL
        self.jw.begin("[")
        ret = 0
        for i in range(t.nelems):
            ret = self.do_type(t.type, 0, data, off + i * elem_size)
            if ret:
                break
        self.jw.end("]")
        return ret

    def enum(self, t: Enum, data: bytes, off: int) -> int:
        if t.size not in (1, 2, 4, 8):
            return -_errno.EINVAL
        value = _s(int.from_bytes(_read(data, off, t.size), "little"), t.size * 8)
        for ev in t.values:
            if value == _s(ev.value & 0xFFFFFFFF, 32):
                self.jw.string(ev.name)
                return 0
        self.jw.printf(str(value))
        return 0

    def enum64(self, t: Enum64, data: bytes, off: int) -> int:
        value = int.from_bytes(_read(data, off, 8), "little")
        for ev in t.values:
            if value == ev.value & (2**64 - 1):
                self.jw.string(ev.name)
                return 0
        self.jw.printf(str(_s(value, 64)))
        return 0


def format_value(btf: Btf, type_id: int, data: bytes) -> str:
    """``data`` of type ``type_id`` as bpftool's btf_dumper_type prints it (nesting depth 0)."""
    jw = JsonWriter()
    _Dumper(btf, jw).do_type(type_id, 0, bytes(data), 0)
    return jw.text()


def format_map_dump(btf: Btf, key_type_id: int, value_type_id: int,
                    entries: Iterable[tuple[bytes, bytes | Sequence[bytes]]], *, percpu: bool = False) -> str:
    """The whole ``bpftool map dump`` output for a BTF map (bpftool map.c do_dump_btf): one
    ``{"key": …, "value": …}`` object per entry in a ``[…]`` array, ``"values": [{"cpu": i,
    "value": …}]`` for per-CPU maps (``entries`` then give one value per CPU)."""
    jw = JsonWriter()
    d = _Dumper(btf, jw)
    jw.begin("[")
    for key, value in entries:
        jw.begin("{")
        ret = 0
        if key_type_id:
            jw.name("key")
            ret = d.do_type(key_type_id, 0, bytes(key), 0)
        if not ret:
            if not percpu:
                jw.name("value")
                d.do_type(value_type_id, 0, value if isinstance(value, bytes) else b"".join(value), 0)
            else:
                jw.name("values")
                jw.begin("[")
                for cpu, v in enumerate([value] if isinstance(value, bytes) else value):
                    jw.begin("{")
                    jw.name("cpu")
                    jw.printf(str(cpu))
                    jw.name("value")
                    ret = d.do_type(value_type_id, 0, bytes(v), 0)
                    jw.end("}")
                    if ret:
                        break
                jw.end("]")
        jw.end("}")
    jw.end("]")
    return jw.text() + "\n"

