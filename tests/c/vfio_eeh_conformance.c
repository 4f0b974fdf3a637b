// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * vfio_eeh_conformance - record how a VFIO implementation answers the
 * sPAPR EEH sequence and its argument checks.
 *
 *   usage: vfio_eeh_conformance <iommu-group-number> <device-name>
 *   e.g.   vfio_eeh_conformance 0 0000:00:00.0
 *
 * It follows the order of Documentation/driver-api/vfio.rst (PPC64 sPAPR
 * implementation note): container + group, SET_IOMMU, device fd, EEH enable,
 * state, injection, and the recovery sequence (unfreeze, hot reset,
 * deactivate, configure). Around it sit argument and ordering checks.
 *
 * Output (stdout), one line per check, then a summary:
 *
 *   CHECK <name> <pass|fail|info|skip> ret=<int> errno=<NAME|0> [value=<v>]
 *   SUMMARY checks=<N> pass=<n> fail=<n> info=<n> skip=<n>
 *
 * ret/errno are exactly what the kernel (or the emulation) answered; they are
 * the facts to compare between implementations. pass/fail is the verdict
 * against what real Linux is expected to answer; info records a fact that
 * has no single right answer (e.g. which extensions exist). A check whose
 * precondition failed prints skip (ret=0 errno=0 value=needs:<what>).
 * Diagnostics go to stderr. Exit status: 0 no failure, 1 some failure,
 * 2 usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <linux/types.h>
#include <linux/vfio.h>

#if defined(__powerpc__) && defined(__has_include)
#if __has_include(<asm/eeh.h>)
#include <asm/eeh.h>
#endif
#endif

/* arch/powerpc/include/uapi/asm/eeh.h, absent from x86 headers. */
#ifndef EEH_ERR_TYPE_32
#define EEH_ERR_TYPE_32 0
#endif
#ifndef EEH_ERR_TYPE_64
#define EEH_ERR_TYPE_64 1
#endif
#ifndef EEH_ERR_FUNC_LD_MEM_ADDR
#define EEH_ERR_FUNC_LD_MEM_ADDR 0
#endif
#ifndef EEH_ERR_FUNC_LD_CFG_ADDR
#define EEH_ERR_FUNC_LD_CFG_ADDR 4
#endif
#ifndef EEH_ERR_FUNC_MAX
#define EEH_ERR_FUNC_MAX 19
#endif

#define CONTAINER_PATH "/dev/vfio/vfio"
#define ALL_ONES32 0xffffffffu
#define MAX_REGIONS 64
#define STATE_POLL_BUDGET_S 300
#define UNKNOWN_NR 60 /* VFIO_BASE + 60: no VFIO ioctl uses it */
#define UNKNOWN_IOCTL _IO(VFIO_TYPE, VFIO_BASE + UNKNOWN_NR)
#define PCI_COMMAND_OFF 0x04
#define PCI_COMMAND_MEMORY_BIT 0x2
#define SLOW_CALL_MS 50 /* calls slower than this are timed on stderr */

/* ------------------------------------------------------------------ */
/* Reporting                                                           */
/* ------------------------------------------------------------------ */

enum verdict { V_PASS, V_FAIL, V_INFO, V_SKIP, V_COUNT };
static const char *const verdict_names[V_COUNT] = {"pass", "fail", "info", "skip"};
static unsigned counts[V_COUNT];

/* What a check expects the implementation to answer. */
enum want_kind {
	WK_OK,       /* ret >= 0 */
	WK_RET,      /* ret == value */
	WK_ERR,      /* ret == -1 && errno == err */
	WK_INFO,     /* any answer: a recorded fact */
};
struct want {
	enum want_kind kind;
	long value;
	int err;
};
#define WANT_OK ((struct want){WK_OK, 0, 0})
#define WANT_RET(v) ((struct want){WK_RET, (v), 0})
#define WANT_ERR(e) ((struct want){WK_ERR, 0, (e)})
#define WANT_INFO ((struct want){WK_INFO, 0, 0})

static const char *errno_name(int e)
{
	static char buf[16];

	switch (e) {
	case 0: return "0";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case EINTR: return "EINTR";
	case EIO: return "EIO";
	case ENXIO: return "ENXIO";
	case E2BIG: return "E2BIG";
	case EBADF: return "EBADF";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case ENODEV: return "ENODEV";
	case ENOTDIR: return "ENOTDIR";
	case EINVAL: return "EINVAL";
	case ENOSPC: return "ENOSPC";
	case ENOTTY: return "ENOTTY";
	case ERANGE: return "ERANGE";
	case ENOSYS: return "ENOSYS";
	case EBADFD: return "EBADFD";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ETIMEDOUT: return "ETIMEDOUT";
	default:
		snprintf(buf, sizeof(buf), "E%d", e);
		return buf;
	}
}

/* Duration of the last wrapped syscall, reported (stderr) by the next emit. */
static long last_call_ms;

static struct timespec now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t;
}

