"""Program contexts: what r1 points to for each program type, as typed memory regions.

Each :class:`ContextLayout` gives the UAPI struct a program type sees (offsets and sizes read
from the kernel's BTF, ``/sys/kernel/btf/vmlinux`` of Linux 6.18), which fields are packet
pointers and what the program's return value means. :func:`build_context` lays out a context
and its packet in a run's memory.

The verifier rewrites context accesses (``convert_ctx_access``): the UAPI declares
``__sk_buff.data`` and ``xdp_md.data``/``data_end``/``data_meta`` as ``__u32``, yet a 4-byte
load of them yields a full 64-bit packet pointer. The interpreter models this with
*pointer fields*: a load of one of those offsets through the unmodified context pointer gives
the pointer (:attr:`ContextInstance.pointer_fields`). ``__bpf_md_ptr`` fields (``sk``,
``flow_keys``, ``optval``) are 8 bytes wide and simply hold the address.

Modelled values follow ``net/bpf/test_run.c`` (BPF_PROG_TEST_RUN): for socket filters the
Ethernet header is pulled (``len`` = packet length − 14, ``data`` after it; kernel-oracle.md
P4), for tc programs ``data`` is the Ethernet header; ``protocol`` is the EtherType as
``eth_type_trans`` stores it (big-endian in the low 16 bits); ``ifindex`` is the loopback
device (1). Fields not listed read as zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .memory import Memory, Region
from .program import ProgType

#: Where contexts and packets live (above the stack, below the kernel-half addresses).
CTX_BASE = 0x0000_7FFF_8000_0000
PACKET_BASE = 0x0000_7FFF_9000_0000
#: Headroom before the packet, as XDP_PACKET_HEADROOM in net/bpf/test_run.c.
XDP_PACKET_HEADROOM = 256
ETH_HLEN = 14
LOOPBACK_IFINDEX = 1


@dataclass(frozen=True)
class CtxField:
    name: str
    offset: int
    size: int
    kind: str = "value"  # value | data | data_end | data_meta | ptr (a 64-bit address)


@dataclass(frozen=True)
class ContextLayout:
    """The context struct of one program type (offsets from Linux 6.18's BTF)."""

    prog_type: ProgType
    struct: str
    size: int
    fields: tuple[CtxField, ...] = ()
    returns: str = ""
    writable: bool = False  # the whole context may be written (syscall programs)

    def field(self, name: str) -> CtxField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


_SKB = (CtxField("len", 0, 4), CtxField("pkt_type", 4, 4), CtxField("mark", 8, 4),
        CtxField("queue_mapping", 12, 4), CtxField("protocol", 16, 4), CtxField("ifindex", 40, 4),
        CtxField("cb", 48, 20), CtxField("hash", 68, 4), CtxField("tc_classid", 72, 4),
        CtxField("data", 76, 4, "data"), CtxField("data_end", 80, 4, "data_end"),
        CtxField("data_meta", 140, 4, "data_meta"), CtxField("flow_keys", 144, 8, "ptr"),
        CtxField("tstamp", 152, 8), CtxField("wire_len", 160, 4), CtxField("sk", 168, 8, "ptr"))
_XDP = (CtxField("data", 0, 4, "data"), CtxField("data_end", 4, 4, "data_end"),
        CtxField("data_meta", 8, 4, "data_meta"), CtxField("ingress_ifindex", 12, 4),
        CtxField("rx_queue_index", 16, 4), CtxField("egress_ifindex", 20, 4))

LAYOUTS: dict[ProgType, ContextLayout] = {
    ProgType.SOCKET_FILTER: ContextLayout(ProgType.SOCKET_FILTER, "__sk_buff", 192, _SKB,
                                          "bytes of the packet to keep; 0 drops it"),
    ProgType.SCHED_CLS: ContextLayout(ProgType.SCHED_CLS, "__sk_buff", 192, _SKB,
                                      "TC_ACT_*: 0 OK, 2 SHOT, 7 REDIRECT, -1 UNSPEC"),
    ProgType.FLOW_DISSECTOR: ContextLayout(ProgType.FLOW_DISSECTOR, "__sk_buff", 192, _SKB,
                                           "BPF_OK (0) or BPF_DROP (2); results in flow_keys"),
    ProgType.XDP: ContextLayout(ProgType.XDP, "xdp_md", 24, _XDP,
                                "XDP_ABORTED 0, XDP_DROP 1, XDP_PASS 2, XDP_TX 3, XDP_REDIRECT 4"),
    ProgType.SK_LOOKUP: ContextLayout(ProgType.SK_LOOKUP, "bpf_sk_lookup", 72, (
        CtxField("sk", 0, 8, "ptr"), CtxField("family", 8, 4), CtxField("protocol", 12, 4),
        CtxField("remote_ip4", 16, 4), CtxField("remote_ip6", 20, 16), CtxField("remote_port", 36, 4),
        CtxField("local_ip4", 40, 4), CtxField("local_ip6", 44, 16), CtxField("local_port", 60, 4),
        CtxField("ingress_ifindex", 64, 4)), "SK_DROP 0, SK_PASS 1"),
    ProgType.CGROUP_SOCKOPT: ContextLayout(ProgType.CGROUP_SOCKOPT, "bpf_sockopt", 40, (
        CtxField("sk", 0, 8, "ptr"), CtxField("optval", 8, 8, "ptr"), CtxField("optval_end", 16, 8, "ptr"),
        CtxField("level", 24, 4), CtxField("optname", 28, 4), CtxField("optlen", 32, 4),
        CtxField("retval", 36, 4)), "1 proceed, 0 reject with EPERM"),
    ProgType.CGROUP_SYSCTL: ContextLayout(ProgType.CGROUP_SYSCTL, "bpf_sysctl", 8, (
        CtxField("write", 0, 4), CtxField("file_pos", 4, 4)), "1 proceed, 0 reject with EPERM"),
    ProgType.RAW_TRACEPOINT: ContextLayout(ProgType.RAW_TRACEPOINT, "u64 args[]", 96, (),
                                           "ignored"),
    ProgType.TRACING: ContextLayout(ProgType.TRACING, "u64 args[]", 96, (),
                                    "0 (fmod_ret: non-zero replaces the traced function's return)"),
    ProgType.LSM: ContextLayout(ProgType.LSM, "u64 args[]", 96, (), "0 allows, -errno denies"),
    ProgType.SYSCALL: ContextLayout(ProgType.SYSCALL, "caller buffer", 0, (), "returned to the caller",
                                    writable=True),
}


@dataclass
class ContextInstance:
    """A context laid out in memory: r1 = ``address``; ``pointer_fields`` maps the offsets of the
    converted ``__u32`` packet-pointer fields to the 64-bit pointers a load of them yields."""

    address: int
    layout: ContextLayout | None
    pointer_fields: dict[int, int] = field(default_factory=dict)
    packet: int = 0
    packet_len: int = 0


def build_context(prog_type: ProgType | str, memory: Memory, *, packet: bytes | None = None,
                  args: Sequence[int] = (), raw: bytes | None = None) -> ContextInstance:
    """Lay out the context of ``prog_type`` (and its packet) in ``memory``.

    ``packet`` feeds skb and XDP programs; ``args`` tracing-style programs (``u64`` each);
    ``raw`` the syscall program's buffer, or raw context bytes for the other struct types.
    """
    pt = ProgType(prog_type)
    layout = LAYOUTS.get(pt)
    if layout is None:
        raise ValueError(f"no context layout for program type {pt.value!r}")
    if not layout.fields:  # u64 argument arrays and raw buffers
        data = bytearray(raw or b"".join((a & (1 << 64) - 1).to_bytes(8, "little") for a in args))
        memory.add(Region("ctx", CTX_BASE, data, writable=layout.writable))
        return ContextInstance(CTX_BASE, layout)
    ctx = bytearray(layout.size)
    if raw:
        ctx[:len(raw)] = raw[:layout.size]
    inst = ContextInstance(CTX_BASE, layout)
    if packet is not None:
        headroom = XDP_PACKET_HEADROOM if pt is ProgType.XDP else 0
        memory.add(Region("packet", PACKET_BASE - headroom, bytearray(headroom) + bytearray(packet)))
        start = PACKET_BASE
        if pt is ProgType.SOCKET_FILTER:  # eth_type_trans pulled the L2 header (kernel-oracle P4)
            start += min(ETH_HLEN, len(packet))
        end = PACKET_BASE + len(packet)
        inst.packet, inst.packet_len = start, end - start
        for f in layout.fields:
            if f.kind in ("data", "data_meta"):
                inst.pointer_fields[f.offset] = start
            elif f.kind == "data_end":
                inst.pointer_fields[f.offset] = end
        if layout.struct == "__sk_buff":
            _put(ctx, layout.field("len"), end - start)
            if len(packet) >= ETH_HLEN:  # eth_type_trans: EtherType, network byte order
                _put(ctx, layout.field("protocol"), int.from_bytes(packet[12:14], "little"))
            _put(ctx, layout.field("ifindex"), LOOPBACK_IFINDEX)
        elif pt is ProgType.XDP:
            _put(ctx, layout.field("ingress_ifindex"), LOOPBACK_IFINDEX)
    memory.add(Region("ctx", CTX_BASE, ctx, writable=True))
    return inst


def _put(ctx: bytearray, f: CtxField, value: int) -> None:
    ctx[f.offset:f.offset + f.size] = (value & ((1 << (8 * f.size)) - 1)).to_bytes(f.size, "little")
