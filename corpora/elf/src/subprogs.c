// SPDX-License-Identifier: MIT
/*
 * subprogs.c: a small library of `static __noinline` functions in .text, called (bpf-to-bpf,
 * `call` src 1 with an R_BPF_64_32 relocation) from two socket programs. As libbpf does, the
 * loader appends to each program its own copy of every .text function it reaches.
 *
 * The inputs come from a .data array (not constants, so clang cannot fold the calls away).
 * Expected results (C semantics, u32 arithmetic):
 *
 *   entry sum_small:  sum_of_squares(3, 4)                  = 9 + 16               = 25
 *   entry sum_mixed:  sum_of_squares(10, 20) - square(3)
 *                       + clamp(1000, 0, 255)               = 100 + 400 - 9 + 255  = 746
 *   calls (.bss) counts the calls of square(): 2 in a run of sum_small, 3 in a run of
 *   sum_mixed (each run starts from the object's initial data).
 */
#include "bpfcheck_helpers.h"

__u32 inputs[4] = {3, 4, 10, 20};	/* .data */
__u32 calls;				/* .bss */

static __noinline __u32 square(__u32 x)
{
	calls += 1;
	return x * x;
}

static __noinline __u32 sum_of_squares(__u32 a, __u32 b)
{
	return square(a) + square(b);
}

static __noinline __u32 clamp(__u32 x, __u32 lo, __u32 hi)
{
	if (x < lo)
		return lo;
	if (x > hi)
		return hi;
	return x;
}

SEC("socket") int sum_small(void *ctx)
{
	return sum_of_squares(inputs[0], inputs[1]);
}

SEC("socket") int sum_mixed(void *ctx)
{
	__u32 s = sum_of_squares(inputs[2], inputs[3]);

	s -= square(inputs[0]);
	return s + clamp(inputs[2] * 100, 0, 255);
}

char _license[] SEC("license") = "GPL";
