"""BTF: our parser against the kernel-recorded corpus, builder round trips, the bpftool-style
printer, robustness on malformed input, .BTF.ext, and a drift check against the live kernel.

Expected verdicts come from corpora/btf/*.yaml, recorded from BPF_BTF_LOAD by
scripts/gen_btf_corpus.py, never from our parser. Printer expectations are written by hand from
bpftool's rules (btf_dumper.c, json_writer.c; see reference_vm/btf/dumper.py).
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference_vm.btf import (
    FUNC_GLOBAL,
    INT_BOOL,
    INT_CHAR,
    INT_SIGNED,
    Btf,
    BtfBuilder,
    BtfError,
    BtfExtBuilder,
    BtfExtError,
    Const,
    Datasec,
    Enum,
    Func,
    FuncProto,
    Int,
    Kind,
    Struct,
    Typedef,
    Var,
    btf_ext_parse,
    build_blob,
    format_map_dump,
    format_value,
    parse,
)
from reference_vm.btf.ext import FuncInfo, LineInfo, check_func_info, check_line_info
from reference_vm.btf.verifier import kernel_isalpha, kernel_isprint
from reference_vm.errors import BpfCheckError

#: Cases where our parser knowingly disagrees with the recorded kernel verdict: name -> reason.
#: Each listed case is a strict xfail, so a fixed divergence fails until it is removed here.
DIVERGENCES: dict[str, str] = {}

CORPUS = Path(__file__).resolve().parents[1] / "corpora" / "btf"


def _load_corpus() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(CORPUS.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text()) or []:
            out.append((f"{path.stem}/{case['name']}", case))
    return out


CASES = _load_corpus()
CASE_IDS = [cid for cid, _ in CASES]


def _verdict(blob: bytes) -> dict[str, Any]:
    try:
        parse(blob)
    except BtfError as e:
        return {"errno": e.errno_name, "message": e.kernel_message}
    return {"accept": True}


# --- the corpus ----------------------------------------------------------------------------


def test_corpus_shape() -> None:
    """At least 110 cases, unique names, both verdicts, every kind, recorded provenance."""
    assert len(CASES) >= 110
    names = [c["name"] for _, c in CASES]
    assert len(names) == len(set(names))
    verdicts = {("accept" if c["expect"].get("accept") else "reject") for _, c in CASES}
    assert verdicts == {"accept", "reject"}
    kinds = {str(e["kind"]).upper() for _, c in CASES for e in c.get("types", ()) if "kind" in e}
    assert kinds >= {k.name for k in Kind if k is not Kind.UNKN}
    for _, c in CASES:
        assert c["description"] and ("types" in c) != ("raw_hex" in c)
        assert set(c["provenance"]) == {"kernel", "date", "recorded_by"}
        assert c["provenance"]["recorded_by"] == "bpfcheck gen_btf_corpus.py"
        exp = c["expect"]
        assert exp == {"accept": True} or set(exp) == {"errno", "message"}
    assert set(DIVERGENCES) <= set(names), "divergence list names unknown cases"


#: Every validation message the parser can produce and the corpus must show; the unreachable ones
#: are listed in docs/btf-cases.md.
MESSAGES = [
    "hdr_len not found", "btf_header not found", "Unsupported btf_header", "Invalid magic",
    "Unsupported version", "Unsupported flags", "No data", "Invalid section offset",
    "Unsupported section found", "Section overlap found", "Total section length too long",
    "String section is not at the end", "Invalid string section", "Unaligned type_off", "No type found",
    "meta_left:", "Invalid btf_info:", "Invalid kind:", "Invalid name_offset:", "vlen != 0",
    "Invalid btf_info kind_flag", "Invalid int_data:", "nr_bits exceeds 128", "nr_bits exceeds type_size",
    "Unsupported encoding", "Invalid type_id", "Invalid name", "type != 0",
    "size != 0", "Invalid elem", "Invalid index", "Invalid array of int", "Array size overflows U32_MAX",
    "Invalid member name_offset:", "Invalid member bits_offset", "Member bits_offset exceeds its struct size",
    "Unexpected size", "Invalid func linkage", "Linkage not supported", "size == 0", "Invalid offset",
    "Invalid size", "Invalid offset+size", "Invalid type_size", "Invalid value", "Invalid component_idx",
    "Loop detected", "Exceeded max resolving depth:32", "Invalid member", "Member exceeds struct_size",
    "Member is not byte aligned", "Member is not properly aligned", "bits_offset exceeds U32_MAX",
    "nr_copy_bits exceeds 128", "Invalid member base type", "Invalid member offset",
    "Invalid member bitfield_size", "Not a VAR kind member", "Invalid return type", "Invalid arg#",
    "Type tags don't precede modifiers",
]


def test_corpus_covers_every_message() -> None:
    messages = [c["expect"].get("message", "") for _, c in CASES]
    missing = [m for m in MESSAGES if not any(m in got for got in messages)]
    assert not missing


@pytest.mark.parametrize("case", [c for _, c in CASES], ids=CASE_IDS)
def test_corpus_case(case: dict[str, Any]) -> None:
    """Our verdict, errno and message equal the kernel's recorded ones."""
    blob = build_blob(case)
    assert hashlib.sha256(blob).hexdigest() == case["blob_sha256"], "blob differs from the one the kernel saw"
    if case["name"] in DIVERGENCES:
        pytest.xfail(DIVERGENCES[case["name"]])
    assert _verdict(blob) == case["expect"]


