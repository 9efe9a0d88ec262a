#!/usr/bin/env python3
"""Record the BTF corpus (corpora/btf/*.yaml) from the live kernel.

Case *definitions* live in this script (``TOPICS``); every expectation comes from the kernel:
each case's blob (reference_vm.btf.build_blob) is loaded with BPF_BTF_LOAD at log_level 1 and
its verdict, errno and last non-empty log line are written as ``expect``. Our parser is never
asked. Run as root where bpf() works::

    python scripts/gen_btf_corpus.py            # rewrite corpora/btf/*.yaml
    python scripts/gen_btf_corpus.py --check    # compare with the recorded files, write nothing

Cases restating a selftest cite its ``descr`` from tools/testing/selftests/bpf/prog_tests/btf.c
(``raw_tests[]``); the others are written for this corpus. See docs/btf-cases.md.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import os
import platform
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from conformance.kernel.btf_load import btf_load, probe  # noqa: E402
from reference_vm.btf import build_blob  # noqa: E402

OUT = REPO / "corpora" / "btf"
Case = dict[str, Any]

# --- shorthand for type entries ----------------------------------------------------------


def INT(name: str = "int", size: int = 4, bits: int | None = None, enc: str = "SIGNED", **kw: Any) -> Case:
    return {"kind": "INT", "name": name, "size": size, "bits": size * 8 if bits is None else bits,
            "encoding": enc, **kw}


def UINT(name: str = "unsigned int", size: int = 4, **kw: Any) -> Case:
    return INT(name, size, enc="NONE", **kw)


def PTR(t: int, **kw: Any) -> Case:
    return {"kind": "PTR", "type": t, **kw}


def ARRAY(t: int, index: int, n: int, **kw: Any) -> Case:
    return {"kind": "ARRAY", "type": t, "index_type": index, "nelems": n, **kw}


def STRUCT(name: str, size: int, *members: list[Any], kind: str = "STRUCT", **kw: Any) -> Case:
    return {"kind": kind, "name": name, "size": size, "members": [list(m) for m in members], **kw}


def UNION(name: str, size: int, *members: list[Any], **kw: Any) -> Case:
    return STRUCT(name, size, *members, kind="UNION", **kw)


def ENUM(name: str, *values: list[Any], size: int = 4, kind: str = "ENUM", **kw: Any) -> Case:
    return {"kind": kind, "name": name, "size": size, "values": [list(v) for v in values], **kw}


def REF(kind: str, t: int, name: str = "", **kw: Any) -> Case:
    e: Case = {"kind": kind, "type": t, **kw}
    if name:
        e["name"] = name
    return e


def FUNC_PROTO(ret: int, *params: list[Any], **kw: Any) -> Case:
    return {"kind": "FUNC_PROTO", "return_type": ret, "params": [list(p) for p in params], **kw}


def FUNC(name: str, proto: int, linkage: int = 0, **kw: Any) -> Case:
    return {"kind": "FUNC", "name": name, "type": proto, "linkage": linkage, **kw}


def VAR(name: str, t: int, linkage: int = 0, **kw: Any) -> Case:
    return {"kind": "VAR", "name": name, "type": t, "linkage": linkage, **kw}


def DATASEC(name: str, size: int, *vars: list[int], **kw: Any) -> Case:
    return {"kind": "DATASEC", "name": name, "size": size, "vars": [list(v) for v in vars], **kw}


def FLOAT(name: str, size: int, **kw: Any) -> Case:
    return {"kind": "FLOAT", "name": name, "size": size, **kw}


def DECL_TAG(value: str, t: int, idx: int = -1, **kw: Any) -> Case:
    return {"kind": "DECL_TAG", "name": value, "type": t, "component_idx": idx, **kw}


def RAW(*words: int | str) -> Case:
    return {"raw": list(words)}


def case(name: str, description: str, types: list[Case] | None = None, **kw: Any) -> Case:
    c: Case = {"name": name, "description": description}
    if types is not None:
        c["types"] = types
    c.update(kw)
    return c


def hx(*parts: bytes) -> str:
    return b"".join(parts).hex()


ONE_INT = [INT()]
_HDR = bytes.fromhex("9feb0100" "18000000")  # magic 0xeb9f, version 1, flags 0, hdr_len 24


def _hdr(type_off: int, type_len: int, str_off: int, str_len: int, magic: int = 0xEB9F) -> bytes:
    return magic.to_bytes(2, "little") + bytes([1, 0]) + b"".join(
        v.to_bytes(4, "little") for v in (24, type_off, type_len, str_off, str_len))


_INT_REC = bytes.fromhex("01000000" "00000001" "04000000" "20000001")  # [1] INT "int" size 4, 32 bits signed

# --- cases, one list per topic file --------------------------------------------------------

HEADER = [
    case("empty_blob", "Zero bytes: btf_parse_hdr finds no hdr_len.", raw_hex=""),
    case("seven_bytes", "A blob shorter than magic+version+flags+hdr_len (8 bytes).",
         raw_hex="9feb010018000000"[:14]),
    case("hdr_len_beyond_data", "hdr_len larger than the blob: btf_header not found.",
         raw_hex=hx(bytes.fromhex("9feb0100" "40000000"), bytes(16))),
    case("bad_magic", "Magic 0xbeef instead of 0xeb9f.", ONE_INT, header={"magic": 0xBEEF}),
    case("byteswapped_magic", "Big-endian magic 0x9feb: the kernel has no endianness fallback.", ONE_INT,
         header={"magic": 0x9FEB}),
    case("version_2", "Version 2 is not supported (ENOTSUPP, 524).", ONE_INT, header={"version": 2}),
    case("version_0", "Version 0 is not supported either.", ONE_INT, header={"version": 0}),
    case("flags_1", "Nonzero header flags (ENOTSUPP).", ONE_INT, header={"flags": 1}),
    case("header_only", "A 24-byte header and nothing else: No data.", raw_hex=hx(_hdr(0, 0, 0, 0))),
    case("hdr_len_28_zero_tail", "hdr_len 28 with the extra 4 header bytes zero is accepted.", ONE_INT,
         layout={"hdr_extra_hex": "00000000"}),
    case("hdr_len_28_nonzero_tail", "hdr_len 28 with a nonzero extra header byte: Unsupported btf_header "
         "(E2BIG). Selftests: hdr_len_delta = 4 gives the same message.", ONE_INT,
         layout={"hdr_extra_hex": "01000000"}),
    case("hdr_len_16", "hdr_len 16: str_off/str_len are not read (zero), the strings become trailing data.",
         ONE_INT, header={"hdr_len": 16}),
    case("type_off_gap", "type_off + 4 leaves a gap before the types (selftests: type_off_delta = 4).",
         ONE_INT, header={"type_off_delta": 4}),
    case("str_off_gap", "A 4-byte gap between types and strings.", ONE_INT, layout={"gap_hex": "00000000"}),
    case("sections_overlap", "str_off points into the type section.", ONE_INT, header={"str_off_delta": -4}),
    case("str_len_too_long", "str_len runs past the end of the blob (selftests: str_len_delta).", ONE_INT,
         header={"str_len_delta": 1}),
    case("str_len_short", "str_len one byte short: the last byte is not covered by any section.", ONE_INT,
         header={"str_len_delta": -1}),
    case("trailing_byte", "One byte after the string section.", ONE_INT, layout={"trailer_hex": "00"}),
    case("type_off_past_end", "type_off beyond the data: sorted by offset the strings come first and "
         "leave a gap.", ONE_INT, header={"type_off": 4096}),
    case("section_offsets_past_end", "Both sections beyond the data: Invalid section offset.", ONE_INT,
         header={"type_off": 4096, "str_off": 8192}),
    case("hdr_len_32_zero_tail", "hdr_len 32, eight zero bytes of future header fields.", ONE_INT,
         layout={"hdr_extra_hex": "0000000000000000"}),
    case("type_len_too_long", "type_len larger than the data after the header.", ONE_INT,
         header={"type_len_delta": 100, "str_off_delta": 100}),
    case("strings_first", "Strings before types: the string section is not at the end.",
         ONE_INT, layout={"strings_first": True}),
    case("strings_first_padded", "Strings padded to 8 bytes first, types last: still not at the end.",
         [INT()], layout={"strings_first": True, "strings_hex": "00696e7400000000"}),
    case("no_type_found", "type_len 0 with a valid string section: No type found.",
         raw_hex=hx(_hdr(0, 0, 0, 5), b"\0int\0")),
    case("unaligned_type_off", "An empty type section at odd offset 5, after the strings: Unaligned "
         "type_off is checked before No type found.", raw_hex=hx(_hdr(5, 0, 0, 5), b"\0int\0")),
]

STRINGS = [
    case("str_len_zero", "An empty string section.", [INT(name="")], layout={"strings_hex": ""}),
    case("strings_not_nul_terminated", "The last byte of the string section is not NUL.", [INT(name="")],
         layout={"strings_hex": "00696e74"}),
    case("strings_first_not_empty", "The first string must be \"\" (offset 0 means anonymous).",
         [INT(name_off=0)], layout={"strings_hex": "696e7400"}),
    case("single_nul_strings", "A string section of one NUL and anonymous types only is accepted.",
         [PTR(0)], layout={"strings_hex": "00"}),
    case("name_off_out_of_range", "name_off 9999 beyond str_len.", [INT(name_off=9999)]),
    case("name_off_equals_str_len", "name_off == str_len is one past the end.", [INT(name_off=5)]),
    case("name_off_too_big", "name_off above BTF_MAX_NAME_OFFSET (0xffffff).", [INT(name_off=0x1000000)]),
    case("name_off_mid_string", "A name offset into the middle of a string (\"nt\" of \"int\") is fine.",
         [INT(name="int"), INT(name_off=2)]),
    case("name_512_chars", "A 512-character identifier (KSYM_NAME_LEN) is valid.", [
        STRUCT("s" * 512, 0)]),
    case("name_513_chars", "A 513-character identifier is too long.", [STRUCT("s" * 513, 0)]),
    case("name_latin1_letter", "Byte 0xC0 is a letter in the kernel's ctype table, so it may start a name.",
         [STRUCT("\xc0bc", 0)]),
    case("name_latin1_multiplication_sign", "Byte 0xD7 is punctuation in the kernel's ctype table.",
         [STRUCT("a\xd7b", 0)]),
    case("name_high_control", "Byte 0x80 is neither alnum nor printable for the kernel.",
         [STRUCT("a\x80", 0)]),
    case("name_leading_digit", "Identifiers cannot start with a digit.", [STRUCT("1abc", 0)]),
    case("name_leading_dot", "'.' is accepted anywhere in an identifier.", [STRUCT(".abc.d", 0)]),
    case("name_dash", "'-' is not an identifier character.", [STRUCT("a-b", 0)]),
    case("name_underscore", "'_' starts and continues identifiers.", [STRUCT("_a_1", 0)]),
]

META = [
    case("truncated_btf_type", "8 bytes left for a 12-byte struct btf_type.",
         [INT(), RAW(0, 0x02000000)]),
    case("invalid_btf_info", "Bits 16..23 of info are reserved (BTF_INFO_MASK 0x9f00ffff).",
         [INT(info=0x01010000)]),
    case("invalid_btf_info_bit29", "Bit 29 of info is reserved too.", [INT(info=0x21000000)]),
    case("kind_0", "Kind 0 (UNKN) is not a type.", [RAW(0, 0, 0)]),
    case("kind_20", "Kind 20 is past BTF_KIND_MAX (ENUM64 = 19).", [RAW(0, 20 << 24, 0)]),
    case("kind_31", "Kind 31, the largest the 5-bit field holds.", [RAW(0, 31 << 24, 0)]),
    case("int_truncated", "An INT without its u32 of int data.", [INT(truncate=4)]),
    case("int_truncated_partial", "An INT with 2 of its 4 bytes of int data.", [INT(truncate=2)]),
    case("array_truncated", "An ARRAY record missing 4 of its 12 bytes of btf_array.",
         [INT(), ARRAY(1, 1, 4, truncate=4)]),
    case("struct_truncated", "A STRUCT with vlen 2 and room for one member.",
         [INT(), STRUCT("s", 8, ["a", 1, 0], ["b", 1, 32], truncate=12)]),
    case("enum_truncated", "An ENUM with vlen 2 and one btf_enum.",
         [ENUM("e", ["A", 0], ["B", 1], truncate=8)]),
    case("enum64_truncated", "An ENUM64 with 8 of its 12 bytes.",
         [ENUM("e", ["A", 0], kind="ENUM64", size=8, truncate=4)]),
    case("func_proto_truncated", "A FUNC_PROTO with vlen 1 and no btf_param.",
         [INT(), FUNC_PROTO(1, ["a", 1], truncate=8)]),
    case("var_truncated", "A VAR without its linkage word.", [INT(), VAR("v", 1, truncate=4)]),
    case("datasec_truncated", "A DATASEC with vlen 1 and 8 bytes of var_secinfo.",
         [INT(), VAR("v", 1), DATASEC(".data", 4, [2, 0, 4], truncate=4)]),
    case("decl_tag_truncated", "A DECL_TAG without component_idx.",
         [STRUCT("s", 0), DECL_TAG("tag", 1, truncate=4)]),
]

INTS = [
    case("int_signed_32", "int: 4 bytes, 32 bits, SIGNED.", [INT()]),
    case("int_kinds_all_encodings", "char (CHAR), _Bool (BOOL), u8, u16, s64, __int128.", [
        INT("char", 1, enc="CHAR"), INT("_Bool", 1, enc="BOOL"), UINT("u8", 1), UINT("u16", 2),
        INT("long", 8), INT("__int128", 16)]),
    case("int_nr_bits_0", "nr_bits 0 is accepted (kernel-oracle.md §8).", [INT(bits=0)]),
    case("int_nr_bits_exceeds_size", "64 bits in a 4-byte INT.", [INT(bits=64)]),
    case("int_offset_plus_bits_exceeds_size", "bits_offset 1 + 32 bits needs 5 bytes.", [INT(offset=1)]),
    case("int_bits_offset_ok", "An INT with bits_offset 4 and 28 bits fits 4 bytes.",
         [INT(bits=28, offset=4)]),
    case("int_nr_bits_exceeds_128", "bits_offset 8 + 128 bits is over 128.",
         [INT(size=17, bits=128, offset=8)]),
    case("int_129_bits", "129 bits (nr_bits is 8 bits wide) is over 128.", [INT(size=17, bits=129)]),
    case("int_invalid_int_data", "Bit 28 of the int data word is reserved (BTF_INT_MASK).",
         [RAW("int", 0x01000000, 4, 0x10000020)]),
    case("int_unsupported_encoding", "SIGNED|CHAR together: Unsupported encoding (ENOTSUPP).",
         [INT(encoding=3)]),
    case("int_encoding_8", "Encoding 8 is not one of SIGNED/CHAR/BOOL.", [INT(encoding=8)]),
    case("int_vlen", "An INT with vlen 1.", [INT(vlen=1)]),
    case("int_kflag", "An INT with kind_flag set.", [INT(kflag=1)]),
    case("int_size_3", "A 3-byte, 24-bit INT is a valid (not regular) int.", [UINT("u24", 3)]),
    case("int_anonymous", "INT names are not checked beyond the offset (anonymous is fine).", [INT(name="")]),
    case("int_bad_name", "INT names are not validated as identifiers.", [INT(name="not an identifier!")]),
]

PTRS = [
    case("ptr_void", "void *.", [PTR(0)]),
    case("ptr_invalid_type_id", "PTR to id 99 in a 2-type BTF (kernel-oracle.md §8).", [INT(), PTR(99)]),
    case("ptr_type_id_above_max", "PTR type above BTF_MAX_TYPE, caught by check_meta.", [PTR(0x100000)]),
    case("ptr_named", "A named PTR (name_off 1 = \"int\").", [INT(), PTR(1, name_off=1)]),
    case("ptr_vlen", "PTR with vlen 1.", [INT(), PTR(1, vlen=1)]),
    case("ptr_kflag", "PTR with kind_flag.", [INT(), PTR(1, kflag=1)]),
    case("ptr_to_ptr_to_int", "int **.", [INT(), PTR(1), PTR(2)]),
    case("ptr_forward_reference", "PTR to a later struct, which points back: accepted.",
         [PTR(2), STRUCT("node", 8, ["next", 1, 0])]),
    case("ptr_to_var", "PTR to a VAR: VAR is resolve-source only.", [INT(), VAR("v", 1), PTR(2)]),
    case("ptr_to_func_resolved_first", "FUNC before the PTR: the FUNC is already resolved, PTR resolves "
         "through it to its FUNC_PROTO.", [FUNC_PROTO(0), FUNC("f", 1), PTR(2)]),
    case("ptr_to_func_unresolved", "PTR before the FUNC: FUNC is a sink for a PTR and not resolved yet, "
         "so the PTR has no size and is rejected.", [PTR(3), FUNC_PROTO(0), FUNC("f", 2)]),
    case("ptr_to_func_proto", "A function pointer.", [INT(), FUNC_PROTO(1, ["a", 1]), PTR(2)]),
    case("ptr_to_fwd", "struct s *, s only forward-declared.", [{"kind": "FWD", "name": "s"}, PTR(1)]),
    case("const_int", "const int.", [INT(), REF("CONST", 1)]),
    case("const_void", "const void is a valid modifier target.", [REF("CONST", 0)]),
    case("const_named", "A CONST must be anonymous.", [INT(), REF("CONST", 1, name_off=1)]),
    case("volatile_restrict_chain", "restrict volatile const int *.", [
        INT(), REF("CONST", 1), REF("VOLATILE", 2), PTR(3), REF("RESTRICT", 4)]),
    case("volatile_invalid_type_id", "VOLATILE to a missing id.", [REF("VOLATILE", 5)]),
    case("restrict_kflag", "RESTRICT with kind_flag.", [INT(), REF("RESTRICT", 1, kflag=1)]),
    case("typedef_int", "typedef int myint.", [INT(), REF("TYPEDEF", 1, "myint")]),
    case("typedef_anonymous", "A TYPEDEF needs a name (selftests: typedef (invalid name, name_off = 0)).",
         [INT(), REF("TYPEDEF", 1)]),
    case("typedef_bad_identifier", "A TYPEDEF named \"__int!\".", [INT(), REF("TYPEDEF", 1, "__int!")]),
    case("typedef_void", "typedef void new_void.", [REF("TYPEDEF", 0, "new_void")]),
    case("typedef_func_proto", "A typedef of a function type.", [FUNC_PROTO(0), REF("TYPEDEF", 1, "fn_t")]),
    case("typedef_to_var", "TYPEDEF to a VAR: Invalid type_id.",
         [INT(), VAR("v", 1), REF("TYPEDEF", 2, "t")]),
    case("typedef_to_datasec", "TYPEDEF to a DATASEC.", [INT(), VAR("v", 1), DATASEC(".data", 4, [2, 0, 4]),
                                                          REF("TYPEDEF", 3, "t")]),
    case("const_to_func", "const of a FUNC: the FUNC resolves to its FUNC_PROTO first, so it is accepted.",
         [FUNC_PROTO(0), FUNC("f", 1), REF("CONST", 2)]),
    case("typedef_to_fwd", "typedef struct s s_t with s forward-declared.",
         [{"kind": "FWD", "name": "s"}, REF("TYPEDEF", 1, "s_t")]),
]

LOOPS = [
    case("typedef_loop", "typedef a -> typedef x -> a: Loop detected (EEXIST).",
         [REF("TYPEDEF", 2, "a"), REF("TYPEDEF", 1, "x")]),
    case("const_self_loop", "A CONST pointing at itself.", [REF("CONST", 1)]),
    case("ptr_self_loop", "A PTR pointing at itself.", [PTR(1)]),
    case("ptr_const_loop", "CONST -> PTR -> CONST -> PTR -> first CONST (the pointer loop in btf.c's "
         "introduction).", [REF("CONST", 2), PTR(3), REF("CONST", 4), PTR(1)]),
    case("struct_contains_itself", "struct A { struct A a; }.", [STRUCT("A", 4, ["a", 1, 0])]),
    case("struct_mutual", "struct A { struct B b; }; struct B { struct A a; }.",
         [STRUCT("A", 4, ["b", 2, 0]), STRUCT("B", 4, ["a", 1, 0])]),
    case("struct_self_pointer", "struct A { int m; struct A *a; } is fine.",
         [INT(), STRUCT("A", 16, ["m", 1, 0], ["a", 3, 64]), PTR(2)]),
    case("array_of_itself", "An ARRAY whose element is the array.", [INT(), ARRAY(2, 1, 2)]),
    case("chain_32_modifiers", "32 CONSTs before the INT fit MAX_RESOLVE_DEPTH.",
         [REF("CONST", i + 2) for i in range(32)] + [INT()]),
    case("chain_33_modifiers", "33 CONSTs: Exceeded max resolving depth:32 (E2BIG).",
         [REF("CONST", i + 2) for i in range(33)] + [INT()]),
    case("chain_40_reversed", "40 CONSTs each pointing at the previous id resolve one at a time.",
         [INT()] + [REF("CONST", i + 1) for i in range(40)]),
    case("struct_member_via_typedef_loop", "struct A { A_t m; } with typedef struct A A_t.",
         [STRUCT("A", 4, ["m", 2, 0]), REF("TYPEDEF", 1, "A_t")]),
]

ARRAYS = [
    case("array_int_8", "int[8].", [INT(), ARRAY(1, 1, 8)]),
    case("array_2d", "int[4][8] (struct test #1).", [INT(), ARRAY(1, 1, 8), ARRAY(2, 1, 4)]),
    case("array_zero_elems", "int[0] is valid.", [INT(), ARRAY(1, 1, 0)]),
    case("array_named", "An ARRAY must be anonymous.", [INT(), ARRAY(1, 1, 4, name_off=1)]),
    case("array_vlen", "ARRAY with vlen 1.", [INT(), ARRAY(1, 1, 4, vlen=1)]),
    case("array_kflag", "ARRAY with kind_flag.", [INT(), ARRAY(1, 1, 4, kflag=1)]),
    case("array_size_nonzero", "ARRAY's size field must be 0.", [INT(), ARRAY(1, 1, 4, size_type=16)]),
    case("array_elem_void", "Element type 0 (void).", [INT(), ARRAY(0, 1, 4)]),
    case("array_index_void", "Index type 0 (void).", [INT(), ARRAY(1, 0, 4)]),
    case("array_elem_missing", "Element type id 99 does not exist.", [INT(), ARRAY(99, 1, 4)]),
    case("array_index_missing", "Index type id 99 does not exist.", [INT(), ARRAY(1, 99, 4)]),
    case("array_index_struct", "A struct as the index type.", [INT(), STRUCT("s", 4, ["a", 1, 0]),
                                                               ARRAY(1, 2, 4)]),
    case("array_index_not_regular", "A 3-bit INT as index type is not a regular int.",
         [INT(), UINT("u3", 1, bits=3), ARRAY(1, 2, 4)]),
    case("array_index_typedef", "Index type typedef u32 -> unsigned int is fine.",
         [UINT(), REF("TYPEDEF", 1, "u32"), ARRAY(1, 2, 4)]),
    case("array_elem_fwd", "An array of a forward-declared struct.", [INT(), {"kind": "FWD", "name": "s"},
                                                                       ARRAY(2, 1, 4)]),
    case("array_elem_func_proto", "An array of functions.", [INT(), FUNC_PROTO(1), ARRAY(2, 1, 4)]),
    case("array_elem_var", "An array of a VAR.", [INT(), VAR("v", 1), ARRAY(2, 1, 4)]),
    case("array_of_bitfield_int", "An array of a 3-bit INT: Invalid array of int.",
         [INT(), UINT("u3", 1, bits=3), ARRAY(2, 1, 4)]),
    case("array_size_overflow", "int[0x40000000] * 4 bytes overflows U32_MAX.",
         [INT(), ARRAY(1, 1, 0x40000000)]),
    case("array_size_just_fits", "char[0xffffffff] fits in U32_MAX.",
         [INT(), INT("char", 1, enc="CHAR"), ARRAY(2, 1, 0xFFFFFFFF)]),
    case("array_of_const_struct_typedef", "const Struct_B o[4] (struct test #2).", [
        INT(), ARRAY(4, 1, 4), STRUCT("A", 68, ["m", 1, 0], ["n", 2, 32], ["o", 8, 288]),
        STRUCT("B", 8, ["m", 1, 0], ["n", 1, 32]), REF("CONST", 1), REF("TYPEDEF", 4, "Struct_B"),
        REF("CONST", 6), ARRAY(7, 1, 4)]),
]

STRUCTS = [
    case("struct_test_1", "struct A with u64, int, char, int[8], int[4][8], enum E (struct test #1).", [
        INT(), UINT("unsigned long long", 8), INT("char", 1), ARRAY(1, 1, 8),
        STRUCT("A", 180, ["m", 2, 0], ["n", 1, 64], ["o", 3, 96], ["p", 4, 128], ["q", 6, 384],
               ["r", 7, 1408]),
        ARRAY(4, 1, 4), ENUM("E", ["E0", 0], ["E1", 1])]),
    case("struct_member_offset_decreasing", "Members out of order (struct test #3 Invalid member offset).",
         [INT(), INT("int64", 8), STRUCT("A", 16, ["m", 1, 64], ["n", 2, 0])]),
    case("struct_anonymous", "Anonymous struct with an anonymous member.",
         [INT(), STRUCT("", 4, ["", 1, 0])]),
    case("struct_invalid_name", "A struct named \"a b\".", [INT(), STRUCT("a b", 4, ["x", 1, 0])]),
    case("struct_member_invalid_name", "A member named \"1x\".", [INT(), STRUCT("s", 4, ["1x", 1, 0])]),
    case("struct_member_name_off_out_of_range", "A member name offset past the strings.",
         [INT(), RAW(0, 0x04000001, 4, 999, 1, 0)]),
    case("struct_member_type_void", "A member of type void.", [INT(), STRUCT("s", 4, ["x", 0, 0])]),
    case("struct_member_type_missing", "A member of type id 42 (absent).",
         [INT(), STRUCT("s", 4, ["x", 42, 0])]),
    case("struct_member_type_above_max", "A member type id above BTF_MAX_TYPE.",
         [INT(), STRUCT("s", 4, ["x", 0x100000, 0])]),
    case("struct_member_exceeds_size", "int at bit 32 in a 4-byte struct.",
         [INT(), STRUCT("s", 4, ["x", 1, 0], ["y", 1, 32])]),
    case("struct_member_bits_offset_beyond", "Member offset past the struct size.",
         [INT(), STRUCT("s", 4, ["x", 1, 40])]),
    case("struct_ptr_member_exceeds", "A pointer at byte 4 of an 8-byte struct.",
         [INT(), PTR(1), STRUCT("s", 8, ["p", 2, 32])]),
    case("struct_ptr_member_unaligned", "A pointer at bit 4.", [INT(), PTR(1), STRUCT("s", 16, ["p", 2, 4])]),
    case("struct_struct_member_unaligned", "A struct member at bit 12.",
         [INT(), STRUCT("in", 4, ["x", 1, 0]), STRUCT("out", 8, ["i", 2, 12])]),
    case("struct_array_member_exceeds", "int[8] in a 16-byte struct.",
         [INT(), ARRAY(1, 1, 8), STRUCT("s", 16, ["a", 2, 0])]),
    case("struct_enum_member_exceeds", "A 4-byte enum at byte 2 of a 4-byte struct.",
         [ENUM("e", ["A", 0]), STRUCT("s", 4, ["e", 1, 16])]),
    case("struct_member_fwd", "A member of forward-declared type.",
         [{"kind": "FWD", "name": "f"}, STRUCT("s", 4, ["x", 1, 0])]),
    case("struct_member_func_proto", "A member of function type.",
         [FUNC_PROTO(0), STRUCT("s", 4, ["x", 1, 0])]),
    case("struct_member_var", "A member of VAR type.", [INT(), VAR("v", 1), STRUCT("s", 4, ["x", 2, 0])]),
    case("struct_member_via_typedef_exceeds", "Member exceeds through a typedef: the log shows the "
         "resolved type id.", [INT("long", 8), REF("TYPEDEF", 1, "l_t"), STRUCT("s", 4, ["x", 2, 0])]),
    case("struct_flexible_array", "A trailing char a[0] at the struct's end.",
         [INT(), INT("char", 1), ARRAY(2, 1, 0), STRUCT("s", 4, ["n", 1, 0], ["a", 3, 32])]),
    case("struct_int_bitfields_nokflag", "Bitfields without kind_flag: ints of 3 bits at offsets 0, 3.",
         [UINT(), UINT("u3", 4, bits=3), STRUCT("s", 4, ["w1", 2, 0], ["w2", 2, 3])]),
    case("struct_nr_copy_bits_exceeds", "A 128-bit int at bit offset 4 (non-kflag) copies 132 bits.",
         [INT("__int128", 16), STRUCT("s", 32, ["x", 1, 4])]),
    case("struct_empty", "struct s {} of size 0.", [STRUCT("s", 0)]),
    case("union_valid", "union { int i; long l; }.",
         [INT(), INT("long", 8), UNION("u", 8, ["i", 1, 0], ["l", 2, 0])]),
    case("union_member_offset", "A union member at a nonzero offset.",
         [INT(), UNION("u", 8, ["i", 1, 0], ["j", 1, 32])]),
    case("struct_float_member", "A double at byte 8.",
         [FLOAT("double", 8), INT(), STRUCT("s", 16, ["i", 2, 0],
                                                                                          ["d", 1, 64])]),
    case("struct_float_member_misaligned", "A double at byte 4.",
         [FLOAT("double", 8), INT(), STRUCT("s", 16, ["i", 2, 0], ["d", 1, 32])]),
    case("struct_bits_offset_exceeds_u32_max", "An INT with bits_offset 8 as a member at bit 0xfffffff8.",
         [INT("i", 2, bits=8, offset=8), STRUCT("s", 0x20000000, ["x", 1, 0xFFFFFFF8])]),
    case("struct_int_bitfield_exceeds", "Non-kind_flag bitfield: a 3-bit INT at bit 30 of 4 bytes.",
         [UINT("u3", 4, bits=3), STRUCT("s", 4, ["x", 1, 30])]),
    case("struct_enum_member_unaligned", "An enum member at bit 4.", [ENUM("e", ["A", 0]),
                                                                     STRUCT("s", 8, ["e", 1, 4])]),
    case("struct_member_typedef_void", "A member of type typedef void: Invalid member.",
         [REF("TYPEDEF", 0, "v_t"), STRUCT("s", 4, ["x", 1, 0])]),
    case("struct_const_ptr_back", "struct A { const struct A *p; }: the const resolves to the pointer.",
         [STRUCT("A", 8, ["p", 2, 0]), REF("CONST", 3), PTR(1)]),
    case("struct_array_of_struct", "struct B { struct A a[2]; } with A declared after B.",
         [INT(), STRUCT("B", 8, ["a", 3, 0]), ARRAY(4, 1, 2), STRUCT("A", 4, ["x", 1, 0])]),
    case("struct_float_member_exceeds", "A long double (16) at byte 8 of 16.",
         [FLOAT("long double", 16), STRUCT("s", 16, ["d", 1, 64])]),
]

KFLAG = [
    case("kflag_bitfields", "kind_flag struct { unsigned a:3, b:5; int c; }.",
         [UINT(), INT(), STRUCT("s", 8, ["a", 1, 0, 3], ["b", 1, 3, 5], ["c", 2, 32])]),
    case("kflag_bitfield_too_wide", "A 33-bit bitfield of a 32-bit int.",
         [UINT(), STRUCT("s", 8, ["a", 1, 0, 33])]),
    case("kflag_base_not_regular", "kind_flag member of a 3-bit INT: Invalid member base type.",
         [UINT("u3", 1, bits=3), STRUCT("s", 4, ["a", 1, 0, 2])]),
    case("kflag_unaligned_non_bitfield", "kind_flag, bitfield_size 0 at bit 4: Invalid member offset.",
         [UINT(), STRUCT("s", 8, ["a", 1, 4, 0], kflag=True)]),
    case("kflag_bitfield_exceeds", "A 16-bit bitfield at bit 24 of a 4-byte struct.",
         [UINT(), STRUCT("s", 4, ["a", 1, 24, 16])]),
    case("kflag_ptr_bitfield", "A pointer cannot be a bitfield.",
         [INT(), PTR(1), STRUCT("s", 8, ["p", 2, 0, 8])]),
    case("kflag_enum_bitfield", "An enum bitfield of 4 bits.", [ENUM("e", ["A", 0], ["B", 1]),
                                                               STRUCT("s", 4, ["e", 1, 0, 4])]),
    case("kflag_enum_bitfield_too_wide", "A 33-bit enum bitfield.", [ENUM("e", ["A", 0]),
                                                                    STRUCT("s", 8, ["e", 1, 0, 33])]),
    case("kflag_enum64_member_counts_32_bits", "kind_flag struct with a plain ENUM64 member in 4 bytes: "
         "the kernel checks 32 bits.",
         [ENUM("e", ["A", 0], kind="ENUM64", size=8), STRUCT("s", 4, ["e", 1, 0], kflag=True)]),
    case("kflag_nr_copy_bits_exceeds", "A 127-bit bitfield of __int128 at bit 7 copies 134 bits.",
         [INT("__int128", 16), STRUCT("s", 32, ["x", 1, 7, 127])]),
    case("kflag_enum_unaligned", "kind_flag enum member (no bitfield) at bit 4.",
         [ENUM("e", ["A", 0]), STRUCT("s", 8, ["e", 1, 4], kflag=True)]),
    case("kflag_array_member", "kind_flag struct with an array member (generic check, no bitfield).",
         [INT(), ARRAY(1, 1, 2), STRUCT("s", 8, ["a", 2, 0], ["b", 1, 32, 0], kflag=True)]),
    case("kflag_array_member_exceeds", "kind_flag struct, int[2] at byte 4 of 8.",
         [INT(), ARRAY(1, 1, 2), STRUCT("s", 8, ["a", 2, 32], kflag=True)]),
    case("kflag_typedef_bitfield", "A bitfield through typedef unsigned int u32.",
         [UINT(), REF("TYPEDEF", 1, "u32"), STRUCT("s", 4, ["a", 2, 0, 7], ["b", 2, 7, 9])]),
    case("kflag_union_bitfield", "kind_flag union with a bitfield member.",
         [UINT(), UNION("u", 4, ["a", 1, 0, 5], ["b", 1, 0])]),
]

ENUMS = [
    case("enum_valid", "enum E { E0, E1 }.", [ENUM("E", ["E0", 0], ["E1", 1])]),
    case("enum_sizes", "ENUMs of sizes 1, 2 and 8.",
         [ENUM("a", ["A", 1], size=1), ENUM("b", ["B", 2], size=2),
                                                      ENUM("c", ["C", 3], size=8)]),
    case("enum_size_3", "Size 3 is not a power of 2.", [ENUM("e", ["A", 0], size=3)]),
    case("enum_size_0", "Size 0.", [ENUM("e", ["A", 0], size=0)]),
    case("enum_size_16", "Size 16 is over 8.", [ENUM("e", ["A", 0], size=16)]),
    case("enum_anonymous", "An anonymous enum.", [ENUM("", ["A", 0])]),
    case("enum_invalid_name", "An enum named \"e-1\".", [ENUM("e-1", ["A", 0])]),
    case("enum_value_anonymous", "An enumerator needs a name.", [ENUM("e", ["", 0])]),
    case("enum_value_name_off_out_of_range", "An enumerator name offset past the strings.",
         [RAW("e", 0x06000001, 4, 4096, 0)]),
    case("enum_value_bad_identifier", "An enumerator named \"A B\".", [ENUM("e", ["A B", 0])]),
    case("enum_signed", "kind_flag ENUM with negative values.", [ENUM("e", ["M", -1], ["N", -2147483648],
                                                                   signed=True)]),
    case("enum_unsigned_big", "Unsigned enumerator 0xffffffff.", [ENUM("e", ["M", 0xFFFFFFFF])]),
    case("enum_vlen_0", "An enum without enumerators (forward enum).", [ENUM("e")]),
    case("enum64_valid", "ENUM64 with a value above 2^32.", [ENUM("e", ["A", 1 << 40], ["B", 2**64 - 1],
                                                                kind="ENUM64", size=8)]),
    case("enum64_signed", "kind_flag ENUM64 with a negative value.", [ENUM("e", ["A", -5], kind="ENUM64",
                                                                         size=8, signed=True)]),
    case("enum64_size_4", "An ENUM64 of size 4 is accepted.", [ENUM("e", ["A", 1], kind="ENUM64", size=4)]),
    case("enum64_size_6", "ENUM64 of size 6.", [ENUM("e", ["A", 1], kind="ENUM64", size=6)]),
    case("enum64_value_anonymous", "An ENUM64 enumerator without name.", [ENUM("e", ["", 1], kind="ENUM64",
                                                                             size=8)]),
    case("fwd_struct", "struct s;", [{"kind": "FWD", "name": "s"}]),
    case("fwd_union", "union u; (kind_flag).", [{"kind": "FWD", "name": "u", "union": True}]),
    case("fwd_anonymous", "A FWD needs a name.", [{"kind": "FWD", "name": ""}]),
    case("fwd_vlen", "FWD with vlen 1.", [{"kind": "FWD", "name": "s", "vlen": 1}]),
    case("fwd_type_nonzero", "FWD's type field must be 0.", [{"kind": "FWD", "name": "s", "size_type": 1}]),
]

FUNCS = [
    case("func_valid", "int main(int a) with static linkage.",
         [INT(), FUNC_PROTO(1, ["a", 1]), FUNC("main", 2)]),
    case("func_global", "Global linkage (vlen 1).", [INT(), FUNC_PROTO(1), FUNC("g", 2, 1)]),
    case("func_extern_linkage", "Linkage 2 (extern) is refused (selftests: func (Non zero vlen), now "
         "\"Invalid func linkage\").", [INT(), FUNC_PROTO(1), FUNC("f", 2, 2)]),
    case("func_anonymous", "A FUNC needs a name.", [INT(), FUNC_PROTO(1), FUNC("", 2)]),
    case("func_bad_name", "A FUNC named \"f()\".", [INT(), FUNC_PROTO(1), FUNC("f()", 2)]),
    case("func_kflag", "FUNC with kind_flag.", [INT(), FUNC_PROTO(1), FUNC("f", 2, kflag=1)]),
    case("func_to_int", "FUNC pointing at an INT (kernel-oracle.md §8).", [INT(), FUNC("main", 1)]),
    case("func_to_missing", "FUNC pointing at id 50.", [INT(), FUNC("main", 50)]),
    case("func_unnamed_arg", "A FUNC's proto arguments must all have names.",
         [INT(), FUNC_PROTO(1, ["", 1]), FUNC("f", 2)]),
    case("func_proto_named", "A FUNC_PROTO must be anonymous.", [INT(), FUNC_PROTO(1, name_off=1)]),
    case("func_proto_kflag", "FUNC_PROTO with kind_flag.", [INT(), FUNC_PROTO(1, kflag=1)]),
    case("func_proto_void", "void (*)(void).", [FUNC_PROTO(0)]),
    case("func_proto_unnamed_args", "A bare proto may leave arguments unnamed.",
         [INT(), FUNC_PROTO(1, ["", 1], ["", 1])]),
    case("func_proto_vararg", "int (*)(int, ...).", [INT(), FUNC_PROTO(1, ["a", 1], ["", 0])]),
    case("func_proto_only_vararg", "int (*)(...).", [INT(), FUNC_PROTO(1, ["", 0])]),
    case("func_proto_named_vararg", "A vararg (type 0) with a name.",
         [INT(), FUNC_PROTO(1, ["a", 1], ["b", 0])]),
    case("func_proto_void_arg_middle", "A void argument before the last one.",
         [INT(), FUNC_PROTO(1, ["", 0], ["a", 1])]),
    case("func_proto_arg_missing", "An argument of type id 77.", [INT(), FUNC_PROTO(1, ["a", 77])]),
    case("func_proto_arg_bad_name", "An argument named \"a b\".", [INT(), FUNC_PROTO(1, ["a b", 1])]),
    case("func_proto_arg_var", "An argument of VAR type.", [INT(), VAR("v", 1), FUNC_PROTO(1, ["a", 2])]),
    case("func_proto_arg_fwd", "An argument of forward-declared struct type (no size).",
         [{"kind": "FWD", "name": "s"}, FUNC_PROTO(0, ["a", 1])]),
    case("func_proto_return_missing", "Return type id 9 absent.", [INT(), FUNC_PROTO(9)]),
    case("func_proto_return_var", "Return type VAR.", [INT(), VAR("v", 1), FUNC_PROTO(2)]),
    case("func_proto_return_fwd", "Return type FWD has no size.",
         [{"kind": "FWD", "name": "s"}, FUNC_PROTO(1)]),
    case("func_proto_return_func_proto", "A function returning a function type.",
         [FUNC_PROTO(0), FUNC_PROTO(1)]),
    case("func_proto_return_struct_later", "Return type is a later struct, resolved on the way.",
         [FUNC_PROTO(2), STRUCT("s", 4, ["x", 3, 0]), INT()]),
    case("func_proto_return_loop", "Return type is a typedef loop: the loop is found from the proto.",
         [FUNC_PROTO(2), REF("TYPEDEF", 3, "a"), REF("TYPEDEF", 2, "b")]),
    case("func_proto_return_const_void", "Returning const void: no size.", [REF("CONST", 0), FUNC_PROTO(1)]),
    case("func_proto_arg_typedef_void", "An argument of type typedef void.", [REF("TYPEDEF", 0, "v"),
                                                                             FUNC_PROTO(0, ["a", 1])]),
    case("func_proto_arg_loop", "An argument type in a CONST loop, found from the proto.",
         [FUNC_PROTO(0, ["a", 2]), REF("CONST", 3), REF("CONST", 2)]),
    case("func_proto_arg_const_ptr", "int f(const char *s).",
         [INT(), INT("char", 1, enc="CHAR"), REF("CONST", 2), PTR(3), FUNC_PROTO(1, ["s", 4]), FUNC("f", 5)]),
]

DATASECS = [
    case("global_data_struct_in_bss", "static struct A t in .bss (global data test #2).", [
        INT(), UINT("unsigned long long", 8), INT("char", 1), ARRAY(1, 1, 8),
        STRUCT("A", 48, ["m", 2, 0], ["n", 1, 64], ["o", 3, 96], ["p", 4, 128]), VAR("t", 5),
        DATASEC(".bss", 48, [6, 0, 48])]),
    case("global_data_int", "static int t in .bss (global data test #3).", [INT(), VAR("t", 1),
                                                                             DATASEC(".bss", 4, [2, 0, 4])]),
    case("var_global_allocated", "VAR linkage 1 (global allocated).", [INT(), VAR("t", 1, 1),
                                                                        DATASEC(".data", 4, [2, 0, 4])]),
    case("var_extern_linkage", "VAR linkage 2 (global data test #4, unsupported linkage).",
         [INT(), VAR("t", 1, 2), DATASEC(".bss", 4, [2, 0, 4])]),
    case("var_void", "A VAR of type void (global data test #5, invalid var type).",
         [VAR("t", 0), DATASEC(".bss", 4, [1, 0, 4])]),
    case("var_fwd_in_datasec", "A VAR of forward-declared union type (global data test #6, invalid var type "
         "(fwd type)).",
         [{"kind": "FWD", "name": "A", "union": True}, VAR("t", 1), DATASEC(".bss", 4, [2, 0, 4])]),
    case("datasec_member_fwd", "The DATASEC names the FWD itself (global data test #7).",
         [{"kind": "FWD", "name": "A", "union": True}, VAR("t", 1), DATASEC(".bss", 4, [1, 0, 4])]),
    case("datasec_var_size_short", "secinfo size 47 for a 48-byte struct (global data test #8, invalid "
         "var size).", [INT(), UINT("unsigned long long", 8), INT("char", 1), ARRAY(1, 1, 8),
                        STRUCT("A", 48, ["m", 2, 0], ["n", 1, 64], ["o", 3, 96], ["p", 4, 128]), VAR("t", 5),
                        DATASEC(".bss", 48, [6, 0, 47])]),
    case("datasec_vsi_larger_than_sec", "secinfo size 48 in a 46-byte section (global data test #9).",
         [INT(), ARRAY(1, 1, 12), VAR("t", 2), DATASEC(".bss", 46, [3, 0, 48])]),
    case("datasec_two_vars", "Two variables at offsets 10 and 58 (global data test #11, multiple section "
         "members).", [INT(), ARRAY(1, 1, 12), VAR("t", 2), VAR("u", 1),
                       DATASEC(".bss", 62, [3, 10, 48], [4, 58, 4])]),
    case("datasec_var_after_sec_quirk", "A VAR defined after its DATASEC is resolved from the DATASEC and "
         "its secinfo size is then not compared with the type size.", [INT(), DATASEC(".bss", 4, [3, 0, 2]),
                                                                        VAR("t", 1)]),
    case("datasec_var_before_sec_short", "The same secinfo with the VAR first: Invalid size.",
         [INT(), VAR("t", 1), DATASEC(".bss", 4, [2, 0, 2])]),
    case("var_anonymous", "A VAR needs a name.", [INT(), VAR("", 1)]),
    case("var_vlen", "VAR with vlen 1.", [INT(), VAR("v", 1, vlen=1)]),
    case("var_kflag", "VAR with kind_flag.", [INT(), VAR("v", 1, kflag=1)]),
    case("var_standalone", "A VAR outside any DATASEC.", [INT(), VAR("v", 1)]),
    case("var_of_var", "A VAR whose type is a VAR.", [INT(), VAR("v", 1), VAR("w", 2)]),
    case("datasec_size_0", "A DATASEC of size 0.", [INT(), VAR("v", 1), DATASEC(".data", 0)]),
    case("datasec_kflag", "DATASEC with kind_flag.",
         [INT(), VAR("v", 1), DATASEC(".data", 4, [2, 0, 4], kflag=1)]),
    case("datasec_anonymous", "A DATASEC needs a name.", [INT(), VAR("v", 1), DATASEC("", 4, [2, 0, 4])]),
    case("datasec_name_space", "Section names only need to be printable: \".data foo/bar\".",
         [INT(), VAR("v", 1), DATASEC(".data foo/bar", 4, [2, 0, 4])]),
    case("datasec_name_control", "A tab in a section name.", [INT(), VAR("v", 1), DATASEC(".data\tx", 4,
                                                                                             [2, 0, 4])]),
    case("datasec_name_nbsp", "Byte 0xA0 (hard space) counts as printable in the kernel.",
         [INT(), VAR("v", 1), DATASEC(".d\xa0", 4, [2, 0, 4])]),
    case("datasec_vsi_type_void", "A secinfo of type 0.",
         [INT(), VAR("v", 1), DATASEC(".data", 4, [0, 0, 4])]),
    case("datasec_vsi_offset_overlap", "The second secinfo starts inside the first.",
         [INT(), VAR("a", 1), VAR("b", 1), DATASEC(".data", 8, [2, 0, 4], [3, 2, 4])]),
    case("datasec_vsi_offset_past_size", "A secinfo at offset == size.", [INT(), VAR("v", 1),
                                                                          DATASEC(".data", 4, [2, 4, 4])]),
    case("datasec_vsi_size_0", "A secinfo of size 0.", [INT(), VAR("v", 1), DATASEC(".data", 4, [2, 0, 0])]),
    case("datasec_vsi_end_past_size", "offset 2 + size 4 in a 4-byte section.",
         [INT(), VAR("v", 1), DATASEC(".data", 4, [2, 2, 4])]),
    case("datasec_member_not_var", "A secinfo naming an INT.", [INT(), DATASEC(".data", 4, [1, 0, 4])]),
    case("datasec_empty", "A DATASEC with no variables.", [DATASEC(".rodata", 8)]),
]

FLOATS = [
    case("float_sizes", "FLOAT of sizes 2, 4, 8, 12 and 16.", [FLOAT("_Float16", 2), FLOAT("float", 4),
                                                               FLOAT("double", 8), FLOAT("x87", 12),
                                                               FLOAT("long double", 16)]),
    case("float_size_1", "FLOAT of size 1.", [FLOAT("f", 1)]),
    case("float_size_32", "FLOAT of size 32.", [FLOAT("f", 32)]),
    case("float_vlen", "FLOAT with vlen 1.", [FLOAT("f", 4, vlen=1)]),
    case("float_kflag", "FLOAT with kind_flag.", [FLOAT("f", 4, kflag=1)]),
    case("float_name_unchecked", "FLOAT names are not validated: \"1.5 float\".", [FLOAT("1.5 float", 4)]),
    case("float_array", "float[4].", [INT(), FLOAT("float", 4), ARRAY(2, 1, 4)]),
]

TAGS = [
    case("decl_tag_struct", "A tag on a struct.", [INT(), STRUCT("s", 4, ["a", 1, 0]), DECL_TAG("tag", 2)]),
    case("decl_tag_member", "A tag on member 0.",
         [INT(), STRUCT("s", 4, ["a", 1, 0]), DECL_TAG("tag", 2, 0)]),
    case("decl_tag_member_out_of_range", "component_idx 1 of a 1-member struct.",
         [INT(), STRUCT("s", 4, ["a", 1, 0]), DECL_TAG("tag", 2, 1)]),
    case("decl_tag_func_arg", "A tag on argument 1 of a function.", [INT(), FUNC_PROTO(1, ["a", 1], ["b", 1]),
                                                                     FUNC("f", 2), DECL_TAG("tag", 3, 1)]),
    case("decl_tag_func_arg_out_of_range", "component_idx 2 of a 2-argument function.",
         [INT(), FUNC_PROTO(1, ["a", 1], ["b", 1]), FUNC("f", 2), DECL_TAG("tag", 3, 2)]),
    case("decl_tag_var", "A tag on a VAR.", [INT(), VAR("v", 1), DECL_TAG("tag", 2)]),
    case("decl_tag_var_component", "A component_idx on a VAR.", [INT(), VAR("v", 1), DECL_TAG("tag", 2, 0)]),
    case("decl_tag_typedef", "A tag on a typedef.", [INT(), REF("TYPEDEF", 1, "t"), DECL_TAG("tag", 2)]),
    case("decl_tag_typedef_component", "A component_idx on a typedef.",
         [INT(), REF("TYPEDEF", 1, "t"), DECL_TAG("tag", 2, 0)]),
    case("decl_tag_on_int", "A tag on an INT.", [INT(), DECL_TAG("tag", 1)]),
    case("decl_tag_on_void", "A tag on void.", [DECL_TAG("tag", 0)]),
    case("decl_tag_on_missing", "A tag on id 30.", [INT(), DECL_TAG("tag", 30)]),
    case("decl_tag_empty_value", "A tag with an empty value.", [INT(), STRUCT("s", 4, ["a", 1, 0]),
                                                                 DECL_TAG("", 2)]),
    case("decl_tag_vlen", "DECL_TAG with vlen 1.",
         [INT(), STRUCT("s", 4, ["a", 1, 0]), DECL_TAG("t", 2, vlen=1)]),
    case("decl_tag_component_minus_2", "component_idx -2.", [INT(), STRUCT("s", 4, ["a", 1, 0]),
                                                             DECL_TAG("t", 2, -2)]),
    case("decl_tag_kflag", "DECL_TAG with kind_flag (an attribute).", [INT(), FUNC_PROTO(1), FUNC("f", 2),
                                                                       DECL_TAG("attr", 3, kflag=1)]),
    case("decl_tag_value_any_chars", "Tag values are not identifiers: \"key:value with spaces\".",
         [INT(), VAR("v", 1), DECL_TAG("key:value with spaces", 2)]),
    case("decl_tag_before_target", "A tag whose struct comes later.", [DECL_TAG("t", 3), INT(),
                                                                      STRUCT("s", 4, ["a", 2, 0])]),
    case("type_tag_valid", "int __tag *p: PTR -> TYPE_TAG -> INT.",
         [INT(), REF("TYPE_TAG", 1, "user"), PTR(2)]),
    case("type_tag_empty_value", "A TYPE_TAG with an empty value.", [INT(), REF("TYPE_TAG", 1, "")]),
    case("type_tag_vlen", "TYPE_TAG with vlen 1.", [INT(), REF("TYPE_TAG", 1, "t", vlen=1)]),
    case("type_tag_kflag", "TYPE_TAG with kind_flag (an attribute) passes check_meta.",
         [INT(), REF("TYPE_TAG", 1, "t", kflag=1), PTR(2)]),
    case("type_tag_then_const", "TYPE_TAG -> CONST -> INT: tags first, accepted.",
         [INT(), REF("CONST", 1), REF("TYPE_TAG", 2, "t"), PTR(3)]),
    case("const_then_type_tag", "CONST -> TYPE_TAG -> INT: Type tags don't precede modifiers.",
         [INT(), REF("TYPE_TAG", 1, "t"), REF("CONST", 2), PTR(3)]),
    case("type_tag_invalid_type", "A TYPE_TAG to a missing id.", [REF("TYPE_TAG", 7, "t")]),
    case("type_tag_loop", "Two TYPE_TAGs pointing at each other.", [REF("TYPE_TAG", 2, "a"),
                                                                   REF("TYPE_TAG", 1, "b")]),
]

TOPICS: dict[str, list[Case]] = {
    "header": HEADER, "strings": STRINGS, "meta": META, "int": INTS, "ptr_modifiers": PTRS, "loops": LOOPS,
    "array": ARRAYS, "struct": STRUCTS, "kflag": KFLAG, "enum_fwd": ENUMS, "func": FUNCS, "datasec": DATASECS,
    "float": FLOATS, "tags": TAGS,
}


def record(c: Case, provenance: dict[str, str]) -> Case:
    """The case with the kernel's verdict as ``expect``."""
    blob = build_blob(c)
    res = btf_load(blob)
    out = copy.deepcopy(c)
    out["blob_sha256"] = hashlib.sha256(blob).hexdigest()
    out["expect"] = {"accept": True} if res.accepted else {"errno": res.errno_name, "message": res.message}
    out["provenance"] = dict(provenance)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="compare with the recorded files; write nothing")
    args = ap.parse_args(argv)
    reason = probe()
    if reason:
        print(f"cannot record: {reason}", file=sys.stderr)
        return 2
    provenance = {"kernel": platform.release(), "date": datetime.date.today().isoformat(),
                  "recorded_by": "bpfcheck gen_btf_corpus.py"}
    names: set[str] = set()
    drift = 0
    counts = {"accept": 0, "reject": 0}
    for topic, cases in TOPICS.items():
        recorded = []
        for c in cases:
            if c["name"] in names:
                raise SystemExit(f"duplicate case name {c['name']}")
            names.add(c["name"])
            r = record(c, provenance)
            counts["accept" if r["expect"].get("accept") else "reject"] += 1
            recorded.append(r)
        path = args.out / f"{topic}.yaml"
        if args.check:
            old = yaml.safe_load(path.read_text()) if path.exists() else []
            old_by = {o["name"]: o for o in old}
            for r in recorded:
                o = old_by.get(r["name"])
                if o is None or o.get("expect") != r["expect"] or o.get("blob_sha256") != r["blob_sha256"]:
                    drift += 1
                    print(f"{topic}/{r['name']}: recorded {o and o.get('expect')} now {r['expect']}")
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(recorded, sort_keys=False, width=110, default_flow_style=None)
        header = (f"# BTF_LOAD cases ({topic}); expectations recorded from the live kernel by\n"
                  "# scripts/gen_btf_corpus.py -- edit the script and regenerate, not this file.\n")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(header + text)
        os.replace(tmp, path)
    print(f"{len(names)} cases: {counts['accept']} accepted, {counts['reject']} rejected"
          + (f"; {drift} differ from the recorded files" if args.check else ""))
    return 1 if drift else 0


if __name__ == "__main__":
    sys.exit(main())