static long ms_since(struct timespec t0)
{
	struct timespec t1 = now();

	return (long)(t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
}

/* One CHECK line. fmt (may be NULL) describes the value; no spaces in it. */
static void emit(const char *name, enum verdict v, long ret, int err,
		 const char *fmt, ...)
{
	counts[v]++;
	printf("CHECK %s %s ret=%ld errno=%s", name, verdict_names[v], ret,
	       errno_name(err));
	if (fmt) {
		va_list ap;

		va_start(ap, fmt);
		fputs(" value=", stdout);
		vprintf(fmt, ap);
		va_end(ap);
	}
	putchar('\n');
	if (last_call_ms >= SLOW_CALL_MS)
		fprintf(stderr, "# %s took %ld ms\n", name, last_call_ms);
	last_call_ms = 0;
}

static enum verdict judge(struct want w, long ret, int err)
{
	switch (w.kind) {
	case WK_OK:
		return ret >= 0 ? V_PASS : V_FAIL;
	case WK_RET:
		return ret == w.value ? V_PASS : V_FAIL;
	case WK_ERR:
		return (ret == -1 && err == w.err) ? V_PASS : V_FAIL;
	case WK_INFO:
	default:
		return V_INFO;
	}
}

/* ------------------------------------------------------------------ */
/* State and preconditions                                             */
/* ------------------------------------------------------------------ */

enum need {
	N_CONTAINER = 1 << 0, /* container fd open */
	N_GROUP = 1 << 1,     /* group fd open */
	N_ATTACHED = 1 << 2,  /* SET_CONTAINER succeeded */
	N_IOMMU = 1 << 3,     /* SET_IOMMU succeeded */
	N_DEVICE = 1 << 4,    /* device fd open */
	N_EEH = 1 << 5,       /* CHECK_EXTENSION(VFIO_EEH) == 1 */
	N_CONFIG = 1 << 6,    /* config region found */
	N_BAR = 1 << 7,       /* a readable, non-empty BAR found */
	N_INJECTED = 1 << 8,  /* the last INJECT_ERR returned 0 */
	N_SPAPR = 1 << 9,     /* an sPAPR IOMMU type is in use */
	N_SPARE_CT = 1 << 10, /* second, empty container open */
	N_CLOSED_CT = 1 << 11,/* the container fd was closed (stale number kept) */
	N_SPAPR_V2 = 1 << 12, /* sPAPR TCE v2 is the IOMMU type in use */
	N_REGISTERED = 1 << 13,/* the DMA buffer is registered (sPAPR v2) */
	N_MAPPED = 1 << 14,   /* one DMA page is mapped */
	N_ERR_TRIGGER = 1 << 15,/* an eventfd is the ERR IRQ trigger */
	N_WINDOW = 1 << 16,   /* a second DMA window exists */
	N_REOPENED = 1 << 17, /* container + group reopened and attached */
};
static const char *const need_names[] = {
	"container", "group", "attached", "iommu", "device", "vfio_eeh",
	"config_region", "readable_bar", "injected", "spapr", "spare_container",
	"closed_container", "spapr_v2", "registered", "mapped", "err_trigger",
	"window", "reopened",
};

struct region {
	bool valid;
	__u32 flags;
	__u64 size;
	__u64 offset;
};

struct ctx {
	int group_no;
	const char *device_name;
	int container, group, device, spare;
	int closed_container_fd; /* number the container had before close */
	unsigned have;           /* enum need bits that hold now */
	__u32 iommu_type;
	__u32 num_regions;
	struct region regions[MAX_REGIONS];
	int bar_index;           /* BAR used for MMIO reads, or -1 */
	int irq_fd;              /* eventfd used as an IRQ trigger, or -1 */
	__u64 window_start;      /* the second DMA window's bus address */
};

static void set_have(struct ctx *c, unsigned bits, bool on)
{
	if (on)
		c->have |= bits;
	else
		c->have &= ~bits;
}

/* True when every precondition holds; otherwise prints the skip line. */
static bool ready(const struct ctx *c, const char *name, unsigned needs)
{
	unsigned missing = needs & ~c->have;

	if (!missing)
		return true;
	for (unsigned i = 0; i < sizeof(need_names) / sizeof(need_names[0]); i++) {
		if (missing & (1u << i)) {
			emit(name, V_SKIP, 0, 0, "needs:%s", need_names[i]);
			return false;
		}
	}
	emit(name, V_SKIP, 0, 0, "needs:unknown");
	return false;
}

/* ------------------------------------------------------------------ */
/* Syscall wrappers: return the raw result, and errno (0 on success)   */
/* ------------------------------------------------------------------ */

/* Finishes a wrapped call: errno (0 on success) to *err, duration recorded. */
static long finish_call(long ret, struct timespec t0, int *err)
{
	*err = ret < 0 ? errno : 0;
	last_call_ms = ms_since(t0);
	return ret;
}

static long do_ioctl(int fd, unsigned long req, void *arg, int *err)
{
	struct timespec t0 = now();

	errno = 0;
	return finish_call(ioctl(fd, req, arg), t0, err);
}

static long do_ioctl_int(int fd, unsigned long req, unsigned long arg, int *err)
{
	struct timespec t0 = now();

	errno = 0;
	return finish_call(ioctl(fd, req, arg), t0, err);
}

static long do_pread(int fd, void *buf, size_t len, __u64 off, int *err)
{
	struct timespec t0 = now();

	errno = 0;
	return finish_call(pread(fd, buf, len, (off_t)off), t0, err);
}

/* ------------------------------------------------------------------ */
/* Check kinds                                                         */
/* ------------------------------------------------------------------ */

/* An ioctl taking an integer argument (CHECK_EXTENSION, SET_IOMMU, ...). */
static long check_ioctl_int(struct ctx *c, const char *name, unsigned needs,
			    int fd, unsigned long req, unsigned long arg,
			    struct want w)
{
	int err;
	long ret;

	if (!ready(c, name, needs))
		return -1;
	ret = do_ioctl_int(fd, req, arg, &err);
	emit(name, judge(w, ret, err), ret, err, "%ld", ret);
	return ret;
}

/* An ioctl taking a pointer; the value printed is the return value. */
static long check_ioctl_ptr(struct ctx *c, const char *name, unsigned needs,
			    int fd, unsigned long req, void *arg, struct want w)
{
	int err;
	long ret;

	if (!ready(c, name, needs))
		return -1;
	ret = do_ioctl(fd, req, arg, &err);
	emit(name, judge(w, ret, err), ret, err, NULL);
	return ret;
}

/* GROUP_GET_STATUS; want_flags are the flags that must be set exactly. */
static void check_group_status(struct ctx *c, const char *name, unsigned needs,
			       __u32 argsz, __u32 want_flags, int want_err)
{
	struct vfio_group_status st = {.argsz = argsz};
	enum verdict v;
	int err;
	long ret;

	if (!ready(c, name, needs))
		return;
	ret = do_ioctl(c->group, VFIO_GROUP_GET_STATUS, &st, &err);
	if (want_err)
		v = judge(WANT_ERR(want_err), ret, err);
	else
		v = (ret == 0 && st.flags == want_flags) ? V_PASS : V_FAIL;
	emit(name, v, ret, err, "flags=0x%x", ret == 0 ? st.flags : 0);
}

/* GROUP_SET_CONTAINER with the given fd number. */
static long check_set_container(struct ctx *c, const char *name, unsigned needs,
				int fd, struct want w)
{
	__s32 arg = fd;

	return check_ioctl_ptr(c, name, needs, c->group, VFIO_GROUP_SET_CONTAINER,
			       &arg, w);
}

/* GROUP_GET_DEVICE_FD; returns the new fd or -1. */
static int check_get_device_fd(struct ctx *c, const char *name, unsigned needs,
			       const char *dev, struct want w)
{
	int err;
	long ret;

	if (!ready(c, name, needs))
		return -1;
	ret = do_ioctl(c->group, VFIO_GROUP_GET_DEVICE_FD, (void *)dev, &err);
	emit(name, judge(w, ret, err), ret, err, "%s", dev);
	return ret >= 0 ? (int)ret : -1;
}

/*
 * One VFIO_EEH_PE_OP on fd. The structure is always 40 bytes long; argsz
 * says how much of it the caller claims, so short argsz values exercise the
 * kernel's size checks without reading past the buffer.
 */
struct eeh_args {
	__u32 argsz, flags, op;
	__u32 type, func;
	__u64 addr, mask;
};
#define EEH_OP(o) ((struct eeh_args){sizeof(struct vfio_eeh_pe_op), 0, (o), 0, 0, 0, 0})
#define EEH_INJECT(ty, fn) \
	((struct eeh_args){sizeof(struct vfio_eeh_pe_op), 0, VFIO_EEH_PE_INJECT_ERR, (ty), (fn), 0, 0})

static long check_eeh_fd(struct ctx *c, const char *name, unsigned needs, int fd,
			 struct eeh_args a, struct want w)
{
	struct vfio_eeh_pe_op op;
	int err;
	long ret;

	if (!ready(c, name, needs))
		return -1;
	memset(&op, 0, sizeof(op));
	op.argsz = a.argsz;
	op.flags = a.flags;
	op.op = a.op;
	op.err.type = a.type;
	op.err.func = a.func;
	op.err.addr = a.addr;
	op.err.mask = a.mask;
	ret = do_ioctl(fd, VFIO_EEH_PE_OP, &op, &err);
	emit(name, judge(w, ret, err), ret, err, "argsz=%u,op=%u", a.argsz, a.op);
	return ret;
}

/* EEH op on the main container, which must hold the group and an IOMMU. */
static long check_eeh(struct ctx *c, const char *name, unsigned extra_needs,
		      struct eeh_args a, struct want w)
{
	return check_eeh_fd(c, name, N_CONTAINER | N_IOMMU | N_EEH | extra_needs,
			    c->container, a, w);
}

/* DEVICE_GET_INFO; fills c->num_regions when it succeeds with full argsz. */
static void check_device_info(struct ctx *c, const char *name, __u32 argsz,
			      struct want w)
{
	struct vfio_device_info info = {.argsz = argsz};
	int err;
	long ret;

	if (!ready(c, name, N_DEVICE))
		return;
	ret = do_ioctl(c->device, VFIO_DEVICE_GET_INFO, &info, &err);
	if (ret == 0 && argsz >= sizeof(info)) {
		c->num_regions = info.num_regions;
		emit(name, judge(w, ret, err), ret, err,
		     "flags=0x%x,regions=%u,irqs=%u", info.flags,
		     info.num_regions, info.num_irqs);
		if (!(info.flags & VFIO_DEVICE_FLAGS_PCI))
			fprintf(stderr, "# %s: device is not vfio-pci\n", name);
		return;
	}
	emit(name, judge(w, ret, err), ret, err, NULL);
}

/* DEVICE_GET_REGION_INFO for one index, recorded in c->regions. */
static void check_region_info(struct ctx *c, const char *name, __u32 index,
			      __u32 argsz, struct want w)
{
	struct vfio_region_info ri = {.argsz = argsz, .index = index};
	enum verdict v;
	int err;
	long ret;

	if (!ready(c, name, N_DEVICE))
		return;
	ret = do_ioctl(c->device, VFIO_DEVICE_GET_REGION_INFO, &ri, &err);
	v = judge(w, ret, err);
	/* vfio-pci answers EINVAL for the VGA index of a device without VGA. */
	if (v == V_FAIL && w.kind == WK_OK && index == VFIO_PCI_VGA_REGION_INDEX &&
	    err == EINVAL)
		v = V_INFO;
	if (ret != 0) {
		emit(name, v, ret, err, NULL);
		return;
	}
	emit(name, v, ret, err, "index=%u,flags=0x%x,size=0x%llx,offset=0x%llx",
	     ri.index, ri.flags, (unsigned long long)ri.size,
	     (unsigned long long)ri.offset);
	if (index < MAX_REGIONS && argsz >= sizeof(ri)) {
		c->regions[index] = (struct region){true, ri.flags, ri.size, ri.offset};
	}
}

/* How a read's result is judged beyond its return value. */
enum read_expect {
	R_VALID,    /* full length, not all-ones */
	R_ALL_ONES, /* full length, all-ones (frozen PE) */
	R_ANY,      /* a recorded fact */
};

/*
 * pread of len (1..8) bytes at offset off of region index; value = LE word.
 * A full-length answer is judged by ex; anything else fails.
 */
static __u64 check_read(struct ctx *c, const char *name, unsigned needs,
			int region, __u64 off, size_t len, enum read_expect ex)
{
	unsigned char buf[8] = {0};
	__u64 word = 0, ones = ~0ull >> (64 - 8 * len);
	enum verdict v;
	int err;
	long ret;

	if (!ready(c, name, N_DEVICE | needs))
		return 0;
	ret = do_pread(c->device, buf, len, c->regions[region].offset + off, &err);
	for (size_t i = 0; i < len && i < sizeof(buf); i++)
		word |= (__u64)buf[i] << (8 * i);
	if (ex == R_ANY)
		v = V_INFO;
	else if (ret != (long)len)
		v = V_FAIL;
	else if (ex == R_ALL_ONES)
		v = word == ones ? V_PASS : V_FAIL;
	else
		v = word != ones ? V_PASS : V_FAIL;
	emit(name, v, ret, err, "0x%0*llx", (int)(2 * len), (unsigned long long)word);
	return word;
}

/*
 * pread (or pwrite of zeros) of len (<= 8) bytes at a raw offset of fd,
 * expected to be refused or short.
 */
static void check_access_raw(struct ctx *c, const char *name, unsigned needs,
			     int fd, __u64 off, size_t len, bool write,
			     struct want w)
{
	unsigned char buf[8] = {0};
	struct timespec t0;
	int err;
	long ret;

	if (!ready(c, name, needs))
		return;
	if (write) {
		t0 = now();
		errno = 0;
		ret = finish_call(pwrite(fd, buf, len, (off_t)off), t0, &err);
	} else {
		ret = do_pread(fd, buf, len, off, &err);
	}
	emit(name, judge(w, ret, err), ret, err, "offset=0x%llx,len=%zu",
	     (unsigned long long)off, len);
}

/* mmap of one page at a device-fd offset; a mapping that works is undone. */
static void check_mmap(struct ctx *c, const char *name, unsigned needs,
		       __u64 off, int share, struct want w)
{
	size_t len = (size_t)sysconf(_SC_PAGESIZE);
	struct timespec t0;
	void *p;
	int err;
	long ret;

	if (!ready(c, name, N_DEVICE | needs))
		return;
	t0 = now();
	errno = 0;
	p = mmap(NULL, len, PROT_READ, share, c->device, (off_t)off);
	ret = finish_call(p == MAP_FAILED ? -1 : 0, t0, &err);
	if (p != MAP_FAILED)
		munmap(p, len);
	emit(name, judge(w, ret, err), ret, err, "offset=0x%llx",
	     (unsigned long long)off);
}

/* close() of one of our fds; the fd is marked closed whatever the answer. */
static void check_close(struct ctx *c, const char *name, int *fd, unsigned bit)
{
	int err;
	int ret;

	if (!ready(c, name, bit))
		return;
	errno = 0;
	ret = close(*fd);
	err = ret < 0 ? errno : 0;
	emit(name, ret == 0 ? V_PASS : V_FAIL, ret, err, NULL);
	*fd = -1;
	set_have(c, bit, false);
}

/* ------------------------------------------------------------------ */
/* Phases                                                              */
/* ------------------------------------------------------------------ */

/* open() of path; ret is 0 for any new fd. bit says whether it is open. */
static int open_check(struct ctx *c, const char *name, const char *path,
		      unsigned bit, struct want w)
{
	int err, fd;

	errno = 0;
	fd = open(path, O_RDWR | O_CLOEXEC);
	err = fd < 0 ? errno : 0;
	emit(name, judge(w, fd < 0 ? -1 : 0, err), fd < 0 ? -1 : 0, err, "%s", path);
	set_have(c, bit, fd >= 0);
	return fd;
}

static void phase_open(struct ctx *c)
{
	char path[64];

	c->container = open_check(c, "open_container", CONTAINER_PATH, N_CONTAINER,
				  WANT_RET(0));
	snprintf(path, sizeof(path), "/dev/vfio/%d", c->group_no);
	c->group = open_check(c, "open_group", path, N_GROUP, WANT_RET(0));

	check_ioctl_int(c, "api_version", N_CONTAINER, c->container,
			VFIO_GET_API_VERSION, 0, WANT_RET(VFIO_API_VERSION));
	check_group_status(c, "group_status_viable", N_GROUP,
			   sizeof(struct vfio_group_status), VFIO_GROUP_FLAGS_VIABLE, 0);
	check_group_status(c, "group_status_argsz_4", N_GROUP, 4, 0, EINVAL);
	check_ioctl_ptr(c, "group_unknown_ioctl", N_GROUP, c->group,
			UNKNOWN_IOCTL, NULL, WANT_ERR(ENOTTY));
}

/* Every VFIO_CHECK_EXTENSION value of the UAPI, and one past them. */
enum ext_slot {
	EXT_TYPE1, EXT_SPAPR_TCE, EXT_TYPE1V2, EXT_DMA_CC, EXT_VFIO_EEH,
	EXT_TYPE1_NESTING, EXT_SPAPR_TCE_V2, EXT_NOIOMMU, EXT_UNMAP_ALL,
	EXT_UPDATE_VADDR, EXT_UNKNOWN, EXT_COUNT
};
static const struct {
	const char *name;
	unsigned long value;
} extensions[EXT_COUNT] = {
	[EXT_TYPE1] = {"type1", VFIO_TYPE1_IOMMU},
	[EXT_SPAPR_TCE] = {"spapr_tce", VFIO_SPAPR_TCE_IOMMU},
	[EXT_TYPE1V2] = {"type1v2", VFIO_TYPE1v2_IOMMU},
	[EXT_DMA_CC] = {"dma_cc", VFIO_DMA_CC_IOMMU},
	[EXT_VFIO_EEH] = {"vfio_eeh", VFIO_EEH},
	[EXT_TYPE1_NESTING] = {"type1_nesting", VFIO_TYPE1_NESTING_IOMMU},
	[EXT_SPAPR_TCE_V2] = {"spapr_tce_v2", VFIO_SPAPR_TCE_v2_IOMMU},
	[EXT_NOIOMMU] = {"noiommu", VFIO_NOIOMMU_IOMMU},
	[EXT_UNMAP_ALL] = {"unmap_all", VFIO_UNMAP_ALL},
	[EXT_UPDATE_VADDR] = {"update_vaddr", VFIO_UPDATE_VADDR},
	[EXT_UNKNOWN] = {"unknown", 9999},
};

/*
 * CHECK_EXTENSION of every value on the container, as "<prefix>_<name>";
 * the answers go to got[]. VFIO_EEH must be 1 and the unknown value 0.
 */
static void check_extensions(struct ctx *c, const char *prefix, unsigned needs,
			     long got[EXT_COUNT])
{
	char name[64];

	for (int i = 0; i < EXT_COUNT; i++) {
		struct want w = i == EXT_VFIO_EEH ? WANT_RET(1)
				: i == EXT_UNKNOWN ? WANT_RET(0) : WANT_INFO;

		snprintf(name, sizeof(name), "%s_%s", prefix, extensions[i].name);
		got[i] = check_ioctl_int(c, name, needs, c->container,
					 VFIO_CHECK_EXTENSION, extensions[i].value, w);
	}
}

static void phase_extensions(struct ctx *c)
{
	long got[EXT_COUNT];
	long v2, v1, t1v2, eeh;

	check_extensions(c, "check_ext", N_CONTAINER, got);
	v2 = got[EXT_SPAPR_TCE_V2];
	v1 = got[EXT_SPAPR_TCE];
	t1v2 = got[EXT_TYPE1V2];
	eeh = got[EXT_VFIO_EEH];

	if (v2 > 0)
		c->iommu_type = VFIO_SPAPR_TCE_v2_IOMMU;
	else if (v1 > 0)
		c->iommu_type = VFIO_SPAPR_TCE_IOMMU;
	else if (t1v2 > 0)
		c->iommu_type = VFIO_TYPE1v2_IOMMU;
	set_have(c, N_SPAPR, v2 > 0 || v1 > 0);
	set_have(c, N_SPAPR_V2, v2 > 0);
	set_have(c, N_EEH, eeh == 1);
	fprintf(stderr, "# iommu type chosen: %u, VFIO_EEH: %ld\n", c->iommu_type, eeh);
}

/* Ordering errors that need a container without a group. */
static void phase_before_attach(struct ctx *c)
{
	check_ioctl_ptr(c, "unknown_ioctl_no_iommu", N_CONTAINER, c->container,
			UNKNOWN_IOCTL, NULL, WANT_ERR(EINVAL));
	check_eeh_fd(c, "eeh_op_no_group", N_CONTAINER, c->container,
		     EEH_OP(VFIO_EEH_PE_GET_STATE), WANT_ERR(EINVAL));
	check_ioctl_int(c, "set_iommu_no_group", N_CONTAINER, c->container,
			VFIO_SET_IOMMU, c->iommu_type, WANT_ERR(EINVAL));
	check_ioctl_ptr(c, "unset_container_not_set", N_GROUP, c->group,
			VFIO_GROUP_UNSET_CONTAINER, NULL, WANT_ERR(EINVAL));
	check_get_device_fd(c, "get_device_fd_not_attached", N_GROUP,
			    c->device_name, WANT_ERR(EINVAL));
	check_set_container(c, "set_container_bad_fd", N_GROUP, -1, WANT_ERR(EBADF));
	check_set_container(c, "set_container_not_container", N_GROUP, c->group,
			    WANT_ERR(EBADFD));
}

/*
 * SPAPR_TCE_GET_INFO with argsz and an input flags word; the rest of the
 * structure is 0xa5 so the value shows which fields the answer wrote.
 */
static void check_tce_info(struct ctx *c, const char *name, __u32 argsz,
			   __u32 flags_in, struct want w)
{
	struct vfio_iommu_spapr_tce_info ti;
	int err;
	long ret;

	if (!ready(c, name, N_IOMMU | N_SPAPR))
		return;
	memset(&ti, 0xa5, sizeof(ti));
	ti.argsz = argsz;
	ti.flags = flags_in;
	ret = do_ioctl(c->container, VFIO_IOMMU_SPAPR_TCE_GET_INFO, &ti, &err);
	emit(name, judge(w, ret, err), ret, err,
	     "flags=0x%x,dma32_start=0x%x,dma32_size=0x%x,pgsizes=0x%llx,"
	     "windows=0x%x,levels=0x%x", ti.flags, ti.dma32_window_start,
	     ti.dma32_window_size, (unsigned long long)ti.ddw.pgsizes,
	     ti.ddw.max_dynamic_windows_supported, ti.ddw.levels);
}

static void phase_attach(struct ctx *c)
{
	long got[EXT_COUNT];
	long ret;

	ret = check_set_container(c, "set_container", N_CONTAINER | N_GROUP,
				  c->container, WANT_OK);
	set_have(c, N_ATTACHED, ret == 0);
	check_group_status(c, "group_status_container_set", N_ATTACHED,
			   sizeof(struct vfio_group_status),
			   VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET, 0);
	check_set_container(c, "set_container_twice", N_ATTACHED, c->container,
			    WANT_ERR(EINVAL));
	check_get_device_fd(c, "get_device_fd_no_iommu", N_ATTACHED,
			    c->device_name, WANT_ERR(EINVAL));
	check_ioctl_int(c, "set_iommu_unknown_type", N_ATTACHED, c->container,
			VFIO_SET_IOMMU, 99, WANT_ERR(ENODEV));

	ret = check_ioctl_int(c, "set_iommu", N_ATTACHED, c->container,
			      VFIO_SET_IOMMU, c->iommu_type, WANT_RET(0));
	set_have(c, N_IOMMU, ret == 0);
	check_ioctl_int(c, "set_iommu_twice", N_IOMMU, c->container,
			VFIO_SET_IOMMU, c->iommu_type, WANT_ERR(EINVAL));
	check_ioctl_ptr(c, "unknown_container_ioctl", N_IOMMU, c->container,
			UNKNOWN_IOCTL, NULL, WANT_ERR(ENOTTY));

	check_extensions(c, "iommu_check_ext", N_IOMMU, got);

	check_tce_info(c, "spapr_tce_get_info", sizeof(struct vfio_iommu_spapr_tce_info),
		       0, WANT_OK);
	check_tce_info(c, "spapr_tce_get_info_argsz_12", 12, 0, WANT_ERR(EINVAL));
	check_tce_info(c, "spapr_tce_get_info_argsz_16_flags_in", 16, 0xff, WANT_OK);
	if (c->iommu_type == VFIO_SPAPR_TCE_IOMMU)
		check_ioctl_ptr(c, "iommu_enable_v1", N_IOMMU, c->container,
				VFIO_IOMMU_ENABLE, NULL, WANT_OK);
	check_ioctl_ptr(c, "iommu_enable_v2", N_IOMMU | N_SPAPR_V2, c->container,
			VFIO_IOMMU_ENABLE, NULL, WANT_ERR(ENOTTY));
	check_ioctl_ptr(c, "iommu_disable_v2", N_IOMMU | N_SPAPR_V2, c->container,
			VFIO_IOMMU_DISABLE, NULL, WANT_ERR(ENOTTY));
}

/*
 * Picks the first readable BAR (0..5) of at least 4 bytes for MMIO reads.
 * Region info does not tell memory from I/O BARs; on PowerNV I/O BARs have
 * size 0, and on e1000e BAR0 (memory) comes first anyway.
 */
static void find_bar(struct ctx *c)
{
	c->bar_index = -1;
	for (int i = VFIO_PCI_BAR0_REGION_INDEX; i <= VFIO_PCI_BAR5_REGION_INDEX; i++) {
		const struct region *r = &c->regions[i];

		if (r->valid && r->size >= 4 && (r->flags & VFIO_REGION_INFO_FLAG_READ)) {
			c->bar_index = i;
			break;
		}
	}
	set_have(c, N_BAR, c->bar_index >= 0);
}

static void phase_device(struct ctx *c)
{
	char name[48];
	__u32 n;

	check_get_device_fd(c, "get_device_fd_unknown_name", N_IOMMU,
			    "0000:ff:1f.7", WANT_ERR(ENODEV));
	check_get_device_fd(c, "get_device_fd_empty_name", N_IOMMU, "",
			    WANT_ERR(ENODEV));
	c->device = check_get_device_fd(c, "get_device_fd", N_IOMMU,
					c->device_name, WANT_OK);
	set_have(c, N_DEVICE, c->device >= 0);

	check_device_info(c, "device_get_info", sizeof(struct vfio_device_info), WANT_OK);
	check_device_info(c, "device_get_info_argsz_4", 4, WANT_ERR(EINVAL));

	n = c->num_regions < MAX_REGIONS ? c->num_regions : MAX_REGIONS;
	for (__u32 i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "region_info_%u", i);
		check_region_info(c, name, i, sizeof(struct vfio_region_info), WANT_OK);
	}
	if (!(c->have & N_DEVICE))
		ready(c, "region_info_0", N_DEVICE); /* prints the skip */
	check_region_info(c, "region_info_argsz_8", VFIO_PCI_CONFIG_REGION_INDEX, 8,
			  WANT_ERR(EINVAL));
	check_region_info(c, "region_info_index_out_of_range", c->num_regions,
			  sizeof(struct vfio_region_info), WANT_ERR(EINVAL));
	check_region_info(c, "region_info_index_max", UINT32_MAX,
			  sizeof(struct vfio_region_info), WANT_ERR(EINVAL));
	check_ioctl_ptr(c, "device_unknown_ioctl", N_DEVICE, c->device,
			UNKNOWN_IOCTL, NULL, WANT_ERR(ENOTTY));

	set_have(c, N_CONFIG, c->regions[VFIO_PCI_CONFIG_REGION_INDEX].valid &&
				      c->regions[VFIO_PCI_CONFIG_REGION_INDEX].size >= 64);
	find_bar(c);
	fprintf(stderr, "# regions=%u, mmio BAR for reads: %d\n", c->num_regions,
		c->bar_index);

	check_ioctl_ptr(c, "device_reset", N_DEVICE, c->device, VFIO_DEVICE_RESET,
			NULL, WANT_INFO);
}