# --- the live kernel (drift) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel() -> Any:
    from conformance.kernel import btf_load

    reason = btf_load.probe()
    if reason:
        pytest.skip(reason)
    return btf_load


@pytest.mark.parametrize("case", [c for _, c in CASES], ids=CASE_IDS)
def test_live_kernel_matches_corpus(kernel: Any, case: dict[str, Any]) -> None:
    """The running kernel still gives the recorded verdict, and its whole log equals ours."""
    blob = build_blob(case)
    res = kernel.btf_load(blob)
    got = {"accept": True} if res.accepted else {"errno": res.errno_name, "message": res.message}
    assert got == case["expect"], f"kernel drift (recorded on {case['provenance']['kernel']})"
    try:
        ours = parse(blob).log
    except BtfError as e:
        ours = e.log
    if case["name"] not in DIVERGENCES:
        assert ours == res.log


# --- BtfError ------------------------------------------------------------------------------


def test_btf_error_attributes() -> None:
    b = BtfBuilder()
    b.add_int("int", 4, signed=True)
    b.add_ptr(99)
    with pytest.raises(BtfError) as info:
        parse(b.to_bytes())
    e = info.value
    assert isinstance(e, BpfCheckError)
    assert e.errno == 22 and e.errno_name == "EINVAL"
    assert e.kernel_message == "[2] PTR (anon) type_id=99 Invalid type_id"
    assert "\n" not in str(e) and str(e) == "BTF rejected, EINVAL: [2] PTR (anon) type_id=99 Invalid type_id"
    assert str(e.located("x.btf")) == "x.btf: " + e.message
    assert e.log.endswith("[2] PTR (anon) type_id=99 Invalid type_id\n")


def test_enotsupp_and_e2big() -> None:
    b = BtfBuilder()
    b.add_int("int", 4)
    with pytest.raises(BtfError) as info:
        parse(b.to_bytes(version=2))
    assert (info.value.errno, info.value.errno_name) == (524, "ENOTSUPP")
    with pytest.raises(BtfError) as info:
        parse(bytes(16 * 1024 * 1024 + 1))
    assert info.value.errno_name == "E2BIG" and info.value.kernel_message == ""
    assert "(no log)" in str(info.value)


def test_kernel_ctype() -> None:
    """lib/ctype.c: Latin-1 letters are alpha, 0x80-0x9f are nothing, 0xa0 is printable."""
    assert kernel_isalpha(0xC0) and kernel_isalpha(0xFF) and not kernel_isalpha(0xD7)
    assert not kernel_isprint(0x80) and kernel_isprint(0xA0) and not kernel_isprint(0x7F)


# --- builder round trips -------------------------------------------------------------------

