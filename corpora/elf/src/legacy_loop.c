// SPDX-License-Identifier: MIT
/*
 * legacy_loop.c: a map defined the legacy way (struct bpf_map_def in section "maps") and a
 * bpf_loop callback: `add_square` is a .text subprogram whose address the program loads
 * (lddw with an R_BPF_64_64 relocation against .text: libbpf's RELO_SUBPROG_ADDR, which
 * becomes `lddw src 4`, BPF_PSEUDO_FUNC).
 *
 * Expected results (C semantics; bpf_loop, kernel/bpf/bpf_iter.c, calls the callback with
 * index 0, 1, ... while it returns 0 and returns the number of calls):
 *
 *   entry loop_sum: sum = 0 + 1 + 4 + 9 + 16 = 30, bpf_loop returns 5
 *                   legacy_counts[1] = 30, r0 = 30 + 5 = 35
 */
#include "bpfcheck_helpers.h"

struct bpf_map_def SEC("maps") legacy_counts = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 2,
};

struct loop_ctx {
	__u64 sum;
};

static long add_square(__u32 index, void *data)
{
	struct loop_ctx *c = data;

	c->sum += (__u64)index * index;
	return 0;
}

SEC("socket") int loop_sum(void *skb)
{
	struct loop_ctx c = {0};
	__u32 key = 1;
	__u64 *slot;
	long n;

	n = bpf_loop(5, add_square, &c, 0);
	slot = bpf_map_lookup_elem(&legacy_counts, &key);
	if (slot)
		*slot = c.sum;
	return c.sum + n;
}

char _license[] SEC("license") = "GPL";