/* Region-boundary checks on the device fd's read path. */
static void phase_region_bounds(struct ctx *c)
{
	const struct region *cfg = &c->regions[VFIO_PCI_CONFIG_REGION_INDEX];
	const struct region *bar = c->bar_index >= 0 ? &c->regions[c->bar_index] : NULL;

	static const struct {
		const char *name;
		bool write;
	} ops[] = {{"pread", false}, {"pwrite", true}};
	const __u64 cfg_end = cfg->offset + cfg->size;
	const __u64 bar_end = bar ? bar->offset + bar->size : 0;
	char name[64];

	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		const bool wr = ops[i].write;

		snprintf(name, sizeof(name), "%s_config_past_end", ops[i].name);
		check_access_raw(c, name, N_DEVICE | N_CONFIG, c->device, cfg_end, 4,
				 wr, WANT_ERR(EFAULT));
		snprintf(name, sizeof(name), "%s_config_straddle_end", ops[i].name);
		check_access_raw(c, name, N_DEVICE | N_CONFIG, c->device, cfg_end - 2,
				 4, wr, WANT_ERR(EFAULT));
		snprintf(name, sizeof(name), "%s_bar_past_end", ops[i].name);
		check_access_raw(c, name, N_DEVICE | N_BAR, c->device, bar_end, 4, wr,
				 WANT_ERR(EINVAL));
		snprintf(name, sizeof(name), "%s_bar_straddle_end", ops[i].name);
		check_access_raw(c, name, N_DEVICE | N_BAR, c->device, bar_end - 2, 4,
				 wr, WANT_RET(2));
		/* vfio-pci encodes the region index in offset bits 40..63. */
		snprintf(name, sizeof(name), "%s_region_index_out_of_range", ops[i].name);
		check_access_raw(c, name, N_DEVICE, c->device,
				 (__u64)c->num_regions << 40, 4, wr, WANT_ERR(EINVAL));
		/* The container and group files have no read or write. */
		snprintf(name, sizeof(name), "%s_container_fd", ops[i].name);
		check_access_raw(c, name, N_CONTAINER, c->container, 0, 4, wr,
				 WANT_ERR(EINVAL));
		snprintf(name, sizeof(name), "%s_group_fd", ops[i].name);
		check_access_raw(c, name, N_GROUP, c->group, 0, 4, wr, WANT_ERR(EINVAL));
	}
	check_mmap(c, "mmap_config_region", N_CONFIG, cfg->offset, MAP_SHARED,
		   WANT_ERR(EINVAL));
	check_mmap(c, "mmap_bar_private", N_BAR, bar ? bar->offset : 0, MAP_PRIVATE,
		   WANT_ERR(EINVAL));
	check_mmap(c, "mmap_region_index_out_of_range", N_DEVICE,
		   (__u64)c->num_regions << 40, MAP_SHARED, WANT_ERR(EINVAL));
}

