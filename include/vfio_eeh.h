/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * vfio-eeh for C VMMs: the address-mapping ioctl on VFIO device fds and the
 * RTAS EEH entry point of the preload library (libvfio_eeh_shim.so).
 *
 * The VMM tells the host each passed-through device's guest address with
 * VFIO_DEVICE_ADDR_MAPPING, then hands every guest RTAS EEH call over as the
 * raw rtas_args buffer, as the design's in-kernel RTAS would take it; the
 * host resolves the guest addresses the call names through this VM's
 * mappings only and writes the return cells. See docs/rtas.md.
 *
 * The two functions are exported by the preload library; a VMM that may run
 * without it looks them up:
 *
 *	vfio_eeh_rtas_fn *rtas = (vfio_eeh_rtas_fn *)dlsym(RTLD_DEFAULT, "vfio_eeh_rtas");
 */
#ifndef VFIO_EEH_H
#define VFIO_EEH_H

#include <stdint.h>
#include <linux/types.h>
#include <linux/vfio.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The address mapping: the seed's payload (a virtual PHB's BUID plus the
 * guest bus, slot and function) after the VFIO argsz/flags header.
 */
struct vfio_addr_mapping {
	__u64 buid;
	__u8 bus;
	__u8 slot;
	__u8 func;
};

struct vfio_device_addr_mapping {
	__u32 argsz; /* sizeof(struct vfio_device_addr_mapping), 24 */
	__u32 flags; /* exactly one of: */
#define VFIO_DEVICE_ADDR_MAPPING_GET (1 << 0)   /* fill mapping in */
#define VFIO_DEVICE_ADDR_MAPPING_SET (1 << 1)   /* install mapping */
#define VFIO_DEVICE_ADDR_MAPPING_CLEAR (1 << 2) /* remove it */
	struct vfio_addr_mapping mapping;
};

/*
 * On a device fd. 0, or -1 with errno:
 *   EINVAL  argsz below 24, flags not exactly one of the three, slot > 31 or
 *           func > 7, a BUID that is not one of the VM's virtual PHBs, a
 *           function of a PE whose other functions sit under another PHB;
 *   EEXIST  SET: the guest address names another device already;
 *   EBUSY   SET: this device is mapped already (CLEAR it first);
 *   ENOENT  GET, CLEAR: the device is not mapped;
 *   EFAULT  the argument cannot be read or written;
 *   ENOTTY  the platform has no mapping (VFIO_EEH_SHIM_PLATFORM=none).
 * A failed call changes nothing. Closing the device's group removes its
 * mappings.
 */
#define VFIO_DEVICE_ADDR_MAPPING _IO(VFIO_TYPE, VFIO_BASE + 27)

/* QEMU's first sPAPR PHB's BUID (SPAPR_PCI_BASE_BUID); PHB n has BASE + n. */
#define VFIO_EEH_SPAPR_BASE_BUID 0x800000020000000ULL

/*
 * An RTAS call as PAPR and Linux lay it out (struct rtas_args without the
 * kernel's rets pointer): every cell big-endian, the nret return cells right
 * after the nargs arguments, nargs + nret <= 16.
 */
struct vfio_eeh_rtas_args {
	__be32 token;
	__be32 nargs;
	__be32 nret;
	__be32 args[16];
};

/*
 * Guest real memory for the calls that name guest buffers
 * (ibm,slot-error-detail's return buffer, ibm,errinjct's work buffer):
 * guest real addresses [base, base + size) are at host in this process.
 */
struct vfio_eeh_guest_ram {
	void *host;
	__u64 base;
	__u64 size;
};

/*
 * Serves the RTAS call in args (token, nargs, nret, args[]) for this VM and
 * writes its return cells, args[nargs .. nargs + nret), rets[0] the PAPR
 * status. ram may be NULL (calls naming guest buffers then answer -3).
 *
 * Returns 0 when the call was served: every failure the buffer can carry is
 * a PAPR status in rets[0] (-3, parameter error, for a bad token, wrong
 * nargs or nret, or an address this VM has not mapped, as the real call
 * answers an address that names nothing). Otherwise a negative errno:
 *   -EINVAL  nret is 0 or nargs + nret > 16: no room for a status;
 *   -EFAULT  args or ram (or the cells they name) cannot be read or written;
 *   -ENODEV  the emulation could not start (bad VFIO_EEH_SHIM_* setting).
 */
int vfio_eeh_rtas(struct vfio_eeh_rtas_args *args, const struct vfio_eeh_guest_ram *ram);
typedef int vfio_eeh_rtas_fn(struct vfio_eeh_rtas_args *args, const struct vfio_eeh_guest_ram *ram);

/*
 * The token of the RTAS call named name ("ibm,set-eeh-option",
 * "ibm,get-config-addr-info2", "ibm,read-slot-reset-state2",
 * "ibm,set-slot-reset", "ibm,configure-pe", "ibm,slot-error-detail",
 * "ibm,open-errinjct", "ibm,errinjct", "ibm,close-errinjct", and the older
 * "ibm,get-config-addr-info", "ibm,read-slot-reset-state",
 * "ibm,configure-bridge"), to put in token; a VMM maps its own token numbers
 * (what its guest's /rtas node says) to these. -ENOENT for any other name,
 * -EFAULT for a bad pointer.
 */
int vfio_eeh_rtas_token(const char *name);
typedef int vfio_eeh_rtas_token_fn(const char *name);

#ifdef __cplusplus
}
#endif

#endif /* VFIO_EEH_H */
