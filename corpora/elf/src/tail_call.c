// SPDX-License-Identifier: MIT
/*
 * tail_call.c: a dispatch table of tc programs in a BTF-defined BPF_MAP_TYPE_PROG_ARRAY whose
 * slots are filled statically (libbpf: `.values` of a prog array, relocations in .rel.maps).
 *
 * Expected results (derived from the C below and Linux's tail call rules: bpf_tail_call jumps
 * into the program in the slot and does not return; an empty slot or an index >= max_entries
 * makes it fail and execution continues after it; at most MAX_TAIL_CALL_CNT = 33 tail calls
 * per run, include/linux/bpf.h):
 *
 *   entry dispatch        selector = 2 (.data)  -> classify_two: r0 = 102, hits = 1
 *   entry dispatch_empty  slot 1 is empty        -> r0 = 1
 *   entry dispatch_oob    index 7 >= 4           -> r0 = 2
 *   entry classify_zero   (run directly)         -> r0 = 100
 *   entry chain           runs once + 33 tail calls into itself -> chain_runs = 34, r0 = 34
 */
#include "bpfcheck_helpers.h"

SEC("tc") int classify_zero(void *ctx);
SEC("tc") int classify_two(void *ctx);
SEC("tc") int chain(void *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, int (void *));
} jmp_table SEC(".maps") = {
	.values = {
		[0] = (void *)&classify_zero,
		[2] = (void *)&classify_two,
		[3] = (void *)&chain,
	},
};

__u32 selector = 2;	/* .data */
__u32 hits;		/* .bss */
__u32 chain_runs;	/* .bss */

SEC("tc") int classify_zero(void *ctx)
{
	return 100;
}

SEC("tc") int classify_two(void *ctx)
{
	hits += 1;
	return 102;
}

SEC("tc") int chain(void *ctx)
{
	chain_runs += 1;
	bpf_tail_call(ctx, &jmp_table, 3);
	return chain_runs;
}

SEC("tc") int dispatch(void *ctx)
{
	bpf_tail_call(ctx, &jmp_table, selector);
	return 0;
}

SEC("tc") int dispatch_empty(void *ctx)
{
	bpf_tail_call(ctx, &jmp_table, 1);
	return 1;
}

SEC("tc") int dispatch_oob(void *ctx)
{
	bpf_tail_call(ctx, &jmp_table, 7);
	return 2;
}

char _license[] SEC("license") = "GPL";
