/* The controlled link: namespaces and rules through the `ip`, `nft` and `tc`
 * commands, TUN devices opened from inside each namespace, and a forwarder
 * thread that delays packets between them (see link.h for the picture). */
#include "compare/link.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/prng.h"
#include "m2m/err.h"

extern char **environ;

#define NETNS_DIR "/run/netns"
#define SLOT_SIZE 2048 /* the TUN's MTU is 1500: every packet fits */
#define READ_BATCH 64  /* packets read from one TUN before looking at the other */
#define CMD_OUT_MAX 8192
#define NFT_TABLE "m2mlink"

enum dir { DIR_UP = 0, DIR_DOWN = 1 };

/* One direction's hold: a FIFO of packets, each with the time it is due.
 * Due times never decrease, so order is kept and the head is always next. */
struct hold {
    uint8_t *data; /* cap * SLOT_SIZE */
    uint64_t *due_ns;
    uint16_t *len;
    uint32_t cap, head, count;
    uint64_t last_due_ns;
    uint64_t delay_ns, jitter_ns;
    int in_fd, out_fd; /* read from the sender's TUN, write to the receiver's */
    _Atomic uint64_t read_pkts, written_pkts, overflow_pkts, write_errors;
};

struct m2m_link {
    struct m2m_link_config cfg;
    char prefix[M2M_LINK_PREFIX_MAX + 1];
    char netns[2][M2M_LINK_PREFIX_MAX + 8];
    char ip_path[PATH_MAX], nft_path[PATH_MAX], tc_path[PATH_MAX];
    pid_t owner;
    int ns_fd[2];     /* /run/netns/<name>, per side */
    int tun_fd[2];    /* the TUN of each side; the device dies with it */
    int netdev_fd[2]; /* /proc/net/dev as seen inside each side */
    int stop_fd;      /* eventfd that ends the forwarder */
    bool thread_running;
    pthread_t thread;
    struct m2m_prng prng;
    struct hold hold[2];
};

static void errf(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t cap, const char *fmt, ...)
{
    if (!err || !cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void m2m_link_config_init(struct m2m_link_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
}

/* ---- commands ---------------------------------------------------------- */

/* The absolute path of a command, looked up in PATH and then in the sbin
 * directories, which a user's PATH often lacks. */
static bool find_tool(const char *name, char *out, size_t cap)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/sbin:/usr/bin:/bin", path ? path : "");
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        if ((size_t)snprintf(out, cap, "%s/%s", d, name) < cap && access(out, X_OK) == 0)
            return true;
    }
    out[0] = '\0';
    return false;
}

/* Appends up to `n` bytes to a NUL-terminated buffer of capacity `cap`. */
static void append(char *buf, size_t cap, size_t *len, const char *p, size_t n)
{
    if (*len + 1 >= cap)
        return;
    if (n > cap - 1 - *len)
        n = cap - 1 - *len;
    memcpy(buf + *len, p, n);
    *len += n;
    buf[*len] = '\0';
}

/* Runs argv (argv[0] an absolute path) to completion. Its stdout is kept in
 * `out` and its stderr in `errtext` (each NUL-terminated, truncated, either
 * may be NULL). Returns the exit status (0: success, 128+n: killed by
 * signal n) or -errno when it could not be started. */
static int run_cmd(char *const argv[], char *out, size_t outcap, char *errtext, size_t errcap)
{
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    size_t olen = 0, elen = 0;
    int rc;
    if (out && outcap)
        out[0] = '\0';
    if (errtext && errcap)
        errtext[0] = '\0';
    if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) {
        rc = -errno;
        goto out;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    pid_t pid;
    rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(po[1]);
    close(pe[1]);
    po[1] = pe[1] = -1;
    if (rc) {
        rc = -rc;
        goto out;
    }
    struct pollfd pfd[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    int open_fds = 2;
    while (open_fds > 0) {
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (pfd[i].fd < 0 || !pfd[i].revents)
                continue;
            char buf[1024];
            ssize_t n = read(pfd[i].fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                pfd[i].fd = -1;
                open_fds--;
                continue;
            }
            if (i == 0 && out)
                append(out, outcap, &olen, buf, (size_t)n);
            else if (i == 1 && errtext)
                append(errtext, errcap, &elen, buf, (size_t)n);
        }
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            rc = -errno;
            goto out;
        }
    }
    rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
