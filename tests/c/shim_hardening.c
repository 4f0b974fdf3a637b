/*
 * A program that is hard on the vfio-shim preload library, run under it by
 * crates/vfio-shim/tests/hardening.rs (one scenario per run):
 *
 *   shim_hardening closeall SOCKET  closes every descriptor 3..4095 and
 *       replaces the library's sockets (dup2 onto them) like a daemon; the
 *       control socket must still answer and its thread must not spin.
 *   shim_hardening irqs SOCKET      under a descriptor limit of 1100, opens a
 *       device, prints "ready", waits for a line on stdin (meanwhile the
 *       test opens many idle control connections), then sets an IRQ eventfd.
 *   shim_hardening fork N           forks N times while threads hammer the
 *       emulation and the control socket; each child uses an emulated fd.
 *   shim_hardening fdrace SECONDS   threads open, duplicate and close
 *       emulated and real descriptors at once (close, close_range, dup2,
 *       dup3); a real descriptor must never reach the emulation.
 *   shim_hardening efault           ioctl arguments at unmapped and
 *       read-only addresses answer EFAULT.
 *   shim_hardening hello SOCKET     one control request (not under the
 *       library): succeeds if answered.
 *
 * Prints "ok" and exits 0 on success; prints why and exits 1 otherwise.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/vfio.h>

#define DEVICE "0000:01:00.0"

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	_exit(1);
}

static int open_or_fail(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		fail("open %s: %s", path, strerror(errno));
	return fd;
}

/* A device fd of DEVICE: container, group 0, sPAPR TCE v2 IOMMU. */
static int open_device(void)
{
	int container = open_or_fail("/dev/vfio/vfio");
	int group = open_or_fail("/dev/vfio/0");
	if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) != 0)
		fail("SET_CONTAINER: %s", strerror(errno));
	if (ioctl(container, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU) != 0)
		fail("SET_IOMMU: %s", strerror(errno));
	int device = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, DEVICE);
	if (device < 0)
		fail("GET_DEVICE_FD: %s", strerror(errno));
	return device;
}

/* One control request; 1 if answered with a line naming `expect`. */
static int control(const char *socket_path, const char *request, const char *expect)
{
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", socket_path);
	struct timeval tv = { .tv_sec = 5 };
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	int ok = 0;
	if (connect(s, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
	    send(s, request, strlen(request), MSG_NOSIGNAL) == (ssize_t)strlen(request)) {
		static _Thread_local char buf[1 << 16];
		size_t n = 0;
		ssize_t r;
		while (n < sizeof(buf) - 1 && (r = read(s, buf + n, sizeof(buf) - 1 - n)) > 0) {
			n += (size_t)r;
			if (memchr(buf, '\n', n))
				break;
		}
		buf[n] = 0;
		ok = strstr(buf, expect) != NULL;
	}
	close(s);
	return ok;
}

static int hello(const char *socket_path)
{
	return control(socket_path, "{\"request\":\"hello\"}\n", "\"response\":\"hello\"");
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int closeall(const char *socket_path)
{
	int container = open_or_fail("/dev/vfio/vfio");
	(void)container;
	if (!hello(socket_path))
		fail("no answer before closing");
	for (int fd = 3; fd < 4096; fd++)
		close(fd);
	close_range(3, ~0U, 0);
	if (!hello(socket_path))
		fail("no answer after closing every descriptor");
	/* Replace every socket above 999 (the library's) with /dev/null. */
	int null = open("/dev/null", O_RDWR);
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *e;
	int replaced = 0;
	while ((e = readdir(dir)) != NULL) {
		int fd = atoi(e->d_name);
		char link[64], target[64];
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, target, sizeof(target) - 1);
		if (fd >= 1000 && n > 0 && strncmp(target, "socket:", 7) == 0) {
			dup2(null, fd);
			replaced++;
		}
	}
	closedir(dir);
	if (replaced == 0)
		fail("no library socket found");
	double before = cpu_seconds();
	int answered = 0;
	for (int i = 0; i < 50 && !answered; i++) {
		answered = hello(socket_path);
		if (!answered)
			usleep(100000);
	}
	if (!answered)
		fail("no answer after replacing the listener");
	usleep(1000000);
	double spent = cpu_seconds() - before;
	if (spent > 0.5)
		fail("the library spins: %.2f s of CPU in about a second", spent);
	return 0;
}

static int irqs(void)
{
	struct rlimit lim = { .rlim_cur = 1100, .rlim_max = 1100 };
	if (setrlimit(RLIMIT_NOFILE, &lim) != 0)
		fail("setrlimit: %s", strerror(errno));
	int device = open_device();
	printf("ready\n");
	fflush(stdout);
	char line[16];
	if (!fgets(line, sizeof(line), stdin))
		fail("no go");
	char buf[sizeof(struct vfio_irq_set) + sizeof(int)];
	struct vfio_irq_set *set = (struct vfio_irq_set *)buf;
	int efd = eventfd(0, EFD_CLOEXEC);
	*set = (struct vfio_irq_set){
		.argsz = sizeof(buf),
		.flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
		.index = VFIO_PCI_ERR_IRQ_INDEX,
		.start = 0,
		.count = 1,
	};
	memcpy(set->data, &efd, sizeof(efd));
	if (ioctl(device, VFIO_DEVICE_SET_IRQS, set) != 0)
		fail("SET_IRQS: %s", strerror(errno));
	return 0;
}

static atomic_int stop;
static int hammer_fd;
static const char *hammer_socket;

static void *hammer_ioctl(void *unused)
{
	(void)unused;
	while (!atomic_load(&stop))
		ioctl(hammer_fd, VFIO_GET_API_VERSION);
	return NULL;
}

static void *hammer_control(void *unused)
{
	(void)unused;
	while (!atomic_load(&stop))
		control(hammer_socket, "{\"request\":\"op_log\"}\n", "op_log");
	return NULL;
}

static int forks(int n, const char *socket_path)
{
	hammer_fd = open_or_fail("/dev/vfio/vfio");
	hammer_socket = socket_path;
	pthread_t threads[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&threads[i], NULL, i < 3 ? hammer_ioctl : hammer_control, NULL);
	for (int i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid < 0)
			fail("fork: %s", strerror(errno));
		if (pid == 0)
			_exit(ioctl(hammer_fd, VFIO_GET_API_VERSION) == VFIO_API_VERSION ? 0 : 2);
		int status = 0;
		struct timespec start, now;
		clock_gettime(CLOCK_MONOTONIC, &start);
		for (;;) {
			if (waitpid(pid, &status, WNOHANG) == pid)
				break;
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec - start.tv_sec > 5) {
				kill(pid, SIGKILL);
				waitpid(pid, &status, 0);
				fail("child %d of %d hangs", i + 1, n);
			}
			usleep(200);
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail("child %d of %d failed (status %#x)", i + 1, n, status);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 4; i++)
		pthread_join(threads[i], NULL);
	return 0;
}

