"""What the verifier knows about program types: context access rules, helper availability,
privilege, return-value rules, packet access. Facts from Linux 6.18 (net/core/filter.c
``*_is_valid_access``, ``*_func_proto``; kernel/trace/bpf_trace.c), checked against the live
kernel by a sweep of every (offset, size, read/write) context access (docs/verifier.md).

Context layouts (offsets and sizes) are those of :mod:`reference_vm.contexts`; the rules say
which bytes may be read or written with which sizes and which loads yield packet pointers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..contexts import LAYOUTS
from ..program import ProgType
from .state import T

#: Linux prog type numbers (``enum bpf_prog_type``).
PROG_TYPE_IDS = {"socket_filter": 1, "sched_cls": 3, "xdp": 6, "raw_tracepoint": 17, "raw": 1}


@dataclass(frozen=True)
class Region:
    """Bytes [start, end) of the context: sizes allowed for reads and writes, and the register
    type a (4- or 8-byte) read yields when it is not a scalar."""

    start: int
    end: int
    read: frozenset[int] = frozenset()
    write: frozenset[int] = frozenset()
    ptr: T | None = None
    maybe_null: bool = False


def _r(
    start: int,
    end: int,
    read: tuple[int, ...] = (),
    write: tuple[int, ...] = (),
    ptr: T | None = None,
    maybe_null: bool = False,
) -> Region:
    return Region(start, end, frozenset(read), frozenset(write), ptr, maybe_null)


NARROW = (1, 2, 4)
ALL = (1, 2, 4, 8)

# __sk_buff (struct layout in reference_vm.contexts, LAYOUTS[SOCKET_FILTER]).
_SKB_COMMON = (
    _r(0, 48, NARROW),
    _r(48, 68, ALL, ALL),
    _r(68, 72, NARROW),
    _r(84, 88, NARROW),
    _r(164, 168, NARROW),
    _r(168, 176, (8,), ptr=T.SOCK_COMMON, maybe_null=True),
    _r(176, 180, NARROW),
)
CTX_RULES: dict[str, tuple[Region, ...]] = {
    # sk_filter_is_valid_access: no tc_classid, data, data_meta, tstamp, wire_len, hwtstamp;
    # writes only to cb[].
    "socket_filter": _SKB_COMMON,
    # tc_cls_act_is_valid_access: + tc_classid, data/data_end/data_meta (4-byte, packet
    # pointers), tstamp, wire_len, tstamp_type, hwtstamp; writes to mark, queue_mapping,
    # priority, tc_index, cb[], tc_classid, tstamp.
    "sched_cls": _SKB_COMMON
    + (
        _r(8, 16, (), (4,)),
        _r(32, 36, (), (4,)),
        _r(44, 48, (), (4,)),
        _r(72, 76, NARROW, (4,)),
        _r(76, 80, (4,), ptr=T.PKT),
        _r(80, 84, (4,), ptr=T.PKT_END),
        _r(140, 144, (4,), ptr=T.PKT_META),
        _r(152, 160, (8,), (8,)),
        _r(160, 164, NARROW),
        _r(180, 181, (1,)),
        _r(184, 192, (8,)),
    ),
    # xdp_is_valid_access: data, data_end, data_meta, ingress_ifindex, rx_queue_index (4-byte reads).
    "xdp": (
        _r(0, 4, (4,), ptr=T.PKT),
        _r(4, 8, (4,), ptr=T.PKT_END),
        _r(8, 12, (4,), ptr=T.PKT_META),
        _r(12, 20, (4,)),
    ),
    # raw_tp_prog_is_valid_access: u64 args[12], aligned reads of any size.
    "raw_tracepoint": (_r(0, 96, ALL),),
}
CTX_RULES["raw"] = CTX_RULES["socket_filter"]


def ctx_size(prog_type: str) -> int:
    layout = LAYOUTS.get(ProgType("socket_filter" if prog_type == "raw" else prog_type))
    return layout.size if layout is not None else 0


def ctx_access(prog_type: str, off: int, size: int, write: bool) -> Region | None:
    """The rule allowing this context access, or None (``invalid bpf_context access``)."""
    if off < 0 or size <= 0 or off % size:
        return None
    for reg in CTX_RULES.get(prog_type, ()):
        if reg.start <= off and off + size <= reg.end and size in (reg.write if write else reg.read):
            return reg
    return None


#: Helpers that need CAP_PERFMON (bpf_base_func_proto): unavailable in the CAP_BPF-only mode.
PERFMON_HELPERS = frozenset({6, 16, 113})
#: Helpers only some program types get.
CGROUP_ONLY_HELPERS = frozenset({81})
#: Program types whose loading needs CAP_PERFMON/CAP_SYS_ADMIN (EPERM in the CAP_BPF mode).
TRACING_TYPES = frozenset({"raw_tracepoint"})
#: ``may_access_skb``: LD_ABS/LD_IND allowed.
SKB_TYPES = frozenset({"socket_filter", "sched_cls", "raw"})
#: ``may_access_direct_pkt_data`` for writes.
PKT_WRITE_TYPES = frozenset({"sched_cls", "xdp"})


def helper_available(prog_type: str, helper_id: int, privileged: bool) -> bool:
    if helper_id in CGROUP_ONLY_HELPERS:
        return False
    if not privileged and helper_id in PERFMON_HELPERS:
        return False
    return True


#: ``___BPF_FUNC_MAPPER`` names (include/uapi/linux/bpf.h), by id; __BPF_FUNC_MAX_ID = 212.
HELPER_NAMES = (
    "unspec map_lookup_elem map_update_elem map_delete_elem probe_read ktime_get_ns trace_printk "
    "get_prandom_u32 get_smp_processor_id skb_store_bytes l3_csum_replace l4_csum_replace tail_call "
    "clone_redirect get_current_pid_tgid get_current_uid_gid get_current_comm get_cgroup_classid "
    "skb_vlan_push skb_vlan_pop skb_get_tunnel_key skb_set_tunnel_key perf_event_read redirect "
    "get_route_realm perf_event_output skb_load_bytes get_stackid csum_diff skb_get_tunnel_opt "
    "skb_set_tunnel_opt skb_change_proto skb_change_type skb_under_cgroup get_hash_recalc "
    "get_current_task probe_write_user current_task_under_cgroup skb_change_tail skb_pull_data "
    "csum_update set_hash_invalid get_numa_node_id skb_change_head xdp_adjust_head probe_read_str "
    "get_socket_cookie get_socket_uid set_hash setsockopt skb_adjust_room redirect_map sk_redirect_map "
    "sock_map_update xdp_adjust_meta perf_event_read_value perf_prog_read_value getsockopt "
    "override_return sock_ops_cb_flags_set msg_redirect_map msg_apply_bytes msg_cork_bytes "
    "msg_pull_data bind xdp_adjust_tail skb_get_xfrm_state get_stack skb_load_bytes_relative "
    "fib_lookup sock_hash_update msg_redirect_hash sk_redirect_hash lwt_push_encap "
    "lwt_seg6_store_bytes lwt_seg6_adjust_srh lwt_seg6_action rc_repeat rc_keydown skb_cgroup_id "
    "get_current_cgroup_id get_local_storage sk_select_reuseport skb_ancestor_cgroup_id "
    "sk_lookup_tcp sk_lookup_udp sk_release map_push_elem map_pop_elem map_peek_elem msg_push_data "
    "msg_pop_data rc_pointer_rel spin_lock spin_unlock sk_fullsock tcp_sock skb_ecn_set_ce "
    "get_listener_sock skc_lookup_tcp tcp_check_syncookie sysctl_get_name sysctl_get_current_value "
    "sysctl_get_new_value sysctl_set_new_value strtol strtoul sk_storage_get sk_storage_delete "
    "send_signal tcp_gen_syncookie skb_output probe_read_user probe_read_kernel probe_read_user_str "
    "probe_read_kernel_str tcp_send_ack send_signal_thread jiffies64 read_branch_records "
    "get_ns_current_pid_tgid xdp_output get_netns_cookie get_current_ancestor_cgroup_id sk_assign "
    "ktime_get_boot_ns seq_printf seq_write sk_cgroup_id sk_ancestor_cgroup_id ringbuf_output "
    "ringbuf_reserve ringbuf_submit ringbuf_discard ringbuf_query csum_level skc_to_tcp6_sock "
    "skc_to_tcp_sock skc_to_tcp_timewait_sock skc_to_tcp_request_sock skc_to_udp6_sock "
    "get_task_stack load_hdr_opt store_hdr_opt reserve_hdr_opt inode_storage_get "
    "inode_storage_delete d_path copy_from_user snprintf_btf seq_printf_btf skb_cgroup_classid "
    "redirect_neigh per_cpu_ptr this_cpu_ptr redirect_peer task_storage_get task_storage_delete "
    "get_current_task_btf bprm_opts_set ktime_get_coarse_ns ima_inode_hash sock_from_file check_mtu "
    "for_each_map_elem snprintf sys_bpf btf_find_by_name_kind sys_close timer_init "
    "timer_set_callback timer_start timer_cancel get_func_ip get_attach_cookie task_pt_regs "
    "get_branch_snapshot trace_vprintk skc_to_unix_sock kallsyms_lookup_name find_vma loop strncmp "
    "get_func_arg get_func_ret get_func_arg_cnt get_retval set_retval xdp_get_buff_len "
    "xdp_load_bytes xdp_store_bytes copy_from_user_task skb_set_tstamp ima_file_hash kptr_xchg "
    "map_lookup_percpu_elem skc_to_mptcp_sock dynptr_from_mem ringbuf_reserve_dynptr "
    "ringbuf_submit_dynptr ringbuf_discard_dynptr dynptr_read dynptr_write dynptr_data "
    "tcp_raw_gen_syncookie_ipv4 tcp_raw_gen_syncookie_ipv6 tcp_raw_check_syncookie_ipv4 "
    "tcp_raw_check_syncookie_ipv6 ktime_get_tai_ns user_ringbuf_drain cgrp_storage_get "
    "cgrp_storage_delete"
).split()
BPF_FUNC_MAX_ID = len(HELPER_NAMES)
assert BPF_FUNC_MAX_ID == 212


def func_id_name(helper_id: int) -> str:
    """``func_id_name``: ``bpf_map_lookup_elem``, or ``unknown`` out of range."""
    if 0 <= helper_id < BPF_FUNC_MAX_ID:
        return "bpf_" + HELPER_NAMES[helper_id]
    return "unknown"
