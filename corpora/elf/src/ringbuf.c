// SPDX-License-Identifier: MIT
/*
 * ringbuf.c: an XDP program producing into a BPF_MAP_TYPE_RINGBUF with the three producer
 * helpers: reserve + submit, output (a copy), reserve + discard.
 *
 * Expected results (kernel/bpf/ringbuf.c: a consumer sees submitted and output records in
 * order, each with the length the producer gave; discarded records are skipped):
 *
 *   entry produce: r0 = XDP_PASS = 2; produced (.bss) = 3
 *   records, as hex, in order:
 *     01 00 00 00  cd ab 00 00  88 77 66 55 44 33 22 11   (struct event {1, 0xabcd, tag})
 *     08 07 06 05 04 03 02 01                               (the u64 0x0102030405060708)
 *     62 70 66 21 00                                         ("bpf!" and its NUL, 5 bytes)
 */
#include "bpfcheck_helpers.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct event {
	__u32 seq;
	__u32 value;
	__u64 tag;
};

__u32 produced;		/* .bss */

SEC("xdp") int produce(void *ctx)
{
	struct event *e;
	__u64 word = 0x0102030405060708ULL;
	char text[5] = "bpf!";
	void *scratch;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->seq = 1;
	e->value = 0xabcd;
	e->tag = 0x1122334455667788ULL;
	bpf_ringbuf_submit(e, 0);
	produced += 1;

	if (bpf_ringbuf_output(&events, &word, sizeof(word), 0) == 0)
		produced += 1;

	scratch = bpf_ringbuf_reserve(&events, 16, 0);
	if (scratch)
		bpf_ringbuf_discard(scratch, 0);

	if (bpf_ringbuf_output(&events, text, sizeof(text), 0) == 0)
		produced += 1;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