out:
    for (int i = 0; i < 2; i++) {
        if (po[i] >= 0)
            close(po[i]);
        if (pe[i] >= 0)
            close(pe[i]);
    }
    /* The last line of stderr is the useful one; drop its newline. */
    if (errtext && elen && errtext[elen - 1] == '\n')
        errtext[elen - 1] = '\0';
    return rc;
}

/* Runs a command that must succeed; on failure `err` names the command and
 * quotes its stderr. */
static int must_run(char *const argv[], char *out, size_t outcap, char *err, size_t errcap)
{
    char etext[512];
    int rc = run_cmd(argv, out, outcap, etext, sizeof etext);
    if (rc == 0)
        return 0;
    char line[512];
    size_t n = 0;
    line[0] = '\0';
    for (int i = 0; argv[i] && n < sizeof line - 1; i++)
        n += (size_t)snprintf(line + n, sizeof line - n, "%s%s", i ? " " : "", argv[i]);
    if (rc < 0)
        errf(err, errcap, "cannot run '%s': %s", line, strerror(-rc));
    else
        errf(err, errcap, "'%s' failed (status %d): %s", line, rc, etext[0] ? etext : "no message");
    return M2M_EIO;
}

/* ---- namespaces -------------------------------------------------------- */

static bool netns_exists(const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", NETNS_DIR, name);
    return access(path, F_OK) == 0;
}

static int netns_del(const struct m2m_link *l, const char *name)
{
    char *argv[] = {(char *)l->ip_path, "netns", "del", (char *)name, NULL};
    return run_cmd(argv, NULL, 0, NULL, 0);
}

/* "m2m<pid>-dev" or "m2m<pid>-srv": the default names, parsed to their pid. */
static bool default_name_pid(const char *name, long *pid)
{
    if (strncmp(name, "m2m", 3) != 0)
        return false;
    char *end;
    errno = 0;
    long v = strtol(name + 3, &end, 10);
    if (errno || end == name + 3 || v <= 0 || name[3] == '-' || name[3] == '+')
        return false;
    if (strcmp(end, "-dev") != 0 && strcmp(end, "-srv") != 0)
        return false;
    *pid = v;
    return true;
}

/* Removes namespaces of default-named links whose process has gone: the
 * remains of runs that were killed before they could clean up. */
static void sweep_stale(const struct m2m_link *l)
{
    DIR *d = opendir(NETNS_DIR);
    if (!d)
        return;
    struct dirent *e;
    char names[32][NAME_MAX + 1];
    int n = 0;
    while ((e = readdir(d)) != NULL && n < 32) {
        long pid;
        if (!default_name_pid(e->d_name, &pid) || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        snprintf(names[n++], sizeof names[0], "%s", e->d_name);
    }
    closedir(d);
    for (int i = 0; i < n; i++)
        netns_del(l, names[i]);
}

/* Runs fn(arg) with the calling thread inside a namespace, then returns the
 * thread to the namespace it came from. */
static int in_netns(int ns_fd, int (*fn)(struct m2m_link *, int, void *), struct m2m_link *l, int side,
                    void *arg, char *err, size_t errcap)
{
    int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0) {
        errf(err, errcap, "cannot open /proc/thread-self/ns/net: %s", strerror(errno));
        return M2M_EUNSUPPORTED;
    }
    if (setns(ns_fd, CLONE_NEWNET)) {
        errf(err, errcap, "cannot enter network namespace %s: %s (needs CAP_SYS_ADMIN)", l->netns[side],
             strerror(errno));
        close(home);
        return M2M_EUNSUPPORTED;
    }
    int rc = fn(l, side, arg);
    if (setns(home, CLONE_NEWNET)) {
        /* A thread left in the wrong namespace would open the caller's
         * sockets there: nothing sane can follow. */
        abort();
    }
    close(home);
    return rc;
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, strlen(text));
    int rc = n < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* Inside a side's namespace: IPv4 only (no stray IPv6 packets in the
 * counts), the TUN, and a /proc/net/dev that keeps showing this namespace. */
