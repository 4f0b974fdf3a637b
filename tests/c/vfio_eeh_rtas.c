/*
 * The design's path end to end, from C, under the vfio-shim preload library
 * (run by crates/vfio-shim/tests/rtas.rs with VFIO_EEH_SHIM_PLATFORM=powernv
 * and VFIO_EEH_SHIM_RESET=report-unavailable):
 *
 *  1. two devices get guest addresses with VFIO_DEVICE_ADDR_MAPPING, each
 *     under its own virtual PHB (QEMU's sPAPR PHBs 1 and 2), after every
 *     mapping conflict and garbage argument has answered its errno and
 *     changed nothing;
 *  2. the whole Linux pseries EEH recovery sequence runs as RTAS buffers
 *     naming guest addresses (include/vfio_eeh.h's vfio_eeh_rtas, found with
 *     dlsym): get-config-addr-info2, set-eeh-option, read-slot-reset-state2,
 *     open-errinjct / errinjct / close-errinjct to freeze device A from the
 *     guest side, slot-error-detail, set-slot-reset, configure-pe; device B
 *     stays untouched throughout;
 *  3. addresses that are not this VM's (another BUID, an empty slot, a
 *     device whose group was closed) answer -3 as nonexistent, and wrong
 *     nargs, nret and tokens answer -3 or, with no room for a status, a
 *     negative errno.
 *
 * The same program runs as a VMM of eehd's shared host (VFIO_EEH_SHIM_CONNECT,
 * VFIO_EEH_SHIM_VM=a), with the same answers. Run with --other-vm after that,
 * as another VM of the same eehd (VFIO_EEH_SHIM_VM=b), it checks that the
 * first VM's groups are in use (EBUSY) and its guest addresses name nothing
 * (-3), and that this VM may map a device of its own at one of them.
 *
 * Prints "ok" and exits 0 on success; prints the failed check and exits 1.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "vfio_eeh.h"

#define DEVICE_A "0000:01:00.0" /* group 0, one function */
#define DEVICE_B "0000:02:00.0" /* group 1, with 0000:02:00.1 */
#define DEVICE_B1 "0000:02:00.1"
#define DEVICE_C "0000:03:00.0" /* group 2 */
#define PHB(n) (VFIO_EEH_SPAPR_BASE_BUID + (n))
#define PARAMETER_ERROR ((uint32_t)-3)
#define RAM_BASE 0x100000ULL
#define RAM_SIZE 0x10000ULL
#define IOA_BUS_ERROR 7
#define LOAD_CONFIG_ADDR 4

static int checks;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(1);
}

#define CHECK(cond, ...)                       \
	do {                                   \
		checks++;                      \
		if (!(cond))                   \
			fail(__VA_ARGS__);     \
	} while (0)

static vfio_eeh_rtas_fn *rtas_entry;
static vfio_eeh_rtas_token_fn *token_of;
static struct vfio_eeh_guest_ram ram;

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static int open_or_fail(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		fail("open %s: %s", path, strerror(errno));
	return fd;
}

/* Group `group` attached to a container of its own with the sPAPR IOMMU. */
static int open_group(const char *group)
{
	int container = open_or_fail("/dev/vfio/vfio");
	int fd = open_or_fail(group);
	if (ioctl(fd, VFIO_GROUP_SET_CONTAINER, &container) != 0)
		fail("SET_CONTAINER %s: %s", group, strerror(errno));
	if (ioctl(container, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU) != 0)
		fail("SET_IOMMU: %s", strerror(errno));
	close(container); /* the group holds it */
	return fd;
}

static int open_device(int group, const char *name)
{
	int fd = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, name);
	if (fd < 0)
		fail("GET_DEVICE_FD %s: %s", name, strerror(errno));
	return fd;
}

/* VFIO_DEVICE_ADDR_MAPPING: 0 or the errno. */
static int mapping(int device, __u32 flags, struct vfio_addr_mapping *m)
{
	struct vfio_device_addr_mapping arg = { .argsz = sizeof(arg), .flags = flags };
	if (m)
		arg.mapping = *m;
	if (ioctl(device, VFIO_DEVICE_ADDR_MAPPING, &arg) != 0)
		return errno;
	if (m)
		*m = arg.mapping;
	return 0;
}

static int map_set(int device, __u64 buid, __u8 slot, __u8 func)
{
	struct vfio_addr_mapping m = { .buid = buid, .bus = 0, .slot = slot, .func = func };
	return mapping(device, VFIO_DEVICE_ADDR_MAPPING_SET, &m);
}