/* Sets or clears Memory Space in the (virtualised) command register. */
static void check_command_memory(struct ctx *c, const char *name, bool on)
{
	__u64 off = c->regions[VFIO_PCI_CONFIG_REGION_INDEX].offset + PCI_COMMAND_OFF;
	unsigned char cmd[2];
	int err;
	long ret;

	if (!ready(c, name, N_CONFIG))
		return;
	ret = do_pread(c->device, cmd, sizeof(cmd), off, &err);
	if (ret == (long)sizeof(cmd)) {
		cmd[0] = on ? cmd[0] | PCI_COMMAND_MEMORY_BIT
			    : cmd[0] & ~PCI_COMMAND_MEMORY_BIT;
		errno = 0;
		ret = pwrite(c->device, cmd, sizeof(cmd), (off_t)off);
		err = ret < 0 ? errno : 0;
	}
	emit(name, ret == (long)sizeof(cmd) ? V_PASS : V_FAIL, ret, err,
	     "0x%02x%02x", cmd[1], cmd[0]);
}

/* BAR access with Memory Space off is EIO; then Memory Space goes on. */
static void enable_memory(struct ctx *c)
{
	const struct region *bar = c->bar_index >= 0 ? &c->regions[c->bar_index] : NULL;
	const __u64 off = bar ? bar->offset : 0;

	check_command_memory(c, "config_write_command_no_memory", false);
	check_access_raw(c, "pread_bar_memory_off", N_DEVICE | N_BAR, c->device, off,
			 4, false, WANT_ERR(EIO));
	check_access_raw(c, "pwrite_bar_memory_off", N_DEVICE | N_BAR, c->device,
			 off + 4 * 1024, 4, true, WANT_ERR(EIO));
	check_command_memory(c, "config_write_command_memory", true);
}


static void phase_read_widths(struct ctx *c)
{
	static const size_t widths[] = {1, 2, 4, 8};
	const int bar = c->bar_index >= 0 ? c->bar_index : 0;
	char name[48];

	for (size_t i = 0; i < sizeof(widths) / sizeof(widths[0]); i++) {
		snprintf(name, sizeof(name), "config_read_width_%zu", widths[i]);
		check_read(c, name, N_CONFIG, VFIO_PCI_CONFIG_REGION_INDEX, 0, widths[i],
			   R_ANY);
		snprintf(name, sizeof(name), "bar_read_width_%zu", widths[i]);
		check_read(c, name, N_BAR, bar, 0, widths[i], R_ANY);
	}
	check_read(c, "config_read_unaligned_2_at_1", N_CONFIG,
		   VFIO_PCI_CONFIG_REGION_INDEX, 1, 2, R_ANY);
	check_read(c, "config_read_unaligned_4_at_2", N_CONFIG,
		   VFIO_PCI_CONFIG_REGION_INDEX, 2, 4, R_ANY);
	check_read(c, "bar_read_unaligned_4_at_2", N_BAR, bar, 2, 4, R_ANY);
}