static int open_side(struct m2m_link *l, int side, void *arg)
{
    char *err = arg;
    /* Errors ignored: a kernel without IPv6 has nothing to turn off. */
    (void)write_file("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
    (void)write_file("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        errf(err, 256, "cannot open /dev/net/tun: %s (needs the TUN driver and root)", strerror(errno));
        return M2M_EUNSUPPORTED;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", M2M_LINK_IFNAME);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        errf(err, 256, "cannot create TUN %s in %s: %s (needs CAP_NET_ADMIN)", M2M_LINK_IFNAME,
             l->netns[side], strerror(errno));
        close(fd);
        return M2M_EUNSUPPORTED;
    }
    l->tun_fd[side] = fd;
    l->netdev_fd[side] = open("/proc/thread-self/net/dev", O_RDONLY | O_CLOEXEC);
    if (l->netdev_fd[side] < 0) {
        errf(err, 256, "cannot open /proc/thread-self/net/dev in %s: %s", l->netns[side], strerror(errno));
        return M2M_EUNSUPPORTED;
    }
    return 0;
}

/* ---- forwarder --------------------------------------------------------- */

static int hold_init(struct hold *h, uint32_t cap)
{
    h->cap = cap;
    h->data = malloc((size_t)cap * SLOT_SIZE);
    h->due_ns = calloc(cap, sizeof *h->due_ns);
    h->len = calloc(cap, sizeof *h->len);
    return h->data && h->due_ns && h->len ? 0 : M2M_ENOMEM;
}

static void hold_free(struct hold *h)
{
    free(h->data);
    free(h->due_ns);
    free(h->len);
    h->data = NULL;
    h->due_ns = NULL;
    h->len = NULL;
}

/* Writes every packet whose time has come. */
static void hold_release(struct hold *h, uint64_t now)
{
    while (h->count && h->due_ns[h->head] <= now) {
        ssize_t n = write(h->out_fd, h->data + (size_t)h->head * SLOT_SIZE, h->len[h->head]);
        if (n < 0)
            atomic_fetch_add_explicit(&h->write_errors, 1, memory_order_relaxed);
        else
            atomic_fetch_add_explicit(&h->written_pkts, 1, memory_order_relaxed);
        h->head = (h->head + 1) % h->cap;
        h->count--;
    }
}

/* Reads what the sender's TUN has, stamping each packet with its due time. */
static void hold_take(struct m2m_link *l, struct hold *h)
{
    static __thread uint8_t scratch[SLOT_SIZE];
    for (int i = 0; i < READ_BATCH; i++) {
        uint32_t slot = (h->head + h->count) % h->cap;
        uint8_t *buf = h->count < h->cap ? h->data + (size_t)slot * SLOT_SIZE : scratch;
        ssize_t n = read(h->in_fd, buf, SLOT_SIZE);
        if (n <= 0)
            return;
        atomic_fetch_add_explicit(&h->read_pkts, 1, memory_order_relaxed);
        if (buf == scratch) {
            atomic_fetch_add_explicit(&h->overflow_pkts, 1, memory_order_relaxed);
            continue;
        }
        uint64_t due = mono_ns() + h->delay_ns;
        if (h->jitter_ns)
            due += m2m_prng_next(&l->prng) % (h->jitter_ns + 1);
        if (due < h->last_due_ns)
            due = h->last_due_ns; /* keep order: a packet never overtakes */
        h->last_due_ns = due;
        h->due_ns[slot] = due;
        h->len[slot] = (uint16_t)n;
        h->count++;
    }
}