/* The mapped guest address as buid:slot.func, or the errno as "errno N". */
static const char *map_get(int device)
{
	static char text[64];
	struct vfio_addr_mapping m = { 0 };
	int e = mapping(device, VFIO_DEVICE_ADDR_MAPPING_GET, &m);
	if (e)
		snprintf(text, sizeof(text), "errno %d", e);
	else
		snprintf(text, sizeof(text), "%#llx:%02x.%x", (unsigned long long)m.buid, m.slot, m.func);
	return text;
}

static uint32_t token(const char *name)
{
	int t = token_of(name);
	if (t < 0)
		fail("no token for %s: %s", name, strerror(-t));
	return (uint32_t)t;
}

/*
 * One RTAS call: `nargs` cells from `in`, `nret` returned into `out`.
 * Returns what vfio_eeh_rtas returned.
 */
static int call(uint32_t tok, int nargs, const uint32_t *in, int nret, uint32_t *out)
{
	struct vfio_eeh_rtas_args args = {
		.token = htobe32(tok), .nargs = htobe32((uint32_t)nargs), .nret = htobe32((uint32_t)nret)
	};
	for (int i = 0; i < nargs; i++)
		args.args[i] = htobe32(in[i]);
	int r = rtas_entry(&args, &ram);
	for (int i = 0; i < nret && out && nargs + i < 16; i++)
		out[i] = be32toh(args.args[nargs + i]);
	return r;
}

/* A call that must be served; its status (rets[0]). */
static uint32_t served(const char *name, int nargs, const uint32_t *in, int nret, uint32_t *out)
{
	uint32_t local[16];
	if (!out)
		out = local;
	int r = call(token(name), nargs, in, nret, out);
	if (r != 0)
		fail("%s: vfio_eeh_rtas returned %d", name, r);
	return out[0];
}

/* A guest address as RTAS names it: config address, BUID high, BUID low. */
struct addr {
	uint32_t config, hi, lo;
};

static struct addr at(__u64 buid, unsigned slot, unsigned func)
{
	return (struct addr){ (slot << 11) | (func << 8), (uint32_t)(buid >> 32), (uint32_t)buid };
}

static uint32_t read_state(struct addr a, uint32_t *delay_ms)
{
	uint32_t in[3] = { a.config, a.hi, a.lo }, out[4];
	uint32_t status = served("ibm,read-slot-reset-state2", 3, in, 4, out);
	if (status != 0)
		return 0xdead0000 | (status & 0xffff);
	if (delay_ms)
		*delay_ms = out[3]; /* out[2]: EEH capable */
	return out[1];
}

/* Waits, as the guest does, while the PE reports unavailable (5). */
static uint32_t settled_state(struct addr a)
{
	uint32_t delay = 0, state;
	for (int tries = 0; (state = read_state(a, &delay)) == 5 && tries < 100; tries++)
		sleep_ms(delay > 100 || delay == 0 ? 100 : delay);
	return state;
}

static uint32_t option(struct addr a, uint32_t opt)
{
	uint32_t in[4] = { a.config, a.hi, a.lo, opt };
	return served("ibm,set-eeh-option", 4, in, 1, NULL);
}

static uint32_t slot_reset(struct addr a, uint32_t function)
{
	uint32_t in[4] = { a.config, a.hi, a.lo, function };
	return served("ibm,set-slot-reset", 4, in, 1, NULL);
}

/* configure-pe, repeated while it answers an extended delay (990x). */
static uint32_t configure(struct addr a)
{
	uint32_t in[3] = { a.config, a.hi, a.lo }, status;
	for (int tries = 0; (status = served("ibm,configure-pe", 3, in, 1, NULL)) >= 9900 && status <= 9905 &&
			    tries < 200;
	     tries++) {
		unsigned ms = 1;
		for (uint32_t i = 9900; i < status; i++)
			ms *= 10;
		sleep_ms(ms);
	}
	return status;
}

/* The PE's config address (get-config-addr-info2 function 0) and sharing. */
static struct addr pe_of(struct addr device, uint32_t *shared)
{
	uint32_t in[4] = { device.config, device.hi, device.lo, 1 }, out[2];
	CHECK(served("ibm,get-config-addr-info2", 4, in, 2, out) == 0, "get-config-addr-info2 fn 1");
	*shared = out[1];
	in[3] = 0;
	CHECK(served("ibm,get-config-addr-info2", 4, in, 2, out) == 0, "get-config-addr-info2 fn 0");
	return (struct addr){ out[1], device.hi, device.lo };
}

