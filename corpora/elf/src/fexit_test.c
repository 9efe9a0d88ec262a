// SPDX-License-Identifier: MIT
/*
 * fexit_test.c: fexit programs on the kernel's test functions (net/bpf/test_run.c), in the
 * manner of the kernel selftest tools/testing/selftests/bpf/progs/fexit_test.c, written
 * without its headers: a tracing program gets r1 = a u64 array holding the traced function's
 * arguments and then (fexit) its return value.
 *
 * BPF_PROG_TEST_RUN of an fexit program (bpf_prog_test_run_tracing) calls
 * bpf_fentry_test1(1) = 2, bpf_fentry_test2(2, 3) = 5, bpf_fentry_test3(4, 5, 6) = 15 (and
 * test4..test10, which nothing here traces), and reports retval 0. Expected results:
 *
 *   test1_result = 1, test2_result = 1, test3_result = 1 (each argument and return checked)
 *   fexit_calls = 3 (one per traced call), TEST_RUN retval (r0) = 0
 */
#include "bpfcheck_helpers.h"

__u64 test1_result;
__u64 test2_result;
__u64 test3_result;
__u64 fexit_calls;

/* int bpf_fentry_test1(int a) { return a + 1; } */
SEC("fexit/bpf_fentry_test1")
int test1(__u64 *ctx)
{
	int a = (int)ctx[0];
	int ret = (int)ctx[1];

	test1_result = a == 1 && ret == 2;
	fexit_calls += 1;
	return 0;
}

/* int bpf_fentry_test2(int a, u64 b) { return a + b; } */
SEC("fexit/bpf_fentry_test2")
int test2(__u64 *ctx)
{
	int a = (int)ctx[0];
	__u64 b = ctx[1];
	int ret = (int)ctx[2];

	test2_result = a == 2 && b == 3 && ret == 5;
	fexit_calls += 1;
	return 0;
}

/* int bpf_fentry_test3(char a, int b, u64 c) { return a + b + c; } */
SEC("fexit/bpf_fentry_test3")
int test3(__u64 *ctx)
{
	char a = (char)ctx[0];
	int b = (int)ctx[1];
	__u64 c = ctx[2];
	int ret = (int)ctx[3];

	test3_result = a == 4 && b == 5 && c == 6 && ret == 15;
	fexit_calls += 1;
	return 0;
}

char _license[] SEC("license") = "GPL";