static void *forwarder_main(void *arg)
{
    struct m2m_link *l = arg;
    /* Wake-ups to the microsecond: the default 50 us slack is fine, but
     * nothing is gained by letting the kernel batch our timers. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    for (;;) {
        uint64_t now = mono_ns();
        hold_release(&l->hold[DIR_UP], now);
        hold_release(&l->hold[DIR_DOWN], now);
        uint64_t next = UINT64_MAX;
        for (int d = 0; d < 2; d++) {
            const struct hold *h = &l->hold[d];
            if (h->count && h->due_ns[h->head] < next)
                next = h->due_ns[h->head];
        }
        struct timespec ts, *tsp = NULL;
        if (next != UINT64_MAX) {
            uint64_t wait = next > now ? next - now : 0;
            ts.tv_sec = (time_t)(wait / 1000000000u);
            ts.tv_nsec = (long)(wait % 1000000000u);
            tsp = &ts;
        }
        struct pollfd pfd[3] = {{.fd = l->hold[DIR_UP].in_fd, .events = POLLIN},
                                {.fd = l->hold[DIR_DOWN].in_fd, .events = POLLIN},
                                {.fd = l->stop_fd, .events = POLLIN}};
        int n = ppoll(pfd, 3, tsp, NULL);
        if (n < 0 && errno != EINTR)
            break;
        if (n <= 0)
            continue;
        if (pfd[2].revents)
            break;
        if (pfd[0].revents & POLLIN)
            hold_take(l, &l->hold[DIR_UP]);
        if (pfd[1].revents & POLLIN)
            hold_take(l, &l->hold[DIR_DOWN]);
    }
    return NULL;
}

/* ---- set-up ------------------------------------------------------------ */

static bool prefix_ok(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > M2M_LINK_PREFIX_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_'))
            return false;
    }
    return true;
}

static int check_config(const struct m2m_link_config *c, char *err, size_t errcap)
{
    if (!(c->loss_up >= 0 && c->loss_up <= 1) || !(c->loss_down >= 0 && c->loss_down <= 1)) {
        errf(err, errcap, "loss must be between 0 and 1 (0 %% to 100 %%)");
        return M2M_EINVAL;
    }
    if (c->delay_ms_up > 60000 || c->delay_ms_down > 60000 || c->jitter_ms > 60000) {
        errf(err, errcap, "delay and jitter are limited to 60000 ms");
        return M2M_EINVAL;
    }
    if (c->rate_bps && c->rate_bps < 1000) {
        errf(err, errcap, "rate below 1 kbit/s is not supported");
        return M2M_EINVAL;
    }
    if (c->queue_packets > 1u << 20) {
        errf(err, errcap, "queue_packets is limited to %u", 1u << 20);
        return M2M_EINVAL;
    }
    if (c->name_prefix) {
        long pid;
        char probe[M2M_LINK_PREFIX_MAX + 8];
        if (!prefix_ok(c->name_prefix)) {
            errf(err, errcap, "name prefix '%s': 1 to %d letters, digits, '-' or '_'", c->name_prefix,
                 M2M_LINK_PREFIX_MAX);
            return M2M_EINVAL;
        }
        /* m2m<pid> is the default form, swept when its pid is gone. */
        snprintf(probe, sizeof probe, "%s-dev", c->name_prefix);
        if (default_name_pid(probe, &pid) && pid != (long)getpid()) {
            errf(err, errcap, "name prefix '%s' has the form m2m<pid> reserved for default names",
                 c->name_prefix);
            return M2M_EINVAL;
        }
    }
    return 0;
}

/* Names everything that is missing, in one message. */
static int check_needs(struct m2m_link *l, char *err, size_t errcap)
{
    char missing[512] = "";
    size_t n = 0;
    if (geteuid() != 0)
        n += (size_t)snprintf(missing + n, sizeof missing - n,
                              "; root (network namespaces and TUN devices need CAP_NET_ADMIN and "
                              "CAP_SYS_ADMIN: run with sudo)");
    if (!find_tool("ip", l->ip_path, sizeof l->ip_path))
        n +=
            (size_t)snprintf(missing + n, sizeof missing - n, "; the 'ip' command (Debian package iproute2)");
    if (!find_tool("nft", l->nft_path, sizeof l->nft_path))
        n += (size_t)snprintf(missing + n, sizeof missing - n,
                              "; the 'nft' command (Debian package nftables)");
    if (!find_tool("tc", l->tc_path, sizeof l->tc_path) && l->cfg.rate_bps)
        n += (size_t)snprintf(missing + n, sizeof missing - n,
                              "; the 'tc' command for --rate (Debian package iproute2)");
    if (access("/dev/net/tun", R_OK | W_OK) != 0 && geteuid() == 0)
        n += (size_t)snprintf(missing + n, sizeof missing - n,
                              "; /dev/net/tun (the TUN driver; in a container, pass the device in)");
    if (n == 0)
        return 0;
    errf(err, errcap, "the link needs%s", missing + 1);
    return M2M_EUNSUPPORTED;
}

