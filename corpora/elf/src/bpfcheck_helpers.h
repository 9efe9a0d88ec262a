/* SPDX-License-Identifier: MIT */
/*
 * bpfcheck_helpers.h: the few definitions bpfcheck's ELF fixtures need, written for bpfcheck
 * (no kernel or libbpf headers). Conventions are libbpf's, so clang lays the objects out as
 * libbpf expects them:
 *
 *   SEC(name)          puts a function or variable in ELF section `name`; a program's section
 *                      name gives its type ("tc", "socket", "xdp", "fexit/<function>", ...).
 *   __uint(f, n)       a BTF map-definition field holding the number n, encoded as a pointer to
 *                      an array of n ints (the loader reads n from the BTF array's nelems).
 *   __type(f, T)       a pointer to T: the loader takes sizeof(T) as key_size / value_size.
 *   __array(f, T)      a flexible array of pointers to T: a prog array's initial slots.
 *
 * Helpers are called by number (include/uapi/linux/bpf.h, enum bpf_func_id): a call through a
 * constant function pointer compiles to `call <id>`.
 */
#ifndef BPFCHECK_HELPERS_H
#define BPFCHECK_HELPERS_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;

#define SEC(name) __attribute__((section(name), used))
#define __noinline __attribute__((noinline))
#define __uint(field, n) int (*field)[n]
#define __type(field, T) typeof(T) *field
#define __array(field, T) typeof(T) *field[]

/* enum bpf_map_type */
#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PROG_ARRAY 3
#define BPF_MAP_TYPE_RINGBUF 27

#define BPF_ANY 0
#define XDP_PASS 2

/* enum bpf_func_id */
static void *(*const bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*const bpf_map_update_elem)(void *map, const void *key, const void *value,
					 __u64 flags) = (void *)2;
static long (*const bpf_tail_call)(void *ctx, void *prog_array, __u32 index) = (void *)12;
static long (*const bpf_ringbuf_output)(void *ringbuf, void *data, __u64 size,
					__u64 flags) = (void *)130;
static void *(*const bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *)131;
static void (*const bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)132;
static void (*const bpf_ringbuf_discard)(void *data, __u64 flags) = (void *)133;
static long (*const bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx,
			      __u64 flags) = (void *)181;

/* A map definition in the legacy "maps" section (libbpf before 1.0, iproute2). */
struct bpf_map_def {
	__u32 type;
	__u32 key_size;
	__u32 value_size;
	__u32 max_entries;
	__u32 map_flags;
};

#endif