/* Argument checks on VFIO_EEH_PE_OP; none of them may change the PE. */
static void phase_eeh_arguments(struct ctx *c)
{
	static const __u32 inject_sizes[] = {12, 16, 24, 32, 39};
	struct eeh_args a;
	char name[48];

	a = EEH_OP(VFIO_EEH_PE_GET_STATE);
	a.argsz = 0;
	check_eeh(c, "eeh_op_argsz_0", 0, a, WANT_ERR(EINVAL));
	a.argsz = 11;
	check_eeh(c, "eeh_op_argsz_11", 0, a, WANT_ERR(EINVAL));
	a.argsz = 12;
	check_eeh(c, "eeh_op_argsz_12_get_state", 0, a, WANT_RET(VFIO_EEH_PE_STATE_NORMAL));
	a.argsz = 4096;
	check_eeh(c, "eeh_op_argsz_4096_get_state", 0, a, WANT_RET(VFIO_EEH_PE_STATE_NORMAL));

	a = EEH_OP(VFIO_EEH_PE_GET_STATE);
	a.flags = 1;
	check_eeh(c, "eeh_op_flags_nonzero", 0, a, WANT_ERR(EINVAL));
	check_eeh(c, "eeh_op_unknown_op_10", 0, EEH_OP(10), WANT_ERR(EINVAL));
	check_eeh(c, "eeh_op_unknown_op_max", 0, EEH_OP(UINT32_MAX), WANT_ERR(EINVAL));
	check_ioctl_ptr(c, "eeh_op_null_arg", N_IOMMU | N_EEH, c->container,
			VFIO_EEH_PE_OP, NULL, WANT_ERR(EFAULT));

	for (size_t i = 0; i < sizeof(inject_sizes) / sizeof(inject_sizes[0]); i++) {
		a = EEH_INJECT(EEH_ERR_TYPE_32, EEH_ERR_FUNC_LD_MEM_ADDR);
		a.argsz = inject_sizes[i];
		snprintf(name, sizeof(name), "eeh_inject_argsz_%u", inject_sizes[i]);
		check_eeh(c, name, 0, a, WANT_ERR(EINVAL));
	}
	check_eeh(c, "eeh_inject_func_20", 0,
		  EEH_INJECT(EEH_ERR_TYPE_32, EEH_ERR_FUNC_MAX + 1), WANT_ERR(EINVAL));
	check_eeh(c, "eeh_inject_func_max_u32", 0,
		  EEH_INJECT(EEH_ERR_TYPE_32, UINT32_MAX), WANT_ERR(EINVAL));
	check_eeh(c, "eeh_inject_bad_type", 0,
		  EEH_INJECT(EEH_ERR_TYPE_64 + 1, EEH_ERR_FUNC_LD_MEM_ADDR), WANT_ERR(ERANGE));

	check_eeh(c, "eeh_get_state_after_arg_checks", 0,
		  EEH_OP(VFIO_EEH_PE_GET_STATE), WANT_RET(VFIO_EEH_PE_STATE_NORMAL));
}

/* Config dword 0 and the BAR's first dword, judged by ex. */
static void check_reads(struct ctx *c, const char *prefix, unsigned needs,
			enum read_expect ex)
{
	char name[64];

	snprintf(name, sizeof(name), "%s_config_read", prefix);
	check_read(c, name, N_CONFIG | needs, VFIO_PCI_CONFIG_REGION_INDEX, 0, 4, ex);
	snprintf(name, sizeof(name), "%s_bar_read", prefix);
	check_read(c, name, N_BAR | needs, c->bar_index >= 0 ? c->bar_index : 0, 0, 4, ex);
}

/* Polls GET_STATE while it answers UNAVAIL, as the kernel's waiters do. */
static void check_state_poll(struct ctx *c, const char *name)
{
	struct vfio_eeh_pe_op op = {.argsz = sizeof(op), .op = VFIO_EEH_PE_GET_STATE};
	int err = 0, polls = 0;
	long ret;

	if (!ready(c, name, N_IOMMU | N_EEH))
		return;
	for (;;) {
		ret = do_ioctl(c->container, VFIO_EEH_PE_OP, &op, &err);
		polls++;
		if (ret != VFIO_EEH_PE_STATE_UNAVAIL || polls >= STATE_POLL_BUDGET_S)
			break;
		sleep(1);
	}
	if (ret == VFIO_EEH_PE_STATE_RESET)
		sleep(1);
	emit(name, ret >= 0 && ret != VFIO_EEH_PE_STATE_UNAVAIL ? V_PASS : V_FAIL,
	     ret, err, "state=%ld,polls=%d", ret, polls);
}

/* "eeh_<prefix>_<what>" in buf. */
static const char *eeh_name(char *buf, size_t len, const char *prefix,
			    const char *what)
{
	snprintf(buf, len, "eeh_%s_%s", prefix, what);
	return buf;
}

/*
 * One injection and the documented recovery. prefix names the checks, e.g.
 * "ld_mem" gives eeh_ld_mem_inject, eeh_ld_mem_state_frozen, ...
 */
static void inject_and_recover(struct ctx *c, const char *prefix, __u32 func)
{
	char n[64];
	long ret;

	ret = check_eeh(c, eeh_name(n, sizeof(n), prefix, "inject"), 0,
			EEH_INJECT(EEH_ERR_TYPE_32, func), WANT_RET(0));
	set_have(c, N_INJECTED, ret == 0);
	check_eeh(c, eeh_name(n, sizeof(n), prefix, "state_frozen"), N_INJECTED,
		  EEH_OP(VFIO_EEH_PE_GET_STATE), WANT_RET(VFIO_EEH_PE_STATE_STOPPED));
	check_reads(c, eeh_name(n, sizeof(n), prefix, "frozen"), N_INJECTED, R_ALL_ONES);

	check_eeh(c, eeh_name(n, sizeof(n), prefix, "unfreeze_io"), 0,
		  EEH_OP(VFIO_EEH_PE_UNFREEZE_IO), WANT_RET(0));
	check_eeh(c, eeh_name(n, sizeof(n), prefix, "reset_hot"), 0,
		  EEH_OP(VFIO_EEH_PE_RESET_HOT), WANT_RET(0));
	check_state_poll(c, eeh_name(n, sizeof(n), prefix, "state_poll"));
	check_eeh(c, eeh_name(n, sizeof(n), prefix, "reset_deactivate"), 0,
		  EEH_OP(VFIO_EEH_PE_RESET_DEACTIVATE), WANT_RET(0));
	check_eeh(c, eeh_name(n, sizeof(n), prefix, "configure"), 0,
		  EEH_OP(VFIO_EEH_PE_CONFIGURE), WANT_RET(0));
	check_eeh(c, eeh_name(n, sizeof(n), prefix, "state_recovered"), 0,
		  EEH_OP(VFIO_EEH_PE_GET_STATE), WANT_RET(VFIO_EEH_PE_STATE_NORMAL));
	check_reads(c, eeh_name(n, sizeof(n), prefix, "recovered"), 0, R_VALID);
	set_have(c, N_INJECTED, false);
}

static void phase_eeh(struct ctx *c)
{
	check_eeh(c, "eeh_enable", 0, EEH_OP(VFIO_EEH_PE_ENABLE), WANT_RET(0));
	check_eeh(c, "eeh_get_state_initial", 0, EEH_OP(VFIO_EEH_PE_GET_STATE),
		  WANT_RET(VFIO_EEH_PE_STATE_NORMAL));
	enable_memory(c);
	check_reads(c, "eeh_normal", 0, R_VALID);
	phase_read_widths(c);
	phase_eeh_arguments(c);

	inject_and_recover(c, "ld_mem", EEH_ERR_FUNC_LD_MEM_ADDR);
	inject_and_recover(c, "ld_cfg", EEH_ERR_FUNC_LD_CFG_ADDR);

	check_eeh(c, "eeh_unfreeze_dma", 0, EEH_OP(VFIO_EEH_PE_UNFREEZE_DMA), WANT_RET(0));
	check_eeh(c, "eeh_disable", 0, EEH_OP(VFIO_EEH_PE_DISABLE), WANT_RET(0));
}

/* ------------------------------------------------------------------ */
/* sPAPR TCE v2: preregistration, DMA mapping, windows                 */
/* ------------------------------------------------------------------ */

#define DMA_BUF_SIZE 0x10000u /* one page whether pages are 4 or 64 KiB */
#define DMA_PAGE 0x1000u      /* the default window's IOMMU page */
#define DMA_MAP_RW (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)
/* The first half is registered, the second never is. */
static unsigned char dma_buf[2 * DMA_BUF_SIZE] __attribute__((aligned(DMA_BUF_SIZE)));

/* (UN)REGISTER_MEMORY of [vaddr, vaddr + size). */
static long check_register(struct ctx *c, const char *name, unsigned needs,
			   unsigned long req, __u32 argsz, __u32 flags,
			   __u64 vaddr, __u64 size, struct want w)
{
	struct vfio_iommu_spapr_register_memory r = {
		.argsz = argsz, .flags = flags, .vaddr = vaddr, .size = size,
	};

	return check_ioctl_ptr(c, name, N_IOMMU | N_SPAPR_V2 | needs, c->container,
			       req, &r, w);
}

static long check_map(struct ctx *c, const char *name, unsigned needs,
		      __u32 argsz, __u32 flags, __u64 vaddr, __u64 iova,
		      __u64 size, struct want w)
{
	struct vfio_iommu_type1_dma_map m = {
		.argsz = argsz, .flags = flags, .vaddr = vaddr, .iova = iova, .size = size,
	};

	return check_ioctl_ptr(c, name, N_IOMMU | N_SPAPR_V2 | needs, c->container,
			       VFIO_IOMMU_MAP_DMA, &m, w);
}

/* UNMAP_DMA; the value is the size field afterwards (type1 writes it). */
static long check_unmap(struct ctx *c, const char *name, unsigned needs,
			__u32 argsz, __u32 flags, __u64 iova, __u64 size,
			struct want w)
{
	struct vfio_iommu_type1_dma_unmap u = {
		.argsz = argsz, .flags = flags, .iova = iova, .size = size,
	};
	int err;
	long ret;

	if (!ready(c, name, N_IOMMU | N_SPAPR_V2 | needs))
		return -1;
	ret = do_ioctl(c->container, VFIO_IOMMU_UNMAP_DMA, &u, &err);
	emit(name, judge(w, ret, err), ret, err, "size=0x%llx",
	     (unsigned long long)u.size);
	return ret;
}