static int setup_addresses(struct m2m_link *l, int side, char *err, size_t errcap)
{
    const char *ns = l->netns[side];
    const char *self = side == M2M_LINK_SIDE_DEVICE ? M2M_LINK_DEVICE_ADDR : M2M_LINK_SERVER_ADDR;
    const char *peer = side == M2M_LINK_SIDE_DEVICE ? M2M_LINK_SERVER_ADDR : M2M_LINK_DEVICE_ADDR;
    char peer_cidr[32];
    snprintf(peer_cidr, sizeof peer_cidr, "%s/32", peer);
    char *ip = l->ip_path;
    char *lo[] = {ip, "-n", (char *)ns, "link", "set", "lo", "up", NULL};
    char *addr[] = {ip,     "-n",      (char *)ns, "addr",          "add", (char *)self,
                    "peer", peer_cidr, "dev",      M2M_LINK_IFNAME, NULL};
    char *up[] = {ip, "-n", (char *)ns, "link", "set", M2M_LINK_IFNAME, "up", NULL};
    int rc = must_run(lo, NULL, 0, err, errcap);
    if (!rc)
        rc = must_run(addr, NULL, 0, err, errcap);
    if (!rc)
        rc = must_run(up, NULL, 0, err, errcap);
    return rc;
}

/* Loss on the receiving side's ingress, so a sender never sees an error
 * from its own stack: the packet is lost on the way, as on a radio link.
 * The two named counters split what arrived into lost and delivered. */
static int setup_loss(struct m2m_link *l, int side, double loss, char *err, size_t errcap)
{
    unsigned k = (unsigned)(loss * 1000.0 + 0.5);
    char drop[128] = "";
    if (k)
        snprintf(drop, sizeof drop, "numgen random mod 1000 < %u counter name \"lost\" drop\n", k);
    char rules[1024];
    snprintf(rules, sizeof rules,
             "table netdev " NFT_TABLE " {\n"
             "  counter lost { }\n"
             "  counter delivered { }\n"
             "  chain ingress {\n"
             "    type filter hook ingress device \"" M2M_LINK_IFNAME "\" priority 0; policy accept;\n"
             "    %s"
             "    counter name \"delivered\"\n"
             "  }\n"
             "}\n",
             drop);
    char *argv[] = {l->ip_path, "netns", "exec", l->netns[side], l->nft_path, rules, NULL};
    return must_run(argv, NULL, 0, err, errcap);
}

/* tbf on the sending side's TUN. The bucket holds at least two full
 * packets (a smaller one would drop every MTU-sized packet); the queue
 * holds rate_queue_ms of traffic at the rate, so TCP sees delay before loss. */
static int setup_rate(struct m2m_link *l, int side, char *err, size_t errcap)
{
    uint64_t rate = l->cfg.rate_bps;
    uint64_t burst = rate / 8 / 100; /* 10 ms at the rate */
    if (burst < 3200)
        burst = 3200;
    uint64_t queue_ms = l->cfg.rate_queue_ms ? l->cfg.rate_queue_ms : 1000;
    uint64_t limit = rate / 8 * queue_ms / 1000;
    if (limit < 2 * burst)
        limit = 2 * burst;
    char srate[32], sburst[32], slimit[32];
    snprintf(srate, sizeof srate, "%llubit", (unsigned long long)rate);
    snprintf(sburst, sizeof sburst, "%llu", (unsigned long long)burst);
    snprintf(slimit, sizeof slimit, "%llu", (unsigned long long)limit);
    char *argv[] = {l->tc_path, "-n",   l->netns[side], "qdisc", "add",  "dev",   M2M_LINK_IFNAME, "root",
                    "tbf",      "rate", srate,          "burst", sburst, "limit", slimit,          NULL};
    return must_run(argv, NULL, 0, err, errcap);
}