static atomic_long misrouted;
static double race_seconds;

static double now_seconds(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A real descriptor answering VFIO_GET_API_VERSION was routed to the emulation. */
static void check_real(int fd)
{
	if (ioctl(fd, VFIO_GET_API_VERSION) >= 0)
		atomic_fetch_add(&misrouted, 1);
}

static void *race_emulated(void *arg)
{
	long way = (long)arg;
	double end = now_seconds() + race_seconds;
	while (now_seconds() < end) {
		int fd = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		switch (way) {
		case 0:
			close(fd);
			break;
		case 1:
			close_range((unsigned)fd, (unsigned)fd, 0);
			break;
		case 2: {
			int null = open("/dev/null", O_RDWR | O_CLOEXEC);
			dup2(null, fd);
			check_real(fd);
			close(null);
			close(fd);
			break;
		}
		default: {
			int null = open("/dev/null", O_RDWR | O_CLOEXEC);
			dup3(null, fd, O_CLOEXEC);
			check_real(fd);
			close(null);
			close(fd);
			break;
		}
		}
	}
	return NULL;
}

static void *race_real(void *unused)
{
	(void)unused;
	double end = now_seconds() + race_seconds;
	while (now_seconds() < end) {
		int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		check_real(fd);
		close(fd);
	}
	return NULL;
}

static int fdrace(double seconds)
{
	race_seconds = seconds;
	pthread_t threads[6];
	for (long i = 0; i < 4; i++)
		pthread_create(&threads[i], NULL, race_emulated, (void *)i);
	for (int i = 4; i < 6; i++)
		pthread_create(&threads[i], NULL, race_real, NULL);
	for (int i = 0; i < 6; i++)
		pthread_join(threads[i], NULL);
	if (atomic_load(&misrouted) != 0)
		fail("%ld calls on real descriptors reached the emulation", atomic_load(&misrouted));
	return 0;
}

static int efault(void)
{
	int device = open_device();
	int group = open_or_fail("/dev/vfio/1");
	void *unmapped = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(unmapped, 4096);
	static const struct vfio_group_status read_only = { .argsz = sizeof(struct vfio_group_status) };
	struct {
		const char *what;
		int fd;
		unsigned long request;
		const void *arg;
	} cases[] = {
		{ "GROUP_GET_STATUS at an unmapped address", group, VFIO_GROUP_GET_STATUS, unmapped },
		{ "GROUP_GET_STATUS into read-only memory", group, VFIO_GROUP_GET_STATUS, &read_only },
		{ "DEVICE_GET_INFO at an unmapped address", device, VFIO_DEVICE_GET_INFO, unmapped },
		{ "GET_DEVICE_FD with an unmapped name", group, VFIO_GROUP_GET_DEVICE_FD, unmapped },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		errno = 0;
		int ret = ioctl(cases[i].fd, cases[i].request, cases[i].arg);
		if (ret != -1 || errno != EFAULT)
			fail("%s: %d (%s), not EFAULT", cases[i].what, ret, strerror(errno));
	}
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		fail("usage: shim_hardening closeall|irqs|fork|fdrace|efault [ARG]");
	const char *socket_path = getenv("VFIO_EEH_SHIM_SOCKET");
	int ret;
	if (strcmp(argv[1], "closeall") == 0 && socket_path)
		ret = closeall(socket_path);
	else if (strcmp(argv[1], "irqs") == 0)
		ret = irqs();
	else if (strcmp(argv[1], "fork") == 0 && argc > 2 && socket_path)
		ret = forks(atoi(argv[2]), socket_path);
	else if (strcmp(argv[1], "fdrace") == 0 && argc > 2)
		ret = fdrace(atof(argv[2]));
	else if (strcmp(argv[1], "hello") == 0 && argc > 2)
		ret = hello(argv[2]) ? 0 : (fail("not answered"), 1);
	else if (strcmp(argv[1], "efault") == 0)
		ret = efault();
	else
		fail("unknown scenario %s (or VFIO_EEH_SHIM_SOCKET unset)", argv[1]);
	printf("ok\n");
	return ret;
}