static uint32_t config_dword(int device)
{
	uint32_t v = 0;
	off_t config = (off_t)VFIO_PCI_CONFIG_REGION_INDEX << 40;
	if (pread(device, &v, 4, config) != 4)
		fail("config read: %s", strerror(errno));
	return v;
}

static void mapping_rules(int a, int b, int b1)
{
	CHECK(!strcmp(map_get(a), "errno 2"), "GET before SET: %s", map_get(a));
	CHECK(mapping(a, VFIO_DEVICE_ADDR_MAPPING_CLEAR, NULL) == ENOENT, "CLEAR of nothing");
	CHECK(map_set(a, PHB(1), 1, 0) == 0, "SET A");
	CHECK(map_set(b, PHB(1), 1, 0) == EEXIST, "a guest address used twice");
	CHECK(!strcmp(map_get(b), "errno 2"), "the refused SET mapped B: %s", map_get(b));
	CHECK(map_set(a, PHB(1), 2, 0) == EBUSY, "A mapped twice");
	CHECK(!strcmp(map_get(a), "0x800000020000001:01.0"), "the refused SET moved A: %s", map_get(a));
	CHECK(map_set(b, 0, 1, 0) == EINVAL, "BUID 0");
	CHECK(map_set(b, 0x1234, 1, 0) == EINVAL, "a BUID that is no PHB of this VM");
	CHECK(map_set(b, PHB(2), 32, 0) == EINVAL, "slot 32");
	CHECK(map_set(b, PHB(2), 1, 8) == EINVAL, "function 8");
	CHECK(map_set(b, PHB(2), 1, 0) == 0, "SET B");
	CHECK(map_set(b1, PHB(1), 3, 1) == EINVAL, "one PE under two PHBs");
	CHECK(map_set(b1, PHB(2), 1, 1) == 0, "SET B.1");

	struct vfio_device_addr_mapping arg = { .argsz = 23, .flags = VFIO_DEVICE_ADDR_MAPPING_GET };
	CHECK(ioctl(a, VFIO_DEVICE_ADDR_MAPPING, &arg) == -1 && errno == EINVAL, "argsz 23");
	__u32 bad_flags[] = { 0, 1 << 3, VFIO_DEVICE_ADDR_MAPPING_SET | VFIO_DEVICE_ADDR_MAPPING_CLEAR };
	for (unsigned i = 0; i < sizeof(bad_flags) / sizeof(bad_flags[0]); i++)
		CHECK(mapping(b1, bad_flags[i], NULL) == EINVAL, "flags %#x", bad_flags[i]);
	CHECK(ioctl(a, VFIO_DEVICE_ADDR_MAPPING, NULL) == -1 && errno == EFAULT, "NULL argument");
	CHECK(ioctl(a, VFIO_DEVICE_ADDR_MAPPING, (void *)0x7fffffff0000UL) == -1 && errno == EFAULT, "unmapped");
	CHECK(mapping(b1, VFIO_DEVICE_ADDR_MAPPING_CLEAR, NULL) == 0, "CLEAR B.1");
	CHECK(mapping(b1, VFIO_DEVICE_ADDR_MAPPING_CLEAR, NULL) == ENOENT, "CLEAR B.1 again");
	CHECK(map_set(b1, PHB(2), 1, 1) == 0, "SET B.1 again");
	CHECK(!strcmp(map_get(a), "0x800000020000001:01.0"), "A after it all: %s", map_get(a));
	CHECK(!strcmp(map_get(b), "0x800000020000002:01.0"), "B after it all: %s", map_get(b));
}

static void bad_buffers(struct addr a)
{
	uint32_t in[16] = { a.config, a.hi, a.lo, 1 }, out[16];
	CHECK(call(0x1fff, 3, in, 4, out) == 0 && out[0] == PARAMETER_ERROR, "a bad token");
	CHECK(call(token("ibm,set-eeh-option"), 3, in, 1, out) == 0 && out[0] == PARAMETER_ERROR, "nargs 3");
	CHECK(call(token("ibm,read-slot-reset-state2"), 3, in, 2, out) == 0 && out[0] == PARAMETER_ERROR, "nret 2");
	CHECK(call(token("ibm,set-eeh-option"), 4, in, 0, out) == -EINVAL, "nret 0: no room for a status");
	CHECK(call(token("ibm,set-eeh-option"), 16, in, 1, out) == -EINVAL, "17 cells");
	CHECK(rtas_entry(NULL, &ram) == -EFAULT, "NULL buffer");
	CHECK(rtas_entry((struct vfio_eeh_rtas_args *)0x7fffffff0000UL, &ram) == -EFAULT, "unmapped buffer");
	struct vfio_eeh_rtas_args args = { .token = htobe32(token("ibm,set-eeh-option")), .nargs = htobe32(4),
					   .nret = htobe32(1) };
	CHECK(rtas_entry(&args, (const struct vfio_eeh_guest_ram *)8) == -EFAULT, "bad RAM window pointer");
	CHECK(token_of("ibm,nothing") == -ENOENT, "unknown name");
	CHECK(token_of(NULL) == -EFAULT, "NULL name");
}