static void teardown(struct m2m_link *l)
{
    bool owner = l->owner == getpid();
    if (l->thread_running && owner) {
        uint64_t one = 1;
        ssize_t w = write(l->stop_fd, &one, sizeof one);
        (void)w;
        pthread_join(l->thread, NULL);
        l->thread_running = false;
    }
    for (int s = 0; s < 2; s++) {
        if (l->tun_fd[s] >= 0)
            close(l->tun_fd[s]);
        if (l->netdev_fd[s] >= 0)
            close(l->netdev_fd[s]);
        if (l->ns_fd[s] >= 0)
            close(l->ns_fd[s]);
        l->tun_fd[s] = l->netdev_fd[s] = l->ns_fd[s] = -1;
    }
    if (l->stop_fd >= 0)
        close(l->stop_fd);
    l->stop_fd = -1;
    if (owner && l->ip_path[0]) {
        for (int s = 0; s < 2; s++) {
            if (l->netns[s][0] && netns_exists(l->netns[s]))
                netns_del(l, l->netns[s]);
        }
    }
    hold_free(&l->hold[0]);
    hold_free(&l->hold[1]);
}

int m2m_link_up(const struct m2m_link_config *cfg, struct m2m_link **out, char *err, size_t errcap)
{
    *out = NULL;
    int rc = check_config(cfg, err, errcap);
    if (rc)
        return rc;
    struct m2m_link *l = calloc(1, sizeof *l);
    if (!l) {
        errf(err, errcap, "out of memory");
        return M2M_ENOMEM;
    }
    l->cfg = *cfg;
    l->owner = getpid();
    l->stop_fd = -1;
    for (int s = 0; s < 2; s++)
        l->tun_fd[s] = l->netdev_fd[s] = l->ns_fd[s] = -1;
    if (cfg->name_prefix)
        snprintf(l->prefix, sizeof l->prefix, "%s", cfg->name_prefix);
    else
        snprintf(l->prefix, sizeof l->prefix, "m2m%ld", (long)getpid());
    l->cfg.name_prefix = l->prefix;
    snprintf(l->netns[M2M_LINK_SIDE_DEVICE], sizeof l->netns[0], "%s-dev", l->prefix);
    snprintf(l->netns[M2M_LINK_SIDE_SERVER], sizeof l->netns[1], "%s-srv", l->prefix);

    rc = check_needs(l, err, errcap);
    if (rc) {
        l->ip_path[0] = '\0'; /* nothing was created: nothing to delete */
        goto fail;
    }
    uint64_t seed = cfg->seed;
    if (!seed && getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
        seed = mono_ns() ^ (uint64_t)getpid();
    m2m_prng_seed(&l->prng, seed);

    /* Leftovers of a crashed run with this prefix, and of default-named
     * runs whose process is gone. */
    sweep_stale(l);
    for (int s = 0; s < 2; s++) {
        if (netns_exists(l->netns[s]) && netns_del(l, l->netns[s]) != 0) {
            errf(err, errcap, "a namespace %s is left over and cannot be removed (ip netns del %s)",
                 l->netns[s], l->netns[s]);
            rc = M2M_EEXIST;
            goto fail;
        }
    }
    for (int s = 0; s < 2; s++) {
        char *argv[] = {l->ip_path, "netns", "add", l->netns[s], NULL};
        if ((rc = must_run(argv, NULL, 0, err, errcap)) != 0) {
            size_t n = strlen(err);
            if (n < errcap)
                snprintf(err + n, errcap - n, " (network namespaces need root: CAP_SYS_ADMIN)");
            rc = M2M_EUNSUPPORTED;
            goto fail;
        }
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", NETNS_DIR, l->netns[s]);
        l->ns_fd[s] = open(path, O_RDONLY | O_CLOEXEC);
        if (l->ns_fd[s] < 0) {
            errf(err, errcap, "cannot open %s: %s", path, strerror(errno));
            rc = M2M_EIO;
            goto fail;
        }
        char msg[256] = "";
        rc = in_netns(l->ns_fd[s], open_side, l, s, msg, err, errcap);
        if (rc) {
            if (msg[0])
                errf(err, errcap, "%s", msg);
            goto fail;
        }
        if ((rc = setup_addresses(l, s, err, errcap)) != 0)
            goto fail;
    }
    /* Loss "up" is applied where device -> server traffic arrives. */
    if ((rc = setup_loss(l, M2M_LINK_SIDE_SERVER, cfg->loss_up, err, errcap)) != 0 ||
        (rc = setup_loss(l, M2M_LINK_SIDE_DEVICE, cfg->loss_down, err, errcap)) != 0)
        goto fail;
    if (cfg->rate_bps) {
        if ((rc = setup_rate(l, M2M_LINK_SIDE_DEVICE, err, errcap)) != 0 ||
            (rc = setup_rate(l, M2M_LINK_SIDE_SERVER, err, errcap)) != 0)
            goto fail;
    }

    uint32_t cap = cfg->queue_packets ? cfg->queue_packets : M2M_LINK_QUEUE_DEFAULT;
    for (int d = 0; d < 2; d++) {
        struct hold *h = &l->hold[d];
        if (hold_init(h, cap)) {
            errf(err, errcap, "out of memory for the forwarder's queues");
            rc = M2M_ENOMEM;
            goto fail;
        }
        h->jitter_ns = (uint64_t)cfg->jitter_ms * 1000000u;
    }
    l->hold[DIR_UP].delay_ns = (uint64_t)cfg->delay_ms_up * 1000000u;
    l->hold[DIR_UP].in_fd = l->tun_fd[M2M_LINK_SIDE_DEVICE];
    l->hold[DIR_UP].out_fd = l->tun_fd[M2M_LINK_SIDE_SERVER];
    l->hold[DIR_DOWN].delay_ns = (uint64_t)cfg->delay_ms_down * 1000000u;
    l->hold[DIR_DOWN].in_fd = l->tun_fd[M2M_LINK_SIDE_SERVER];
    l->hold[DIR_DOWN].out_fd = l->tun_fd[M2M_LINK_SIDE_DEVICE];

    l->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->stop_fd < 0) {
        errf(err, errcap, "eventfd: %s", strerror(errno));
        rc = M2M_EIO;
        goto fail;
    }
    /* The forwarder takes no signals: they belong to the caller's thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int prc = pthread_create(&l->thread, NULL, forwarder_main, l);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (prc) {
        errf(err, errcap, "cannot start the forwarder thread: %s", strerror(prc));
        rc = M2M_EIO;
        goto fail;
    }
    l->thread_running = true;
    *out = l;
    return 0;
fail:
    teardown(l);
    free(l);
    return rc;
}

void m2m_link_down(struct m2m_link *link)
{
    if (!link)
        return;
    teardown(link);
    free(link);
}

/* ---- counters ---------------------------------------------------------- */

/* One interface's rx/tx from a /proc/net/dev kept open inside a namespace. */
static int read_netdev(int fd, uint64_t *rx_bytes, uint64_t *rx_pkts, uint64_t *tx_bytes, uint64_t *tx_pkts)
{
    char buf[8192];
    size_t len = 0;
    if (lseek(fd, 0, SEEK_SET) < 0)
        return -errno;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0 || (len += (size_t)n) == sizeof buf - 1)
            break;
    }
    buf[len] = '\0';
    char *p = strstr(buf, M2M_LINK_IFNAME ":");
    if (!p)
        return -ENOENT;
    p += strlen(M2M_LINK_IFNAME ":");
    unsigned long long v[16];
    for (int i = 0; i < 16; i++) {
        char *end;
        v[i] = strtoull(p, &end, 10);
        if (end == p)
            return -EINVAL;
        p = end;
    }
    /* rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets ... */
    *rx_bytes = v[0];
    *rx_pkts = v[1];
    *tx_bytes = v[8];
    *tx_pkts = v[9];
    return 0;
}