IDENT = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,10}", fullmatch=True)


@st.composite
def valid_btf(draw: st.DrawFn) -> BtfBuilder:
    """Random BTF the kernel accepts: every reference points to an earlier, suitable id."""
    b = BtfBuilder()
    size: dict[int, int] = {b.add_int("int", 4, signed=True): 4}
    regular_ints = [1]
    irregular: set[int] = set()  # non-regular INTs and modifiers of them (not array elements)
    sized = [1]  # ids with a size usable as member/element/var types
    refs: list[int] = [0, 1]  # PTR targets
    fwd_proto: list[int] = []  # FWD and FUNC_PROTO ids (no size)
    protos: list[tuple[int, int]] = []  # (id, nparams)
    tag_targets: list[tuple[int, int]] = []  # (id, components or -1 only)
    tagged: set[int] = set()  # TYPE_TAGs and modifiers whose chain holds one
    var_ids: list[int] = []

    def unique_names(n: int) -> list[str]:
        return draw(st.lists(IDENT, min_size=n, max_size=n, unique=True))

    for _ in range(draw(st.integers(0, 10))):
        kind = draw(st.sampled_from(["int", "ptr", "array", "struct", "union", "enum", "enum64", "fwd", "mod",
                                     "tag", "proto", "func", "var", "datasec", "float", "decl_tag"]))
        if kind == "int":
            nbytes = draw(st.sampled_from([1, 2, 4, 8, 16]))
            enc = draw(st.sampled_from([0, INT_SIGNED, INT_CHAR, INT_BOOL]))
            if draw(st.booleans()):
                tid = b.add_int(draw(IDENT), nbytes, encoding=enc)
                regular_ints.append(tid)
            else:
                bits = draw(st.integers(0, nbytes * 8))
                tid = b.add(Int(draw(IDENT), nbytes, bits, draw(st.integers(0, nbytes * 8 - bits)), enc))
                irregular.add(tid)
            size[tid] = nbytes
            sized.append(tid)
            refs.append(tid)
        elif kind == "ptr":
            tid = b.add_ptr(draw(st.sampled_from(refs)))
            size[tid] = 8
            sized.append(tid)
            refs.append(tid)
        elif kind == "array":
            elem = draw(st.sampled_from([t for t in sized if t not in irregular]))
            n = draw(st.integers(0, 4))
            tid = b.add_array(elem, draw(st.sampled_from(regular_ints)), n)
            size[tid] = n * size[elem]
            sized.append(tid)
            refs.append(tid)
        elif kind in ("struct", "union"):
            mtypes = draw(st.lists(st.sampled_from(sized), max_size=4))
            names = unique_names(len(mtypes))
            members, off = [], 0
            for name, mt in zip(names, mtypes, strict=True):
                at = 0 if kind == "union" else (off + 7) // 8 * 8
                members.append((name, mt, at * 8))
                off = max(off, at + size[mt])
            total = off + draw(st.integers(0, 8))
            add = b.add_struct if kind == "struct" else b.add_union
            tid = add(draw(st.one_of(st.just(""), IDENT)), total, members)
            size[tid] = total
            sized.append(tid)
            refs.append(tid)
            tag_targets.append((tid, len(members)))
        elif kind in ("enum", "enum64"):
            nbytes = draw(st.sampled_from([1, 2, 4, 8]))
            signed = draw(st.booleans())
            bits = 32 if kind == "enum" else 64
            lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
            vals = draw(st.lists(st.integers(lo, hi), max_size=4))
            pairs = list(zip(unique_names(len(vals)), vals, strict=True))
            add_enum = b.add_enum if kind == "enum" else b.add_enum64
            tid = add_enum(draw(st.one_of(st.just(""), IDENT)), pairs, size=nbytes, signed=signed)
            size[tid] = nbytes
            sized.append(tid)
            refs.append(tid)
        elif kind == "fwd":
            tid = b.add_fwd(draw(IDENT), union=draw(st.booleans()))
            fwd_proto.append(tid)
            refs.append(tid)
        elif kind == "mod":
            target = draw(st.sampled_from([t for t in sized + fwd_proto + [0] if t not in tagged]))
            which = draw(st.sampled_from(["typedef", "const", "volatile", "restrict"]))
            if which == "typedef":
                tid = b.add_typedef(draw(IDENT), target)
                tag_targets.append((len(b.types), 0))
            else:
                adders = {"const": b.add_const, "volatile": b.add_volatile, "restrict": b.add_restrict}
                tid = adders[which](target)
            if target in size:
                size[tid] = size[target]
                sized.append(tid)
            if target in irregular:
                irregular.add(tid)
            refs.append(tid)
        elif kind == "tag":
            target = draw(st.sampled_from(sized))
            tid = b.add_type_tag(draw(IDENT), target, kflag=draw(st.booleans()))
            size[tid] = size[target]
            tagged.add(tid)
            sized.append(tid)
            refs.append(tid)
            if target in irregular:
                irregular.add(tid)
        elif kind == "proto":
            ptypes = draw(st.lists(st.sampled_from(sized), max_size=3))
            params = list(zip(unique_names(len(ptypes)), ptypes, strict=True))
            if draw(st.booleans()):
                params.append(("", 0))  # vararg
            tid = b.add_func_proto(draw(st.sampled_from(sized + [0])), params)
            protos.append((tid, len(params)))
            fwd_proto.append(tid)
            refs.append(tid)
        elif kind == "func" and protos:
            proto, nparams = draw(st.sampled_from(protos))
            tid = b.add_func(draw(IDENT), proto, draw(st.sampled_from([0, FUNC_GLOBAL])))
            tag_targets.append((tid, nparams))
            refs.append(tid)
        elif kind == "var":
            vt = draw(st.sampled_from(sized))
            tid = b.add_var(draw(IDENT), vt, draw(st.sampled_from([0, 1])))
            size[tid] = size[vt]
            var_ids.append(tid)
            tag_targets.append((tid, 0))
        elif kind == "datasec" and var_ids:
            chosen = draw(st.lists(st.sampled_from(var_ids), max_size=3))
            vs, off = [], 0
            for v in chosen:
                vsize = max(size[v], 1) + draw(st.integers(0, 3))
                vs.append((v, off, vsize))
                off += vsize
            sec = draw(st.sampled_from([".data", ".bss", ".rodata.str1.1", "my sec"]))
            b.add_datasec(sec, max(off, 1), vs)
        elif kind == "float":
            nbytes = draw(st.sampled_from([2, 4, 8, 12, 16]))
            tid = b.add_float(draw(IDENT), nbytes)
            size[tid] = nbytes
            sized.append(tid)
            refs.append(tid)
        elif kind == "decl_tag" and tag_targets:
            target, comps = draw(st.sampled_from(tag_targets))
            idx = draw(st.integers(-1, comps - 1)) if comps else -1
            b.add_decl_tag(draw(st.text(min_size=1, max_size=8).filter(lambda s: "\0" not in s
                                                                       and s.isascii())), target, idx)
    return b


