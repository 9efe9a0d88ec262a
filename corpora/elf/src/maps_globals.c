// SPDX-License-Identifier: MIT
/*
 * maps_globals.c: BTF-defined maps (a hash and an array) together with global data in .data,
 * .bss and .rodata (each a one-element array map; a program reaches a variable with `lddw`
 * map_value plus the variable's offset in the section).
 *
 * Expected results of one run of `update` on the object's initial data (C semantics):
 *
 *   counts (hash u32 -> u64):   key 1 absent -> inserted with rodata_step = 7
 *   slots (array of 4 u32):     slots[2] = data_counter * 3 = 15 (data_counter is still 5)
 *   data_counter (.data):       5 + rodata_step = 12
 *   bss_seen (.bss):            0 + 1 = 1
 *   last_tag (.bss, u64):       = rodata_tag[1] = 0xbeef
 *   r0 = data_counter + bss_seen = 13
 *
 * A second run of `update` in the same environment (maps and globals kept) finds key 1 and
 * adds 7 (counts[1] = 14), sets slots[2] = 12 * 3 = 36, data_counter = 19, bss_seen = 2 and
 * returns 21; `read_counts` then returns counts[1] + slots[2] = 14 + 36 = 50.
 * `read_counts` on the initial data finds no key 1 and returns -1 (r0 = 0xffffffff: the
 * return value is computed in 32-bit registers).
 */
#include "bpfcheck_helpers.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} slots SEC(".maps");

__u64 data_counter = 5;				/* .data */
__u32 bss_seen;					/* .bss */
__u64 last_tag;					/* .bss */
const volatile __u32 rodata_step = 7;		/* .rodata */
const volatile __u64 rodata_tag[2] = {0xdead, 0xbeef};	/* .rodata */

SEC("socket") int update(void *ctx)
{
	__u32 key = 1, idx = 2;
	__u64 init = rodata_step;
	__u64 *count;
	__u32 *slot;

	count = bpf_map_lookup_elem(&counts, &key);
	if (count)
		*count += rodata_step;
	else
		bpf_map_update_elem(&counts, &key, &init, BPF_ANY);

	slot = bpf_map_lookup_elem(&slots, &idx);
	if (slot)
		*slot = data_counter * 3;

	data_counter += rodata_step;
	bss_seen += 1;
	last_tag = rodata_tag[1];
	return data_counter + bss_seen;
}

SEC("socket") int read_counts(void *ctx)
{
	__u32 key = 1, idx = 2;
	__u64 *count = bpf_map_lookup_elem(&counts, &key);
	__u32 *slot = bpf_map_lookup_elem(&slots, &idx);

	if (!count || !slot)
		return -1;
	return *count + *slot;
}

char _license[] SEC("license") = "GPL";