/* "counter NAME {\n packets P bytes B" in `nft list counters` output. */
static int parse_nft_counter(const char *text, const char *name, uint64_t *pkts, uint64_t *bytes)
{
    char key[64];
    snprintf(key, sizeof key, "counter %s {", name);
    const char *p = strstr(text, key);
    if (!p || !(p = strstr(p, "packets ")))
        return -ENOENT;
    unsigned long long pk, by;
    char *end;
    pk = strtoull(p + 8, &end, 10);
    if (strncmp(end, " bytes ", 7) != 0)
        return -EINVAL;
    by = strtoull(end + 7, NULL, 10);
    *pkts = pk;
    *bytes = by;
    return 0;
}

/* The tbf's "dropped N" in `tc -s qdisc show`. */
static int read_tbf_drops(struct m2m_link *l, int side, uint64_t *drops, char *err, size_t errcap)
{
    char out[CMD_OUT_MAX];
    char *argv[] = {l->tc_path, "-s", "-n", l->netns[side], "qdisc", "show", "dev", M2M_LINK_IFNAME, NULL};
    int rc = must_run(argv, out, sizeof out, err, errcap);
    if (rc)
        return rc;
    const char *p = strstr(out, "tbf");
    if (p)
        p = strstr(p, "dropped ");
    if (!p) {
        errf(err, errcap, "no tbf statistics in tc's output");
        return M2M_EMALFORMED;
    }
    *drops = strtoull(p + 8, NULL, 10);
    return 0;
}

