"""Context layouts: offsets against the kernel's own description of the structs.

Static facts come from ../shared/reference/kernel-oracle.md §2 (Linux 6.18: sizeof(struct
__sk_buff) 192, len@0, mark@8, data@76, data_end@80; sizeof(struct xdp_md) 24, data@0,
data_end@4). The live check reads the running kernel's BTF with our BTF parser.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reference_vm.contexts import LAYOUTS, PACKET_BASE, build_context
from reference_vm.memory import Memory
from reference_vm.program import ProgType

VMLINUX = Path("/sys/kernel/btf/vmlinux")


def test_layouts_match_kernel_oracle_facts() -> None:
    skb = LAYOUTS[ProgType.SCHED_CLS]
    assert skb.size == 192
    assert [(skb.field(n).offset, skb.field(n).size) for n in ("len", "mark", "data", "data_end")] == [
        (0, 4), (8, 4), (76, 4), (80, 4)]
    xdp = LAYOUTS[ProgType.XDP]
    assert xdp.size == 24 and (xdp.field("data").offset, xdp.field("data_end").offset) == (0, 4)


def test_packet_pointers_follow_test_run() -> None:
    packet = bytes(range(20))
    tc = build_context(ProgType.SCHED_CLS, Memory(), packet=packet)
    assert tc.pointer_fields[76] == PACKET_BASE and tc.pointer_fields[80] == PACKET_BASE + 20
    # socket filters see the packet after the Ethernet header (kernel-oracle.md P4: len - 14)
    sf = build_context(ProgType.SOCKET_FILTER, Memory(), packet=packet)
    assert sf.pointer_fields[76] == PACKET_BASE + 14 and sf.packet_len == 6


@pytest.mark.skipif(not VMLINUX.exists(), reason="no /sys/kernel/btf/vmlinux on this machine")
@pytest.mark.slow
def test_layouts_match_the_running_kernels_btf() -> None:
    from reference_vm.btf.model import Struct
    from reference_vm.btf.parse import parse

    btf = parse(VMLINUX.read_bytes())
    for layout in {lay.struct: lay for lay in LAYOUTS.values() if lay.fields}.values():
        struct = btf.type_by_id(btf.find(layout.struct, Struct))
        assert struct is not None and struct.size == layout.size, layout.struct
        named = {m.name: m.bit_offset // 8 for m in struct.members if m.name}
        for f in layout.fields:
            if f.name in named:
                assert named[f.name] == f.offset, (layout.struct, f.name)