/* --other-vm: another VM of the eehd that served the first run. */
static int other_vm(void)
{
	CHECK(open("/dev/vfio/0", O_RDWR | O_CLOEXEC) == -1 && errno == EBUSY, "the first VM's group 0: %s",
	      strerror(errno));
	CHECK(open("/dev/vfio/1", O_RDWR | O_CLOEXEC) == -1 && errno == EBUSY, "the first VM's group 1: %s",
	      strerror(errno));
	struct addr first_a = at(PHB(1), 1, 0), first_b = at(PHB(2), 1, 0);
	CHECK(read_state(first_a, NULL) == (0xdead0000 | 0xfffd), "the first VM's device A");
	CHECK(read_state(first_b, NULL) == (0xdead0000 | 0xfffd), "the first VM's device B");
	uint32_t detail[8] = { first_a.config, first_a.hi, first_a.lo, 0, 0, (uint32_t)RAM_BASE, 1024, 1 };
	CHECK(served("ibm,slot-error-detail", 8, detail, 1, NULL) == PARAMETER_ERROR, "the first VM's log");

	int group_c = open_group("/dev/vfio/2");
	int c = open_device(group_c, DEVICE_C);
	CHECK(map_set(c, PHB(1), 1, 0) == 0, "C where the first VM has A");
	CHECK(option(first_a, 1) == 0, "set-eeh-option on this VM's C");
	CHECK(read_state(first_a, NULL) == 0, "this VM's C is normal");
	printf("ok (%d checks)\n", checks);
	return 0;
}