@given(valid_btf())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_builder_round_trip(b: BtfBuilder) -> None:
    """parse(build(x)) == x for random valid BTF."""
    parsed = parse(b.to_bytes())
    assert parsed == b.build()
    assert parsed.types == tuple(b.types)


@given(valid_btf(), st.binary(max_size=64))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_format_value_total(b: BtfBuilder, data: bytes) -> None:
    """The printer handles every type of a valid BTF and any (short) data."""
    btf = b.build()
    for tid in range(len(btf.types) + 1):
        assert isinstance(format_value(btf, tid, data), str)


def test_builder_example() -> None:
    b = BtfBuilder()
    i = b.add_int("int", 4, signed=True)
    s = b.add_struct("pair", 8, [("x", i, 0), ("y", i, 32)])
    p = b.add_func_proto(i, [("p", s)])
    b.add_func("main", p, FUNC_GLOBAL)
    btf = parse(b.to_bytes())
    assert btf.type_by_id(2) == Struct("pair", 8, btf.types[1].members)
    assert isinstance(btf.type_by_id(4), Func) and btf.type_by_id(4).linkage == FUNC_GLOBAL
    assert isinstance(btf.type_by_id(3), FuncProto)
    assert btf.find("main") == 4 and btf.resolve_size(2) == 8
    assert "[2] STRUCT pair size=8 vlen=2\n\tx type_id=1 bits_offset=0\n" in btf.log


