"""BTF (BPF Type Format): model, kernel-faithful validation, builder, .BTF.ext, bpftool-style dump.

- :func:`parse` validates a blob as the kernel's ``BTF_LOAD`` does (kernel/bpf/btf.c
  ``btf_parse``) and returns a :class:`Btf`; a rejected blob raises :class:`BtfError` with the
  kernel's errno and its last log line (``kernel_message``).
- :class:`BtfBuilder` assembles types (``add_int``, ``add_struct``, …) and serializes them.
- :func:`btf_ext_parse` / :class:`BtfExtBuilder` handle ``.BTF.ext`` func_info and line_info.
- :func:`format_value` prints a map value as ``bpftool map dump`` does with BTF.
- :func:`build_blob` turns a corpus case (``corpora/btf/*.yaml``) into its blob.
"""

from .builder import BtfBuilder
from .dumper import format_map_dump, format_value
from .ext import BtfExt, BtfExtBuilder, BtfExtError, ExtSection, FuncInfo, LineInfo, btf_ext_parse
from .model import (
    BTF_MAGIC,
    BTF_VERSION,
    FUNC_EXTERN,
    FUNC_GLOBAL,
    FUNC_STATIC,
    INT_BOOL,
    INT_CHAR,
    INT_SIGNED,
    VAR_GLOBAL_ALLOCATED,
    VAR_GLOBAL_EXTERN,
    VAR_STATIC,
    Array,
    Btf,
    BtfType,
    Const,
    Datasec,
    DeclTag,
    Enum,
    Enum64,
    EnumValue,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Kind,
    Member,
    Param,
    Ptr,
    RawType,
    Restrict,
    StringTable,
    Struct,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarSecinfo,
    Volatile,
)
from .parse import BtfError, last_log_line, parse
from .spec import build_blob
from .verifier import ENOTSUPP, errno_name

__all__ = [
    "BTF_MAGIC", "BTF_VERSION", "ENOTSUPP", "FUNC_EXTERN", "FUNC_GLOBAL", "FUNC_STATIC", "INT_BOOL",
    "INT_CHAR", "INT_SIGNED", "VAR_GLOBAL_ALLOCATED", "VAR_GLOBAL_EXTERN", "VAR_STATIC", "Array", "Btf",
    "BtfBuilder", "BtfError", "BtfExt", "BtfExtBuilder", "BtfExtError", "BtfType", "Const", "Datasec",
    "DeclTag", "Enum", "Enum64", "EnumValue", "ExtSection", "Float", "Func", "FuncInfo", "FuncProto", "Fwd",
    "Int", "Kind", "LineInfo", "Member", "Param", "Ptr", "RawType", "Restrict", "StringTable", "Struct",
    "TypeTag", "Typedef", "Union", "Var", "VarSecinfo", "Volatile", "btf_ext_parse", "build_blob",
    "errno_name", "format_map_dump", "format_value", "last_log_line", "parse",
]