static void phase_spapr_dma(struct ctx *c)
{
	const __u64 reg = (__u64)(uintptr_t)dma_buf;
	const __u64 unreg = reg + DMA_BUF_SIZE;
	const unsigned long R = VFIO_IOMMU_SPAPR_REGISTER_MEMORY;
	const unsigned long U = VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY;
	const __u32 rsz = sizeof(struct vfio_iommu_spapr_register_memory);
	const __u32 msz = sizeof(struct vfio_iommu_type1_dma_map);
	const __u32 usz = sizeof(struct vfio_iommu_type1_dma_unmap);
	long ret;

	check_register(c, "register_memory_argsz_16", 0, R, 16, 0, reg, DMA_BUF_SIZE,
		       WANT_ERR(EINVAL));
	check_register(c, "register_memory_flags", 0, R, rsz, 1, reg, DMA_BUF_SIZE,
		       WANT_ERR(EINVAL));
	check_register(c, "register_memory_unaligned_vaddr", 0, R, rsz, 0, reg + 1,
		       DMA_BUF_SIZE, WANT_ERR(EINVAL));
	check_register(c, "register_memory_unaligned_size", 0, R, rsz, 0, reg,
		       DMA_BUF_SIZE + 1, WANT_ERR(EINVAL));
	ret = check_register(c, "register_memory", 0, R, rsz, 0, reg, DMA_BUF_SIZE,
			     WANT_RET(0));
	set_have(c, N_REGISTERED, ret == 0);
	check_register(c, "register_memory_again", N_REGISTERED, R, rsz, 0, reg,
		       DMA_BUF_SIZE, WANT_ERR(EBUSY));

	check_map(c, "map_dma_argsz_24", N_REGISTERED, 24, DMA_MAP_RW, reg, 0,
		  DMA_PAGE, WANT_ERR(EINVAL));
	check_map(c, "map_dma_bad_flags", N_REGISTERED, msz,
		  DMA_MAP_RW | VFIO_DMA_MAP_FLAG_VADDR, reg, 0, DMA_PAGE, WANT_ERR(EINVAL));
	check_map(c, "map_dma_no_direction", N_REGISTERED, msz, 0, reg, 0, DMA_PAGE,
		  WANT_ERR(EINVAL));
	check_map(c, "map_dma_outside_window", N_REGISTERED, msz, DMA_MAP_RW, reg,
		  1ull << 32, DMA_PAGE, WANT_ERR(ENXIO));
	check_map(c, "map_dma_unaligned_size", N_REGISTERED, msz, DMA_MAP_RW, reg, 0,
		  DMA_PAGE / 2, WANT_ERR(EINVAL));
	/* iommu_tce_put_param_check() is "... || ...", as for unmapping below. */
	check_map(c, "map_dma_unaligned_iova", N_REGISTERED, msz, DMA_MAP_RW, reg,
		  DMA_PAGE / 2, DMA_PAGE, WANT_RET(1));
	check_map(c, "map_dma_unregistered", N_REGISTERED, msz, DMA_MAP_RW, unreg, 0,
		  DMA_PAGE, WANT_ERR(EINVAL));
	ret = check_map(c, "map_dma", N_REGISTERED, msz, DMA_MAP_RW, reg, 0, DMA_PAGE,
			WANT_RET(0));
	set_have(c, N_MAPPED, ret == 0);
	check_map(c, "map_dma_read_only_over_mapped", N_MAPPED, msz,
		  VFIO_DMA_MAP_FLAG_READ, reg, 0, DMA_PAGE, WANT_INFO);
	/* Linux 6.12 lets the mapped memory go (and warns when the process exits). */
	ret = check_register(c, "unregister_memory_while_mapped", N_MAPPED, U, rsz, 0,
			     reg, DMA_BUF_SIZE, WANT_RET(0));
	set_have(c, N_REGISTERED, ret != 0);

	check_unmap(c, "unmap_dma_argsz_16", N_MAPPED, 16, 0, 0, DMA_PAGE,
		    WANT_ERR(EINVAL));
	check_unmap(c, "unmap_dma_flags", N_MAPPED, usz, 1, 0, DMA_PAGE,
		    WANT_ERR(EINVAL));
	check_unmap(c, "unmap_dma_flag_all", N_MAPPED, usz, VFIO_DMA_UNMAP_FLAG_ALL,
		    0, 0, WANT_ERR(EINVAL));
	check_unmap(c, "unmap_dma_unaligned_size", N_MAPPED, usz, 0, 0, DMA_PAGE / 2,
		    WANT_ERR(EINVAL));
	check_unmap(c, "unmap_dma_outside_window", N_MAPPED, usz, 0, 1ull << 32,
		    DMA_PAGE, WANT_ERR(ENXIO));
	/*
	 * Linux's iommu_tce_clear_param_check() is "check_ioba(...) || value":
	 * an unaligned IOVA is refused with 1, not an errno; a range running
	 * past the window's end is cleared up to the end, answering 0.
	 */
	check_unmap(c, "unmap_dma_unaligned_iova", N_MAPPED, usz, 0, DMA_PAGE / 2,
		    DMA_PAGE, WANT_RET(1));
	check_unmap(c, "unmap_dma_past_window_end", N_MAPPED, usz, 0,
		    (2ull << 30) - DMA_PAGE, 2 * DMA_PAGE, WANT_RET(0));
	ret = check_unmap(c, "unmap_dma", N_MAPPED, usz, 0, 0, DMA_PAGE, WANT_RET(0));
	set_have(c, N_MAPPED, ret != 0);
	check_unmap(c, "unmap_dma_nothing_mapped", 0, usz, 0, DMA_PAGE, DMA_PAGE,
		    WANT_INFO);

	check_register(c, "unregister_memory_unaligned", 0, U, rsz, 0, reg + 1,
		       DMA_BUF_SIZE, WANT_ERR(EINVAL));
	check_register(c, "unregister_memory_unknown", 0, U, rsz, 0, unreg,
		       DMA_BUF_SIZE, WANT_ERR(ENOENT));
	check_register(c, "unregister_memory_again", 0, U, rsz, 0, reg, DMA_BUF_SIZE,
		       WANT_ERR(ENOENT));
}

/* TCE_CREATE; the value is the start address the answer wrote. */
static long check_create(struct ctx *c, const char *name, unsigned needs,
			 __u32 argsz, __u32 flags, __u32 page_shift,
			 __u64 window_size, __u32 levels, struct want w)
{
	struct vfio_iommu_spapr_tce_create cr = {
		.argsz = argsz, .flags = flags, .page_shift = page_shift,
		.window_size = window_size, .levels = levels, .start_addr = 0x5a5a,
	};
	int err;
	long ret;

	if (!ready(c, name, N_IOMMU | N_SPAPR_V2 | needs))
		return -1;
	ret = do_ioctl(c->container, VFIO_IOMMU_SPAPR_TCE_CREATE, &cr, &err);
	emit(name, judge(w, ret, err), ret, err, "start_addr=0x%llx",
	     (unsigned long long)cr.start_addr);
	if (ret == 0)
		c->window_start = cr.start_addr;
	return ret;
}

static long check_remove(struct ctx *c, const char *name, unsigned needs,
			 __u32 argsz, __u32 flags, __u64 start, struct want w)
{
	struct vfio_iommu_spapr_tce_remove rm = {
		.argsz = argsz, .flags = flags, .start_addr = start,
	};

	return check_ioctl_ptr(c, name, N_IOMMU | N_SPAPR_V2 | needs, c->container,
			       VFIO_IOMMU_SPAPR_TCE_REMOVE, &rm, w);
}

/* A second DMA window: 1 GiB of 64 KiB pages, one level. */
static void phase_spapr_windows(struct ctx *c)
{
	const __u32 csz = sizeof(struct vfio_iommu_spapr_tce_create);
	const __u32 rsz = sizeof(struct vfio_iommu_spapr_tce_remove);
	const __u64 gib = 1ull << 30;
	long ret;

	check_create(c, "tce_create_argsz_32", 0, 32, 0, 16, gib, 1, WANT_ERR(EINVAL));
	check_create(c, "tce_create_flags", 0, csz, 1, 16, gib, 1, WANT_ERR(EINVAL));
	check_create(c, "tce_create_page_shift_13", 0, csz, 0, 13, gib, 1,
		     WANT_ERR(EINVAL));
	check_create(c, "tce_create_levels_0", 0, csz, 0, 16, gib, 0, WANT_ERR(EINVAL));
	check_create(c, "tce_create_levels_6", 0, csz, 0, 16, gib, 6, WANT_ERR(EINVAL));
	check_create(c, "tce_create_size_not_pow2", 0, csz, 0, 16, 3 * (gib / 4), 1,
		     WANT_ERR(EINVAL));
	ret = check_create(c, "tce_create", 0, csz, 0, 16, gib, 1, WANT_RET(0));
	set_have(c, N_WINDOW, ret == 0);
	check_create(c, "tce_create_no_free_slot", N_WINDOW, csz, 0, 16, gib, 1,
		     WANT_ERR(ENOSPC));

	check_remove(c, "tce_remove_argsz_8", N_WINDOW, 8, 0, c->window_start,
		     WANT_ERR(EINVAL));
	check_remove(c, "tce_remove_flags", N_WINDOW, rsz, 1, c->window_start,
		     WANT_ERR(EINVAL));
	check_remove(c, "tce_remove_outside_windows", N_WINDOW, rsz, 0, 1ull << 40,
		     WANT_ERR(EINVAL));
	/* The window is found by any bus address inside it, not only its start. */
	ret = check_remove(c, "tce_remove_inside_window", N_WINDOW, rsz, 0,
			   c->window_start + gib / 2, WANT_RET(0));
	set_have(c, N_WINDOW, ret != 0);
	check_remove(c, "tce_remove_again", 0, rsz, 0, c->window_start,
		     WANT_ERR(EINVAL));
}

/* ------------------------------------------------------------------ */
/* Interrupts and device features                                      */
/* ------------------------------------------------------------------ */