# --- malformed input -----------------------------------------------------------------------

_VALID_BLOBS = [build_blob(c) for _, c in CASES if c["expect"].get("accept")]
_INTERESTING = [0, 1, 2, 3, 4, 8, 12, 24, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                0x100000,
                0xFFFFFF, 0x1000000, 0x9F00FFFF, 0x0D000001]


def _parse_or_btf_error(blob: bytes) -> None:
    try:
        btf = parse(blob)
    except BtfError as e:
        assert isinstance(e.errno, int) and "\n" not in str(e)
        return
    for tid in range(len(btf.types) + 1):  # anything accepted can also be printed
        format_value(btf, tid, blob[:64])


@given(st.binary(max_size=512))
def test_random_bytes_only_btf_error(blob: bytes) -> None:
    _parse_or_btf_error(blob)


@given(st.binary(max_size=200))
def test_random_body_with_valid_header(body: bytes) -> None:
    """A correct header in front of random types and strings gets past btf_parse_hdr."""
    split = len(body) // 2
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, split, split, len(body) - split)
    _parse_or_btf_error(hdr + body)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    blob = bytearray(draw(st.sampled_from(_VALID_BLOBS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "word", "cut", "insert"]))
        pos = draw(st.integers(0, max(len(blob) - 1, 0)))
        if op == "flip" and blob:
            blob[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "word" and len(blob) >= 4:
            pos = min(pos & ~3, len(blob) - 4)
            blob[pos:pos + 4] = draw(st.sampled_from(_INTERESTING)).to_bytes(4, "little")
        elif op == "cut":
            del blob[pos:pos + draw(st.integers(1, 16))]
        else:
            blob[pos:pos] = draw(st.binary(min_size=1, max_size=12))
    return bytes(blob)


@given(mutated())
@settings(max_examples=300)
def test_mutated_valid_blobs_only_btf_error(blob: bytes) -> None:
    _parse_or_btf_error(blob)


@given(st.binary(max_size=256))
def test_btf_ext_random_bytes(blob: bytes) -> None:
    try:
        btf_ext_parse(blob)
    except BtfExtError:
        pass


# --- .BTF.ext ------------------------------------------------------------------------------


def _ext_sample() -> BtfExtBuilder:
    e = BtfExtBuilder()
    e.add_func_info(1, [(0, 3), (40, 5)])
    e.add_line_info(1, [(0, 7, 12, 10 << 10 | 5), (16, 7, 20, 11 << 10 | 1)])
    return e


def test_btf_ext_round_trip() -> None:
    e = _ext_sample()
    parsed = btf_ext_parse(e.to_bytes())
    assert parsed == e.build()
    assert parsed.func_info[0].records == (FuncInfo(0, 3), FuncInfo(40, 5))
    li = parsed.line_info[0].records[0]
    assert isinstance(li, LineInfo) and (li.line, li.column) == (10, 5)
    assert parsed.func_info_rec_size == 8 and parsed.line_info_rec_size == 16


@pytest.mark.parametrize(("patch", "message"), [
    (lambda d: d[:6], "BTF.ext header not found"),
    (lambda d: b"\xeb\x9f" + d[2:], "BTF.ext in non-native endianness is not supported"),
    (lambda d: b"\x00\x00" + d[2:], "Invalid BTF.ext magic:0"),
    (lambda d: d[:2] + b"\x02" + d[3:], "Unsupported BTF.ext version:2"),
    (lambda d: d[:3] + b"\x01" + d[4:], "Unsupported BTF.ext flags:1"),
    (lambda d: d[:32], "BTF.ext has no data"),
    (lambda d: d[:8] + struct.pack("<I", 2) + d[12:], ".BTF.ext func_info section is not aligned to 4 bytes"),
    (lambda d: d[:12] + struct.pack("<I", 999) + d[16:],
     "func_info section (off:0 len:999) is beyond the end"),
    (lambda d: d[:32] + struct.pack("<I", 4) + d[36:],
     "func_info section in .BTF.ext has invalid record size 4"),
    (lambda d: d[:12] + struct.pack("<I", 4) + d[16:],
     "func_info section in .BTF.ext has no records"),
    (lambda d: d[:40] + struct.pack("<I", 3) + d[44:], "func_info section has incorrect num_records"),
    (lambda d: d[:40] + struct.pack("<I", 0) + d[44:], "func_info section has incorrect num_records"),
])
def test_btf_ext_errors(patch: Any, message: str) -> None:
    with pytest.raises(BtfExtError) as info:
        btf_ext_parse(patch(_ext_sample().to_bytes()))
    assert message in info.value.kernel_message
    assert str(info.value).startswith("BTF.ext rejected, E")


def test_func_and_line_info_checks() -> None:
    b = BtfBuilder()
    i = b.add_int("int", 4, signed=True)
    p = b.add_func_proto(i)
    f = b.add_func("main", p)
    g = b.add_func("sub", p)
    btf = parse(b.to_bytes())
    check_func_info(btf, [FuncInfo(0, f), FuncInfo(5, g)])
    for recs, msg in [([FuncInfo(1, f)], "nonzero insn_off 1 for the first func info record"),
                      ([FuncInfo(0, f), FuncInfo(0, g)], "same or smaller insn offset (0) than previous func "
                                                         "info record (0)"),
                      ([FuncInfo(0, p)], "invalid type id 2 in func info")]:
        with pytest.raises(BtfExtError) as info:
            check_func_info(btf, recs)
        assert info.value.kernel_message == msg
    check_line_info(btf, [LineInfo(0, 1, 1), LineInfo(3, 1, 1)], prog_len=4)
    with pytest.raises(BtfExtError, match=r"Invalid line_info\[1\].insn_off:4 \(prev_offset:0 prog->len:4\)"):
        check_line_info(btf, [LineInfo(0, 1, 1), LineInfo(4, 1, 1)], prog_len=4)
    with pytest.raises(BtfExtError, match=r"Invalid line_info\[0\].line_off or .file_name_off"):
        check_line_info(btf, [LineInfo(0, 1, 999)], prog_len=4)


# --- the bpftool-style printer (expected strings written by hand) --------------------------


def _btf(build: Any) -> Btf:
    b = BtfBuilder()
    build(b)
    return parse(b.to_bytes())


def _le(*vals: tuple[int, int]) -> bytes:
    return b"".join(v.to_bytes(n, "little", signed=v < 0) for v, n in vals)


def test_format_ints() -> None:
    def build(b: BtfBuilder) -> None:
        b.add_int("int", 4, signed=True)
        b.add_int("unsigned int", 4)
        b.add_int("u8", 1)
        b.add_int("s8", 1, signed=True)
        b.add_int("u16", 2)
        b.add_int("s64", 8, signed=True)
        b.add_int("char", 1, char=True)
        b.add_int("_Bool", 1, bool_=True)
        b.add_int("__int128", 16)
        b.add(Int("hi", 4, 8, 8))  # 10: 8 bits at bits_offset 8
        b.add_int("u64", 8)
    btf = _btf(build)
    assert format_value(btf, 1, _le((-1, 4))) == "-1"
    assert format_value(btf, 2, _le((0xFFFFFFFF, 4))) == "4294967295"
    assert format_value(btf, 3, b"\xff") == "255"
    assert format_value(btf, 4, b"\x80") == "-128"
    assert format_value(btf, 5, _le((65535, 2))) == "65535"
    assert format_value(btf, 6, _le((-(2**63), 8))) == "-9223372036854775808"
    assert format_value(btf, 11, _le((2**64 - 1, 8))) == "18446744073709551615"
    assert format_value(btf, 7, b"A") == '"A"'
    assert format_value(btf, 7, b'"') == '"""'  # bpftool prints a char with %c, unescaped
    assert format_value(btf, 7, b"\x07") == "0x7"
    assert format_value(btf, 7, b"\xe9") == "0xe9"
    assert format_value(btf, 8, b"\x01\0\0\0") == "true"
    assert format_value(btf, 8, b"\0\0\0\0") == "false"
    assert format_value(btf, 8, b"\0\x01\0\0") == "false"  # one byte (checked against bpftool 7.1)
    assert format_value(btf, 9, _le((1 << 64 | 5, 16))) == "0x10000000000000005"
    assert format_value(btf, 9, _le((42, 16))) == "0x2a"
    assert format_value(btf, 10, _le((0x1234AB00, 4))) == "0xab"  # bits_offset 8, 8 bits: hex


def test_format_pointers_and_enums() -> None:
    def build(b: BtfBuilder) -> None:
        b.add_ptr(0)
        b.add_enum("E", [("E0", 0), ("E1", 1)])
        b.add_enum("S", [("NEG", -2)], signed=True)
        b.add_enum("B", [("FF", 0xFF)], size=1)
        b.add_enum64("L", [("BIG", 1 << 40)])
    btf = _btf(build)
    assert format_value(btf, 1, bytes(8)) == "(nil)"
    assert format_value(btf, 1, _le((0x7FFD80531CF8, 8))) == "0x7ffd80531cf8"
    assert format_value(btf, 2, _le((1, 4))) == '"E1"'
    assert format_value(btf, 2, _le((7, 4))) == "7"
    assert format_value(btf, 2, _le((0xFFFFFFFF, 4))) == "-1"
    assert format_value(btf, 3, _le((-2, 4))) == '"NEG"'
    assert format_value(btf, 4, b"\xff") == "-1"  # 1-byte enum read signed, 0xff is not -1 as s32
    assert format_value(btf, 5, _le((1 << 40, 8))) == '"BIG"'
    assert format_value(btf, 5, _le((2**64 - 1, 8))) == "-1"


def test_format_arrays() -> None:
    def build(b: BtfBuilder) -> None:
        i = b.add_int("int", 4, signed=True)
        c = b.add_int("char", 1, signed=True)
        b.add_array(c, i, 5)  # 3
        b.add_array(i, i, 3)  # 4
        b.add_array(4, i, 2)  # 5: int[2][3]
        b.add_struct("P", 4, [("x", i, 0)])  # 6
        b.add_array(6, i, 2)  # 7
        b.add_array(c, i, 0)  # 8
    btf = _btf(build)
    assert format_value(btf, 3, b"abc\0\0") == '"abc"'
    assert format_value(btf, 3, b"abcde") == "[97,98,99,100,101\n]"  # no NUL: not a string
    assert format_value(btf, 3, b"a\x01c\0\0") == "[97,1,99,0,0\n]"
    assert format_value(btf, 3, b'a"\\\0\0') == '"a\\"\\n"'  # json_writer prints a backslash as \n
    assert format_value(btf, 4, _le((1, 4), (2, 4), (3, 4))) == "[1,2,3\n]"
    assert format_value(btf, 5, _le(*[(v, 4) for v in range(6)])) == "[[0,1,2\n    ],[3,4,5\n    ]\n]"
    assert format_value(btf, 7, _le((1, 4), (2, 4))) == (
        '[{\n        "x": 1\n    },{\n        "x": 2\n    }\n]')
    assert format_value(btf, 8, b"") == "[]"


def test_format_struct() -> None:
    def build(b: BtfBuilder) -> None:
        i = b.add_int("int", 4, signed=True)
        u = b.add_int("unsigned int", 4)
        c = b.add_int("char", 1, signed=True)
        name = b.add_array(c, i, 4)
        inner = b.add_struct("in", 4, [("x", i, 0)])
        p = b.add_ptr(i)
        b.add_struct("S", 32, [("a", i, 0), ("b", u, 32, 3), ("c", u, 35, 5), ("name", name, 64),
                               ("in", inner, 96), ("p", p, 128)])
    btf = _btf(build)
    data = _le((-5, 4), (5 | 0x1F << 3, 4)) + b"hi\0\0" + _le((7, 4), (0, 8), (0, 8))
    assert format_value(btf, 7, data) == (
        '{\n    "a": -5,\n    "b": 0x5,\n    "c": 0x1f,\n    "name": "hi",\n    "in": {\n        "x": 7\n'
        '    },\n    "p": (nil)\n}')


def test_format_union_typedef_bitfield_and_unsupported() -> None:
    def build(b: BtfBuilder) -> None:
        i = b.add_int("int", 4, signed=True)
        f = b.add_float("float", 4)
        b.add_union("U", 4, [("i", i, 0), ("", i, 0)])  # 3
        b.add_typedef("myint", i)  # 4
        b.add_const(0)  # 5: const void
        b.add_int("u3", 1, bits=3)  # 6
        b.add_struct("B", 1, [("w", 6, 3)])  # 7: non-kflag bitfield via a 3-bit int
        b.add_struct("F", 8, [("f", f, 0), ("i", i, 32)])  # 8
        b.add_fwd("fw")  # 9
    btf = _btf(build)
    assert format_value(btf, 3, _le((9, 4))) == '{\n    "i": 9,\n    "": 9\n}'
    assert format_value(btf, 4, _le((3, 4))) == "3"
    assert format_value(btf, 5, bytes(4)) == ""  # bpftool cannot resolve const void: nothing printed
    assert format_value(btf, 7, b"\x28") == '{\n    "w": 0x5\n}'
    assert format_value(btf, 8, bytes(8)) == '{\n    "f": (unsupported-kind\n}'  # stops at the float
    assert format_value(btf, 9, bytes(4)) == "(fwd-kind-invalid)"
    assert format_value(btf, 0, bytes(4)) == "(unknown)"


def test_format_datasec_and_map_dump() -> None:
    def build(b: BtfBuilder) -> None:
        i = b.add_int("int", 4, signed=True)
        v = b.add_var("v", i)
        w = b.add_var("w", i)
        b.add_datasec(".data", 8, [(v, 0, 4), (w, 4, 4)])  # 4
        b.add_struct("val", 4, [("cnt", i, 0)])  # 5
    btf = _btf(build)
    assert isinstance(btf.type_by_id(4), Datasec) and isinstance(btf.type_by_id(2), Var)
    assert format_value(btf, 4, _le((1, 4), (2, 4))) == (
        '{\n    ".data": [{\n            "v": 1\n        },{\n            "w": 2\n        }\n    ]\n}')
    dump = format_map_dump(btf, 1, 5, [(_le((0, 4)), _le((3, 4))), (_le((1, 4)), _le((4, 4)))])
    assert dump == ('[{\n        "key": 0,\n        "value": {\n            "cnt": 3\n        }\n    },{\n'
                    '        "key": 1,\n        "value": {\n            "cnt": 4\n        }\n    }\n]\n')
    percpu = format_map_dump(btf, 1, 1, [(_le((0, 4)), [_le((5, 4)), _le((6, 4))])], percpu=True)
    assert percpu == ('[{\n        "key": 0,\n        "values": [{\n                "cpu": 0,\n'
                      '                "value": 5\n            },{\n                "cpu": 1,\n'
                      '                "value": 6\n            }\n        ]\n    }\n]\n')


def test_model_helpers() -> None:
    b = BtfBuilder()
    i = b.add_int("int", 4, signed=True)
    a = b.add_array(i, i, 3)
    t = b.add_typedef("arr_t", a)
    c = b.add_const(t)
    btf = b.build()
    assert btf.resolve_size(c) == 12 and btf.skip_modifiers(c) == a
    assert btf.skip_modifiers(c, typedefs=False) == t
    assert btf.find("arr_t", Typedef) == t and btf.find("nope") == 0
    assert btf.type_by_id(0) is None and btf.type_by_id(99) is None
    assert isinstance(btf.type_by_id(1), Int) and len(btf) == 4 and list(btf)[3] == Const(t)
    raw = BtfBuilder()
    raw.add_raw(0, 0)
    with pytest.raises(TypeError):
        raw.build()
    assert Enum("e").size == 4
