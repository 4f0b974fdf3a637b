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
#include <sys/ioctl.h>
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
};
static const char *const need_names[] = {
	"container", "group", "attached", "iommu", "device", "vfio_eeh",
	"config_region", "readable_bar", "injected", "spapr", "spare_container",
	"closed_container",
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

/* pread of len (<= 4) bytes at offset off of region index; value = LE word. */
static __u32 check_read(struct ctx *c, const char *name, unsigned needs,
			int region, __u64 off, size_t len, enum read_expect ex)
{
	unsigned char buf[4] = {0};
	__u32 word = 0;
	enum verdict v;
	int err;
	long ret;

	if (!ready(c, name, N_DEVICE | needs))
		return 0;
	ret = do_pread(c->device, buf, len, c->regions[region].offset + off, &err);
	for (size_t i = 0; i < len && i < sizeof(buf); i++)
		word |= (__u32)buf[i] << (8 * i);
	if (ex == R_ANY)
		v = V_INFO;
	else if (ret != (long)len)
		v = V_FAIL;
	else if (ex == R_ALL_ONES)
		v = word == (ALL_ONES32 >> (32 - 8 * len)) ? V_PASS : V_FAIL;
	else
		v = word != (ALL_ONES32 >> (32 - 8 * len)) ? V_PASS : V_FAIL;
	emit(name, v, ret, err, "0x%0*x", (int)(2 * len), word);
	return word;
}

/* pread at a raw device-fd offset, expected to be refused or short. */
static void check_read_raw(struct ctx *c, const char *name, unsigned needs,
			   __u64 off, size_t len, struct want w)
{
	unsigned char buf[8];
	int err;
	long ret;

	if (!ready(c, name, N_DEVICE | needs))
		return;
	ret = do_pread(c->device, buf, len, off, &err);
	emit(name, judge(w, ret, err), ret, err, "offset=0x%llx,len=%zu",
	     (unsigned long long)off, len);
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

static int open_check(struct ctx *c, const char *name, const char *path,
		      unsigned bit)
{
	int err, fd;

	errno = 0;
	fd = open(path, O_RDWR | O_CLOEXEC);
	err = fd < 0 ? errno : 0;
	emit(name, fd >= 0 ? V_PASS : V_FAIL, fd < 0 ? -1 : 0, err, "%s", path);
	set_have(c, bit, fd >= 0);
	return fd;
}

static void phase_open(struct ctx *c)
{
	char path[64];

	c->container = open_check(c, "open_container", CONTAINER_PATH, N_CONTAINER);
	snprintf(path, sizeof(path), "/dev/vfio/%d", c->group_no);
	c->group = open_check(c, "open_group", path, N_GROUP);

	check_ioctl_int(c, "api_version", N_CONTAINER, c->container,
			VFIO_GET_API_VERSION, 0, WANT_RET(VFIO_API_VERSION));
	check_group_status(c, "group_status_viable", N_GROUP,
			   sizeof(struct vfio_group_status), VFIO_GROUP_FLAGS_VIABLE, 0);
	check_group_status(c, "group_status_argsz_4", N_GROUP, 4, 0, EINVAL);
	check_ioctl_ptr(c, "group_unknown_ioctl", N_GROUP, c->group,
			UNKNOWN_IOCTL, NULL, WANT_ERR(ENOTTY));
}

static void phase_extensions(struct ctx *c)
{
	long v2, v1, t1v2, eeh;

	t1v2 = check_ioctl_int(c, "check_ext_type1v2", N_CONTAINER, c->container,
			       VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU, WANT_INFO);
	v1 = check_ioctl_int(c, "check_ext_spapr_tce", N_CONTAINER, c->container,
			     VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_IOMMU, WANT_INFO);
	v2 = check_ioctl_int(c, "check_ext_spapr_tce_v2", N_CONTAINER, c->container,
			     VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU, WANT_INFO);
	eeh = check_ioctl_int(c, "check_ext_vfio_eeh", N_CONTAINER, c->container,
			      VFIO_CHECK_EXTENSION, VFIO_EEH, WANT_RET(1));
	check_ioctl_int(c, "check_ext_unknown", N_CONTAINER, c->container,
			VFIO_CHECK_EXTENSION, 9999, WANT_RET(0));

	if (v2 > 0)
		c->iommu_type = VFIO_SPAPR_TCE_v2_IOMMU;
	else if (v1 > 0)
		c->iommu_type = VFIO_SPAPR_TCE_IOMMU;
	else if (t1v2 > 0)
		c->iommu_type = VFIO_TYPE1v2_IOMMU;
	set_have(c, N_SPAPR, v2 > 0 || v1 > 0);
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

static void phase_attach(struct ctx *c)
{
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

	if (ready(c, "spapr_tce_get_info", N_IOMMU | N_SPAPR)) {
		struct vfio_iommu_spapr_tce_info ti = {.argsz = sizeof(ti)};
		int err;

		ret = do_ioctl(c->container, VFIO_IOMMU_SPAPR_TCE_GET_INFO, &ti, &err);
		emit("spapr_tce_get_info", judge(WANT_OK, ret, err), ret, err,
		     "flags=0x%x,dma32_start=0x%x,dma32_size=0x%x", ti.flags,
		     ti.dma32_window_start, ti.dma32_window_size);
	}
	if (c->iommu_type == VFIO_SPAPR_TCE_IOMMU)
		check_ioctl_ptr(c, "iommu_enable_v1", N_IOMMU, c->container,
				VFIO_IOMMU_ENABLE, NULL, WANT_OK);
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

	check_read_raw(c, "pread_config_past_end", N_CONFIG,
		       cfg->offset + cfg->size, 4, WANT_ERR(EFAULT));
	check_read_raw(c, "pread_config_straddle_end", N_CONFIG,
		       cfg->offset + cfg->size - 2, 4, WANT_ERR(EFAULT));
	check_read_raw(c, "pread_bar_past_end", N_BAR,
		       bar ? bar->offset + bar->size : 0, 4, WANT_ERR(EINVAL));
	check_read_raw(c, "pread_bar_straddle_end", N_BAR,
		       bar ? bar->offset + bar->size - 2 : 0, 4, WANT_RET(2));
	/* vfio-pci encodes the region index in offset bits 40..63. */
	check_read_raw(c, "pread_region_index_out_of_range", N_DEVICE,
		       (__u64)c->num_regions << 40, 4, WANT_ERR(EINVAL));
}

/* Turns on Memory Space in the (virtualised) command register. */
static void enable_memory(struct ctx *c)
{
	const char *name = "config_write_command_memory";
	__u64 off = c->regions[VFIO_PCI_CONFIG_REGION_INDEX].offset + PCI_COMMAND_OFF;
	unsigned char cmd[2];
	int err;
	long ret;

	if (!ready(c, name, N_CONFIG))
		return;
	ret = do_pread(c->device, cmd, sizeof(cmd), off, &err);
	if (ret == (long)sizeof(cmd)) {
		cmd[0] |= PCI_COMMAND_MEMORY_BIT;
		errno = 0;
		ret = pwrite(c->device, cmd, sizeof(cmd), (off_t)off);
		err = ret < 0 ? errno : 0;
	}
	emit(name, ret == (long)sizeof(cmd) ? V_PASS : V_FAIL, ret, err,
	     "0x%02x%02x", cmd[1], cmd[0]);
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
	phase_eeh_arguments(c);

	inject_and_recover(c, "ld_mem", EEH_ERR_FUNC_LD_MEM_ADDR);
	inject_and_recover(c, "ld_cfg", EEH_ERR_FUNC_LD_CFG_ADDR);

	check_eeh(c, "eeh_unfreeze_dma", 0, EEH_OP(VFIO_EEH_PE_UNFREEZE_DMA), WANT_RET(0));
	check_eeh(c, "eeh_disable", 0, EEH_OP(VFIO_EEH_PE_DISABLE), WANT_RET(0));
}

/* A second container that never gets a group. */
static void phase_spare_container(struct ctx *c)
{
	c->spare = open_check(c, "open_spare_container", CONTAINER_PATH, N_SPARE_CT);
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
		.closed_container_fd = -1, .bar_index = -1,
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
	phase_device(&c);
	phase_region_bounds(&c);
	phase_eeh(&c);
	phase_spare_container(&c);
	phase_teardown(&c);

	printf("SUMMARY checks=%u pass=%u fail=%u info=%u skip=%u\n",
	       counts[V_PASS] + counts[V_FAIL] + counts[V_INFO] + counts[V_SKIP],
	       counts[V_PASS], counts[V_FAIL], counts[V_INFO], counts[V_SKIP]);
	return counts[V_FAIL] ? 1 : 0;
}