static void check_irq_info(struct ctx *c, const char *name, __u32 argsz,
			   __u32 index, struct want w)
{
	struct vfio_irq_info info = {.argsz = argsz, .index = index};
	int err;
	long ret;

	if (!ready(c, name, N_DEVICE))
		return;
	ret = do_ioctl(c->device, VFIO_DEVICE_GET_IRQ_INFO, &info, &err);
	if (ret != 0) {
		emit(name, judge(w, ret, err), ret, err, NULL);
		return;
	}
	emit(name, judge(w, ret, err), ret, err, "flags=0x%x,count=%u", info.flags,
	     info.count);
}

/* SET_IRQS with one data element (an int32 eventfd, or its low byte as a bool). */
static long check_set_irqs(struct ctx *c, const char *name, unsigned needs,
			   __u32 argsz, __u32 flags, __u32 index, __u32 start,
			   __u32 count, __s32 data, struct want w)
{
	unsigned char buf[sizeof(struct vfio_irq_set) + sizeof(__s32)];
	struct vfio_irq_set hdr = {
		.argsz = argsz, .flags = flags, .index = index, .start = start,
		.count = count,
	};

	memcpy(buf, &hdr, sizeof(hdr));
	memcpy(buf + sizeof(hdr), &data, sizeof(data));
	if (flags & VFIO_IRQ_SET_DATA_BOOL)
		buf[sizeof(hdr)] = data != 0; /* the bool is the first byte */
	return check_ioctl_ptr(c, name, N_DEVICE | needs, c->device,
			       VFIO_DEVICE_SET_IRQS, buf, w);
}

/* A read of the trigger eventfd: ret 8 and the count, or EAGAIN if unsignalled. */
static void check_irq_fired(struct ctx *c, const char *name)
{
	__u64 n = 0;
	struct timespec t0;
	int err;
	long ret;

	if (!ready(c, name, N_ERR_TRIGGER))
		return;
	t0 = now();
	errno = 0;
	ret = finish_call(read(c->irq_fd, &n, sizeof(n)), t0, &err);
	emit(name, V_INFO, ret, err, "count=%llu", (unsigned long long)n);
}

static void phase_irqs(struct ctx *c)
{
	const __u32 hsz = sizeof(struct vfio_irq_set);
	const __u32 fsz = hsz + sizeof(__s32);
	const __u32 none = VFIO_IRQ_SET_DATA_NONE, boolean = VFIO_IRQ_SET_DATA_BOOL;
	const __u32 efd = VFIO_IRQ_SET_DATA_EVENTFD, trig = VFIO_IRQ_SET_ACTION_TRIGGER;
	const __u32 mask = VFIO_IRQ_SET_ACTION_MASK, unmask = VFIO_IRQ_SET_ACTION_UNMASK;
	const __u32 intx = VFIO_PCI_INTX_IRQ_INDEX, err_irq = VFIO_PCI_ERR_IRQ_INDEX;
	char name[48];
	int devnull;
	long ret;

	for (__u32 i = 0; i < VFIO_PCI_NUM_IRQS; i++) {
		snprintf(name, sizeof(name), "irq_info_%u", i);
		check_irq_info(c, name, sizeof(struct vfio_irq_info), i, WANT_OK);
	}
	check_irq_info(c, "irq_info_argsz_12", 12, intx, WANT_ERR(EINVAL));
	check_irq_info(c, "irq_info_index_5", sizeof(struct vfio_irq_info),
		       VFIO_PCI_NUM_IRQS, WANT_ERR(EINVAL));
	check_irq_info(c, "irq_info_index_max", sizeof(struct vfio_irq_info),
		       UINT32_MAX, WANT_ERR(EINVAL));

	check_set_irqs(c, "set_irqs_argsz_16", 0, 16, none | trig, err_irq, 0, 1, 0,
		       WANT_ERR(EINVAL));
	check_set_irqs(c, "set_irqs_unknown_flag", 0, hsz, none | trig | 0x40, err_irq,
		       0, 1, 0, WANT_ERR(EINVAL));
	check_set_irqs(c, "set_irqs_two_data_types", 0, fsz, none | boolean | trig,
		       err_irq, 0, 1, 1, WANT_ERR(EINVAL));
	check_set_irqs(c, "set_irqs_index_5", 0, hsz, none | trig, VFIO_PCI_NUM_IRQS,
		       0, 1, 0, WANT_ERR(EINVAL));
	check_set_irqs(c, "set_irqs_count_overflow", 0, hsz, none | trig, err_irq, 1,
		       UINT32_MAX - 1, 0, WANT_ERR(EINVAL));
	check_set_irqs(c, "set_irqs_start_past_end", 0, hsz, none | trig, err_irq, 1,
		       1, 0, WANT_ERR(EINVAL));
	check_set_irqs(c, "set_irqs_count_past_end", 0, hsz, none | trig, err_irq, 0,
		       2, 0, WANT_ERR(EINVAL));
	check_set_irqs(c, "set_irqs_eventfd_argsz_short", 0, hsz, efd | trig, err_irq,
		       0, 1, -1, WANT_ERR(EINVAL));
	check_set_irqs(c, "set_irqs_no_action", 0, hsz, none, err_irq, 0, 1, 0,
		       WANT_ERR(ENOTTY));
	check_set_irqs(c, "set_irqs_two_actions", 0, hsz, none | mask | unmask,
		       err_irq, 0, 1, 0, WANT_ERR(ENOTTY));
	check_set_irqs(c, "set_irqs_err_mask", 0, hsz, none | mask, err_irq, 0, 1, 0,
		       WANT_ERR(ENOTTY));
	check_set_irqs(c, "set_irqs_intx_mask_not_enabled", 0, hsz, none | mask, intx,
		       0, 1, 0, WANT_ERR(EINVAL));
	check_set_irqs(c, "set_irqs_intx_unmask_not_enabled", 0, hsz, none | unmask,
		       intx, 0, 1, 0, WANT_ERR(EINVAL));
	check_set_irqs(c, "set_irqs_intx_trigger_not_enabled", 0, hsz, none | trig,
		       intx, 0, 1, 0, WANT_ERR(EINVAL));
	check_set_irqs(c, "set_irqs_intx_disable_not_enabled", 0, hsz, none | trig,
		       intx, 0, 0, 0, WANT_ERR(EINVAL));
	check_set_irqs(c, "set_irqs_err_trigger_none_set", 0, hsz, none | trig,
		       err_irq, 0, 1, 0, WANT_ERR(EINVAL));
	check_set_irqs(c, "set_irqs_err_disable_none_set", 0, hsz, none | trig,
		       err_irq, 0, 0, 0, WANT_ERR(EINVAL));
	check_set_irqs(c, "set_irqs_err_eventfd_count_0", 0, hsz, efd | trig, err_irq,
		       0, 0, 0, WANT_ERR(EINVAL));
	check_set_irqs(c, "set_irqs_err_bool_count_0", 0, hsz, boolean | trig,
		       err_irq, 0, 0, 0, WANT_ERR(EINVAL));
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	check_set_irqs(c, "set_irqs_err_eventfd_not_eventfd", 0, fsz, efd | trig,
		       err_irq, 0, 1, devnull, WANT_ERR(EINVAL));
	if (devnull >= 0)
		close(devnull);
	check_set_irqs(c, "set_irqs_err_eventfd_closed_fd", 0, fsz, efd | trig,
		       err_irq, 0, 1, 100000, WANT_ERR(EBADF));
	check_set_irqs(c, "set_irqs_err_eventfd_minus_2", 0, fsz, efd | trig, err_irq,
		       0, 1, -2, WANT_ERR(EINVAL));
	check_set_irqs(c, "set_irqs_err_eventfd_minus_1_none_set", 0, fsz, efd | trig,
		       err_irq, 0, 1, -1, WANT_RET(0));

	c->irq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ret = check_set_irqs(c, "set_irqs_err_eventfd", 0, fsz, efd | trig, err_irq, 0,
			     1, c->irq_fd, WANT_RET(0));
	set_have(c, N_ERR_TRIGGER, ret == 0 && c->irq_fd >= 0);
	check_irq_fired(c, "irq_err_not_fired");
	check_set_irqs(c, "set_irqs_err_loopback_none", N_ERR_TRIGGER, hsz,
		       none | trig, err_irq, 0, 1, 0, WANT_RET(0));
	check_irq_fired(c, "irq_err_fired_none");
	check_set_irqs(c, "set_irqs_err_loopback_bool_true", N_ERR_TRIGGER, fsz,
		       boolean | trig, err_irq, 0, 1, 1, WANT_RET(0));
	check_irq_fired(c, "irq_err_fired_bool_true");
	check_set_irqs(c, "set_irqs_err_loopback_bool_false", N_ERR_TRIGGER, fsz,
		       boolean | trig, err_irq, 0, 1, 0, WANT_RET(0));
	check_irq_fired(c, "irq_err_fired_bool_false");
	check_set_irqs(c, "set_irqs_err_disable", N_ERR_TRIGGER, hsz, none | trig,
		       err_irq, 0, 0, 0, WANT_RET(0));
	check_set_irqs(c, "set_irqs_err_loopback_after_disable", N_ERR_TRIGGER, hsz,
		       none | trig, err_irq, 0, 1, 0, WANT_ERR(EINVAL));
	set_have(c, N_ERR_TRIGGER, false);
	if (c->irq_fd >= 0)
		close(c->irq_fd);
	c->irq_fd = -1;
	check_set_irqs(c, "set_irqs_req_eventfd_minus_1", 0, fsz, efd | trig,
		       VFIO_PCI_REQ_IRQ_INDEX, 0, 1, -1, WANT_RET(0));
}

/* DEVICE_FEATURE with argsz and flags (feature index in the low 16 bits). */
static void check_feature(struct ctx *c, const char *name, __u32 argsz,
			  __u32 flags, struct want w)
{
	unsigned char buf[sizeof(struct vfio_device_feature) + 8] = {0};
	struct vfio_device_feature f = {.argsz = argsz, .flags = flags};

	memcpy(buf, &f, sizeof(f));
	check_ioctl_ptr(c, name, N_DEVICE, c->device, VFIO_DEVICE_FEATURE, buf, w);
}