int m2m_link_counters(struct m2m_link *l, struct m2m_link_counters *out, char *err, size_t errcap)
{
    memset(out, 0, sizeof *out);
    struct m2m_link_dir_counters *dc[2] = {&out->up, &out->down};
    int rc = 0;
    /* The forwarder first, so that nothing it sent is missing further on. */
    for (int d = 0; d < 2; d++) {
        struct hold *h = &l->hold[d];
        uint64_t rd = atomic_load(&h->read_pkts), wr = atomic_load(&h->written_pkts);
        uint64_t ov = atomic_load(&h->overflow_pkts), we = atomic_load(&h->write_errors);
        dc[d]->in_flight = rd - wr - ov - we;
        dc[d]->queue_drops = ov;
        dc[d]->write_errors = we;
    }
    for (int s = 0; s < 2; s++) {
        /* Side s sends direction s (device: up) and receives the other. */
        struct m2m_link_dir_counters *tx = dc[s], *rx = dc[1 - s];
        uint64_t rxb = 0, rxp = 0, txb = 0, txp = 0;
        int r = read_netdev(l->netdev_fd[s], &rxb, &rxp, &txb, &txp);
        if (r) {
            errf(err, errcap, "cannot read the statistics of %s in %s: %s", M2M_LINK_IFNAME, l->netns[s],
                 strerror(-r));
            rc = M2M_EIO;
            continue;
        }
        tx->sent_packets = txp;
        tx->sent_bytes = txb;
        rx->received_packets = rxp;
        rx->received_bytes = rxb;

        char text[CMD_OUT_MAX];
        char *argv[] = {l->ip_path, "netns", "exec",   l->netns[s], l->nft_path, "list",
                        "counters", "table", "netdev", NFT_TABLE,   NULL};
        if ((r = must_run(argv, text, sizeof text, err, errcap)) != 0) {
            rc = r;
            continue;
        }
        if (parse_nft_counter(text, "lost", &rx->lost_packets, &rx->lost_bytes) ||
            parse_nft_counter(text, "delivered", &rx->delivered_packets, &rx->delivered_bytes)) {
            errf(err, errcap, "no loss counters in nft's output for %s", l->netns[s]);
            rc = M2M_EMALFORMED;
        }
        if (l->cfg.rate_bps) {
            uint64_t drops = 0;
            if ((r = read_tbf_drops(l, s, &drops, err, errcap)) != 0)
                rc = r;
            tx->queue_drops += drops;
        }
    }
    return rc;
}

/* ---- names and namespaces for the caller ------------------------------- */

const char *m2m_link_netns(const struct m2m_link *l, enum m2m_link_side side)
{
    return l->netns[side == M2M_LINK_SIDE_SERVER];
}

const char *m2m_link_addr(const struct m2m_link *l, enum m2m_link_side side)
{
    (void)l;
    return side == M2M_LINK_SIDE_SERVER ? M2M_LINK_SERVER_ADDR : M2M_LINK_DEVICE_ADDR;
}

const struct m2m_link_config *m2m_link_config(const struct m2m_link *l)
{
    return &l->cfg;
}

int m2m_link_enter(const struct m2m_link *l, enum m2m_link_side side)
{
    return setns(l->ns_fd[side == M2M_LINK_SIDE_SERVER], CLONE_NEWNET) ? -errno : 0;
}

int m2m_link_spawn(const struct m2m_link *l, enum m2m_link_side side, char *const argv[], pid_t *pid)
{
    pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0)
        return -errno;
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
        if (getppid() != parent)
            _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (m2m_link_enter(l, side) == 0)
            execvp(argv[0], argv);
        _exit(127);
    }
    *pid = child;
    return 0;
}