int main(int argc, char **argv)
{
	rtas_entry = (vfio_eeh_rtas_fn *)dlsym(RTLD_DEFAULT, "vfio_eeh_rtas");
	token_of = (vfio_eeh_rtas_token_fn *)dlsym(RTLD_DEFAULT, "vfio_eeh_rtas_token");
	if (!rtas_entry || !token_of)
		fail("the preload library exports no vfio_eeh_rtas / vfio_eeh_rtas_token");
	void *guest_ram = aligned_alloc(4096, RAM_SIZE);
	if (!guest_ram)
		fail("no memory");
	memset(guest_ram, 0, RAM_SIZE);
	ram = (struct vfio_eeh_guest_ram){ .host = guest_ram, .base = RAM_BASE, .size = RAM_SIZE };
	if (argc > 1 && !strcmp(argv[1], "--other-vm"))
		return other_vm();

	int group_a = open_group("/dev/vfio/0"), group_b = open_group("/dev/vfio/1");
	int a = open_device(group_a, DEVICE_A), b = open_device(group_b, DEVICE_B);
	int b1 = open_device(group_b, DEVICE_B1);
	mapping_rules(a, b, b1);

	struct addr dev_a = at(PHB(1), 1, 0), dev_b = at(PHB(2), 1, 0);
	bad_buffers(dev_a);

	/* Addresses that are not this VM's answer as nonexistent. */
	CHECK(read_state(at(0x1234, 1, 0), NULL) == (0xdead0000 | 0xfffd), "another BUID");
	CHECK(read_state(at(PHB(1), 2, 0), NULL) == (0xdead0000 | 0xfffd), "an empty slot");
	CHECK(read_state(at(PHB(3), 1, 0), NULL) == (0xdead0000 | 0xfffd), "an empty PHB");
	int group_c = open_group("/dev/vfio/2");
	int c = open_device(group_c, DEVICE_C);
	CHECK(map_set(c, PHB(3), 1, 0) == 0, "SET C");
	CHECK(read_state(at(PHB(3), 1, 0), NULL) == 0, "C mapped");
	close(c);
	close(group_c);
	CHECK(read_state(at(PHB(3), 1, 0), NULL) == (0xdead0000 | 0xfffd), "C's group closed: gone");

	/* Probe, as pseries_eeh_probe and eeh_pe_config_addr do. */
	uint32_t shared_a, shared_b;
	struct addr pe_a = pe_of(dev_a, &shared_a), pe_b = pe_of(dev_b, &shared_b);
	CHECK(pe_a.config == 0x801 && shared_a == 1, "A's PE %#x, shared %u", pe_a.config, shared_a);
	CHECK(pe_b.config == 0x801 && shared_b == 2, "B's PE %#x, shared %u", pe_b.config, shared_b);
	CHECK(option(dev_a, 1) == 0 && option(dev_b, 1) == 0, "set-eeh-option enable");
	CHECK(read_state(pe_a, NULL) == 0 && read_state(pe_b, NULL) == 0, "both normal");
	uint32_t healthy = config_dword(a), healthy_b = config_dword(b);
	CHECK(healthy != 0xffffffff, "A's IDs %#x", healthy);

	/* Inject a freeze from the guest side. */
	uint32_t out[2];
	served("ibm,open-errinjct", 0, NULL, 2, out); /* rets: token, status */
	CHECK(out[1] == 0, "open-errinjct status %d", (int)out[1]);
	uint32_t errinjct_token = out[0];
	served("ibm,open-errinjct", 0, NULL, 2, out);
	CHECK(out[1] == (uint32_t)-4, "open twice: %d", (int)out[1]);
	uint64_t work_at = RAM_BASE + 0x1000;
	uint32_t *work = (uint32_t *)((char *)guest_ram + 0x1000);
	uint32_t block[6] = { 0, 0, pe_a.config, pe_a.hi, pe_a.lo, LOAD_CONFIG_ADDR };
	for (int i = 0; i < 6; i++)
		work[i] = htobe32(block[i]);
	uint32_t inject[3] = { IOA_BUS_ERROR, errinjct_token + 1, (uint32_t)work_at };
	CHECK(served("ibm,errinjct", 3, inject, 1, NULL) == (uint32_t)-4, "errinjct with another's token");
	inject[1] = errinjct_token;
	uint32_t unaligned[3] = { IOA_BUS_ERROR, errinjct_token, (uint32_t)work_at + 8 };
	CHECK(served("ibm,errinjct", 3, unaligned, 1, NULL) == PARAMETER_ERROR, "unaligned work buffer");
	CHECK(served("ibm,errinjct", 3, inject, 1, NULL) == 0, "errinjct");
	uint32_t close_in[1] = { errinjct_token };
	CHECK(served("ibm,close-errinjct", 1, close_in, 1, NULL) == 0, "close-errinjct");

	/*
	 * Observe it: A is frozen, B is not. The config load comes first: a host
	 * that arms injections until an access names them (eehd's) fires it there.
	 */
	CHECK(config_dword(a) == 0xffffffff, "A reads all ones while frozen");
	CHECK(read_state(pe_a, NULL) == 2, "A stopped: %#x", read_state(pe_a, NULL));
	CHECK(read_state(pe_b, NULL) == 0 && config_dword(b) == healthy_b, "B untouched");
	uint32_t detail[8] = { pe_a.config, pe_a.hi, pe_a.lo, 0, 0, (uint32_t)RAM_BASE, 1024, 1 };
	uint32_t detail_status = served("ibm,slot-error-detail", 8, detail, 1, NULL);
	CHECK(detail_status == 0, "slot-error-detail: a log (status %d)", (int)detail_status);
	CHECK(((unsigned char *)guest_ram)[0] != 0 || ((unsigned char *)guest_ram)[4] != 0, "the log is in RAM");

	/* Recover, as eeh_reset_pe and eeh_pe_configure do. */
	CHECK(slot_reset(pe_a, 1) == 0, "set-slot-reset assert");
	CHECK(settled_state(pe_a) == 1, "reset asserted");
	CHECK(slot_reset(pe_a, 0) == 0, "set-slot-reset deassert");
	CHECK(settled_state(pe_a) == 0, "settled: %#x", read_state(pe_a, NULL));
	CHECK(configure(pe_a) == 0, "configure-pe");
	CHECK(read_state(pe_a, NULL) == 0, "A normal again");
	CHECK(config_dword(a) == healthy, "A reads its IDs again");
	CHECK(read_state(pe_b, NULL) == 0 && config_dword(b) == healthy_b, "B untouched throughout");

	printf("ok (%d checks)\n", checks);
	return 0;
}