static void phase_features(struct ctx *c)
{
	const __u32 sz = sizeof(struct vfio_device_feature);
	const __u32 get = VFIO_DEVICE_FEATURE_GET, set = VFIO_DEVICE_FEATURE_SET;
	const __u32 probe = VFIO_DEVICE_FEATURE_PROBE;

	check_feature(c, "device_feature_argsz_4", 4, probe | get |
		      VFIO_DEVICE_FEATURE_MIGRATION, WANT_ERR(EINVAL));
	check_feature(c, "device_feature_unknown_flag", sz, get | (1u << 19) |
		      VFIO_DEVICE_FEATURE_MIGRATION, WANT_ERR(EINVAL));
	check_feature(c, "device_feature_get_and_set", sz, get | set |
		      VFIO_DEVICE_FEATURE_MIGRATION, WANT_ERR(EINVAL));
	check_feature(c, "device_feature_migration_probe", sz, probe | get |
		      VFIO_DEVICE_FEATURE_MIGRATION, WANT_ERR(ENOTTY));
	check_feature(c, "device_feature_dma_logging_probe", sz, probe | set |
		      VFIO_DEVICE_FEATURE_DMA_LOGGING_START, WANT_ERR(ENOTTY));
	check_feature(c, "device_feature_low_power_entry_probe", sz, probe | set |
		      VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, WANT_RET(0));
	check_feature(c, "device_feature_low_power_entry_probe_get", sz, probe | get |
		      VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, WANT_ERR(EINVAL));
	check_feature(c, "device_feature_low_power_exit_probe", sz, probe | set |
		      VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, WANT_RET(0));
	check_feature(c, "device_feature_vf_token_probe", sz, probe | set |
		      VFIO_DEVICE_FEATURE_PCI_VF_TOKEN, WANT_ERR(ENOTTY));
	check_feature(c, "device_feature_unknown_probe", sz, probe | get | 0xffff,
		      WANT_ERR(ENOTTY));
}

/* ------------------------------------------------------------------ */
/* Close ordering on a second life of the group                        */
/* ------------------------------------------------------------------ */

static void phase_reopen(struct ctx *c)
{
	char path[64];
	long ret;
	int fd;

	snprintf(path, sizeof(path), "/dev/vfio/%d", c->group_no);
	c->container = open_check(c, "reopen_container", CONTAINER_PATH, N_CONTAINER,
				  WANT_RET(0));
	c->group = open_check(c, "reopen_group", path, N_GROUP, WANT_RET(0));
	fd = open_check(c, "reopen_group_twice", path, 0, WANT_ERR(EBUSY));
	if (fd >= 0)
		close(fd);
	check_group_status(c, "reopen_group_status", N_GROUP,
			   sizeof(struct vfio_group_status), VFIO_GROUP_FLAGS_VIABLE, 0);
	ret = check_set_container(c, "reopen_set_container", N_CONTAINER | N_GROUP,
				  c->container, WANT_OK);
	set_have(c, N_ATTACHED, ret == 0);
	ret = check_ioctl_int(c, "reopen_set_iommu", N_ATTACHED, c->container,
			      VFIO_SET_IOMMU, c->iommu_type, WANT_RET(0));
	set_have(c, N_IOMMU, ret == 0);
	check_eeh(c, "reopen_eeh_get_state_no_device_fd", 0,
		  EEH_OP(VFIO_EEH_PE_GET_STATE), WANT_INFO);
	c->device = check_get_device_fd(c, "reopen_get_device_fd", N_IOMMU,
					c->device_name, WANT_OK);
	set_have(c, N_DEVICE, c->device >= 0);

	/* The device fd holds the group file: closing the group fd releases nothing. */
	check_close(c, "reopen_close_group_first", &c->group, N_GROUP);
	fd = open_check(c, "reopen_group_while_device_open", path, 0, WANT_ERR(EBUSY));
	if (fd >= 0)
		close(fd);
	check_read(c, "reopen_config_read_group_closed", N_CONFIG,
		   VFIO_PCI_CONFIG_REGION_INDEX, 0, 4, R_VALID);
	check_eeh(c, "reopen_eeh_get_state_group_closed", 0,
		  EEH_OP(VFIO_EEH_PE_GET_STATE), WANT_RET(VFIO_EEH_PE_STATE_NORMAL));
	check_close(c, "reopen_close_container_second", &c->container, N_CONTAINER);
	check_read(c, "reopen_config_read_only_device", N_CONFIG,
		   VFIO_PCI_CONFIG_REGION_INDEX, 0, 4, R_VALID);
	check_close(c, "reopen_close_device_last", &c->device, N_DEVICE);
	set_have(c, N_ATTACHED | N_IOMMU, false);

	/* Releasing the group file detached the container. */
	c->group = open_check(c, "reopen_group_after_release", path, N_GROUP,
			      WANT_RET(0));
	check_group_status(c, "reopen_group_status_after_release", N_GROUP,
			   sizeof(struct vfio_group_status), VFIO_GROUP_FLAGS_VIABLE, 0);
	check_close(c, "reopen_close_group", &c->group, N_GROUP);
}

/* A second container that never gets a group. */
static void phase_spare_container(struct ctx *c)
{
	c->spare = open_check(c, "open_spare_container", CONTAINER_PATH, N_SPARE_CT,
			      WANT_RET(0));
	check_ioctl_int(c, "spare_check_ext_vfio_eeh", N_SPARE_CT, c->spare,
			VFIO_CHECK_EXTENSION, VFIO_EEH, WANT_INFO);
	check_eeh_fd(c, "eeh_op_container_without_group", N_SPARE_CT, c->spare,
		     EEH_OP(VFIO_EEH_PE_GET_STATE), WANT_ERR(EINVAL));
	check_set_container(c, "set_container_group_in_other_container",
			    N_SPARE_CT | N_ATTACHED, c->spare, WANT_ERR(EINVAL));
	check_close(c, "close_spare_container", &c->spare, N_SPARE_CT);
}

/* Closing the container fd first: the group keeps the container alive. */
static void phase_teardown(struct ctx *c)
{
	int stale = c->container;
	int second;

	check_close(c, "close_container", &c->container, N_CONTAINER);
	if (stale >= 0) {
		c->closed_container_fd = stale;
		set_have(c, N_CLOSED_CT, true);
	}
	check_eeh_fd(c, "after_close_eeh_op_on_closed_fd", N_CLOSED_CT,
		     c->closed_container_fd, EEH_OP(VFIO_EEH_PE_GET_STATE),
		     WANT_ERR(EBADF));
	check_group_status(c, "after_close_group_status", N_ATTACHED,
			   sizeof(struct vfio_group_status),
			   VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET, 0);
	check_read(c, "after_close_config_read", N_CONFIG | N_CLOSED_CT,
		   VFIO_PCI_CONFIG_REGION_INDEX, 0, 4, R_VALID);
	second = check_get_device_fd(c, "after_close_get_device_fd_again",
				     N_ATTACHED | N_IOMMU, c->device_name, WANT_OK);
	if (second >= 0)
		close(second);
	check_ioctl_ptr(c, "after_close_unset_container_busy", N_DEVICE | N_ATTACHED,
			c->group, VFIO_GROUP_UNSET_CONTAINER, NULL, WANT_ERR(EBUSY));
	check_close(c, "close_device", &c->device, N_DEVICE);
	if (ready(c, "after_close_unset_container", N_ATTACHED)) {
		int err;
		long ret = do_ioctl(c->group, VFIO_GROUP_UNSET_CONTAINER, NULL, &err);

		emit("after_close_unset_container", judge(WANT_RET(0), ret, err), ret, err, NULL);
		if (ret == 0)
			set_have(c, N_ATTACHED | N_IOMMU, false);
	}
	check_group_status(c, "after_unset_group_status", N_GROUP,
			   sizeof(struct vfio_group_status), VFIO_GROUP_FLAGS_VIABLE, 0);
	check_get_device_fd(c, "after_unset_get_device_fd", N_GROUP, c->device_name,
			    WANT_ERR(EINVAL));
	check_close(c, "close_group", &c->group, N_GROUP);
}

int main(int argc, char **argv)
{
	struct ctx c = {
		.container = -1, .group = -1, .device = -1, .spare = -1,
		.closed_container_fd = -1, .bar_index = -1, .irq_fd = -1,
	};
	char *end;
	long group_no;

	if (argc != 3) {
		fprintf(stderr, "usage: %s <iommu-group-number> <device-name>\n"
			"  e.g. %s 0 0000:00:00.0\n", argv[0], argv[0]);
		return 2;
	}
	errno = 0;
	group_no = strtol(argv[1], &end, 10);
	if (errno || *end || end == argv[1] || group_no < 0 || group_no > 1000000) {
		fprintf(stderr, "%s: bad group number '%s'\n", argv[0], argv[1]);
		return 2;
	}
	c.group_no = (int)group_no;
	c.device_name = argv[2];
	setvbuf(stdout, NULL, _IOLBF, 0);

	phase_open(&c);
	phase_extensions(&c);
	phase_before_attach(&c);
	phase_attach(&c);
	phase_spapr_dma(&c);
	phase_spapr_windows(&c);
	phase_device(&c);
	phase_irqs(&c);
	phase_features(&c);
	phase_region_bounds(&c);
	phase_eeh(&c);
	phase_spare_container(&c);
	phase_teardown(&c);
	phase_reopen(&c);

	printf("SUMMARY checks=%u pass=%u fail=%u info=%u skip=%u\n",
	       counts[V_PASS] + counts[V_FAIL] + counts[V_INFO] + counts[V_SKIP],
	       counts[V_PASS], counts[V_FAIL], counts[V_INFO], counts[V_SKIP]);
	return counts[V_FAIL] ? 1 : 0;
}
