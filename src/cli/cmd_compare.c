/* m2mkit compare: the protocol study, measured. For now its first piece,
 * `compare link`: sets up the controlled link of src/compare/link.h, holds
 * it for the user's own commands or probes it (--selftest), prints the
 * counters and tears it down, also on Ctrl-C. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "compare/link.h"

#define PROBE_SIZE 64 /* UDP payload of one probe: 92 bytes on the link */
#define PROBES_DEFAULT 200
#define PROBES_MAX 1000000

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    g_stop = sig;
}

struct link_opts {
    struct m2m_link_config cfg;
    double hold_s; /* 0: until Ctrl-C */
    bool selftest;
    long probes;
    double interval_ms; /* 0: chosen from the rate */
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: m2mkit compare link [options]\n"
            "       m2mkit compare link --selftest [options] [--probes N]\n"
            "\n"
            "Sets up a controlled link between two network namespaces, device (" M2M_LINK_DEVICE_ADDR
            ") and\n"
            "server (" M2M_LINK_SERVER_ADDR "), prints how to run commands in each, holds it until "
            "Ctrl-C or --hold,\n"
            "then prints its counters and removes it. Needs root, ip, nft, tc (with --rate) and "
            "/dev/net/tun.\n"
            "\n"
            "  --loss PCT            random loss each way, percent (resolution 0.1)\n"
            "  --loss-up PCT         device -> server only     --loss-down PCT  server -> device only\n"
            "  --rtt MS              round-trip delay, half each way\n"
            "  --delay-up MS         one-way delay device -> server   --delay-down MS  server -> device\n"
            "  --jitter MS           each packet waits a further uniform 0..MS, each way (order kept)\n"
            "  --rate RATE           bandwidth cap each way: 9600bit, 100kbit, 2mbit ... (tbf)\n"
            "  --hold SECONDS        remove the link after this long (default: at Ctrl-C)\n"
            "  --prefix NAME         namespaces NAME-dev and NAME-srv (default m2m<pid>)\n"
            "  --seed N              jitter's random seed (loss is drawn by the kernel)\n"
            "  --selftest            send UDP probes device -> server and back, print measured loss\n"
            "                        and RTT against the configuration; exit 1 if outside bounds\n"
            "  --probes N            probes for --selftest (default %d)\n"
            "  --interval MS         time between probes (default 1 ms, longer under a rate cap)\n"
            "\n"
            "The protocol scenarios (m2mkit compare [scenario options]) are not there yet.\n",
            PROBES_DEFAULT);
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v >= lo && v <= hi))
        return false;
    if (*end == '%')
        end++;
    if (*end)
        return false;
    *out = v;
    return true;
}

static bool parse_ms(const char *s, uint32_t *out)
{
    double v;
    if (!parse_double(s, 0, 60000, &v))
        return false;
    *out = (uint32_t)(v + 0.5);
    return true;
}

/* "200kbit", "2mbit", "9600bit", "9600": bits per second, as tc spells them. */
static bool parse_rate(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v > 0))
        return false;
    double mul = 1;
    if (!strcasecmp(end, "") || !strcasecmp(end, "bit"))
        mul = 1;
    else if (!strcasecmp(end, "k") || !strcasecmp(end, "kbit"))
        mul = 1e3;
    else if (!strcasecmp(end, "m") || !strcasecmp(end, "mbit"))
        mul = 1e6;
    else if (!strcasecmp(end, "g") || !strcasecmp(end, "gbit"))
        mul = 1e9;
    else
        return false;
    if (v * mul > 1e11)
        return false;
    *out = (uint64_t)(v * mul + 0.5);
    return true;
}

static int parse_link_opts(int argc, char **argv, struct link_opts *o)
{
    enum {
        O_LOSS = 256,
        O_LOSS_UP,
        O_LOSS_DOWN,
        O_RTT,
        O_DELAY_UP,
        O_DELAY_DOWN,
        O_JITTER,
        O_RATE,
        O_HOLD,
        O_PREFIX,
        O_SEED,
        O_SELFTEST,
        O_PROBES,
        O_INTERVAL
    };
    static const struct option longopts[] = {
        {"loss", required_argument, NULL, O_LOSS},
        {"loss-up", required_argument, NULL, O_LOSS_UP},
        {"loss-down", required_argument, NULL, O_LOSS_DOWN},
        {"rtt", required_argument, NULL, O_RTT},
        {"delay-up", required_argument, NULL, O_DELAY_UP},
        {"delay-down", required_argument, NULL, O_DELAY_DOWN},
        {"jitter", required_argument, NULL, O_JITTER},
        {"rate", required_argument, NULL, O_RATE},
        {"hold", required_argument, NULL, O_HOLD},
        {"prefix", required_argument, NULL, O_PREFIX},
        {"seed", required_argument, NULL, O_SEED},
        {"selftest", no_argument, NULL, O_SELFTEST},
        {"probes", required_argument, NULL, O_PROBES},
        {"interval", required_argument, NULL, O_INTERVAL},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    m2m_link_config_init(&o->cfg);
    o->probes = PROBES_DEFAULT;
    optind = 1;
    int c;
    double v;
    uint32_t ms;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_LOSS:
        case O_LOSS_UP:
        case O_LOSS_DOWN:
            if (!parse_double(optarg, 0, 100, &v)) {
                fprintf(stderr, "m2mkit compare: loss '%s' is not a percentage 0..100\n", optarg);
                return CLI_USAGE;
            }
            if (c != O_LOSS_DOWN)
                o->cfg.loss_up = v / 100.0;
            if (c != O_LOSS_UP)
                o->cfg.loss_down = v / 100.0;
            break;
        case O_RTT:
        case O_DELAY_UP:
        case O_DELAY_DOWN:
        case O_JITTER:
            if (!parse_ms(optarg, &ms)) {
                fprintf(stderr, "m2mkit compare: '%s' is not a time in ms (0..60000)\n", optarg);
                return CLI_USAGE;
            }
            if (c == O_RTT) {
                o->cfg.delay_ms_up = (ms + 1) / 2;
                o->cfg.delay_ms_down = ms / 2;
            } else if (c == O_DELAY_UP) {
                o->cfg.delay_ms_up = ms;
            } else if (c == O_DELAY_DOWN) {
                o->cfg.delay_ms_down = ms;
            } else {
                o->cfg.jitter_ms = ms;
            }
            break;
        case O_RATE:
            if (!parse_rate(optarg, &o->cfg.rate_bps)) {
                fprintf(stderr, "m2mkit compare: rate '%s': a number with bit, kbit, mbit or gbit\n", optarg);
                return CLI_USAGE;
            }
            break;
        case O_HOLD:
            if (!parse_double(optarg, 0, 1e7, &o->hold_s)) {
                fprintf(stderr, "m2mkit compare: --hold '%s' is not a number of seconds\n", optarg);
                return CLI_USAGE;
            }
            break;
        case O_PREFIX: o->cfg.name_prefix = optarg; break;
        case O_SEED: o->cfg.seed = strtoull(optarg, NULL, 0); break;
        case O_SELFTEST: o->selftest = true; break;
        case O_PROBES:
            if (!parse_double(optarg, 1, PROBES_MAX, &v)) {
                fprintf(stderr, "m2mkit compare: --probes: 1..%d\n", PROBES_MAX);
                return CLI_USAGE;
            }
            o->probes = (long)v;
            break;
        case O_INTERVAL:
            if (!parse_double(optarg, 0.01, 10000, &o->interval_ms)) {
                fprintf(stderr, "m2mkit compare: --interval: 0.01..10000 ms\n");
                return CLI_USAGE;
            }
            break;
        case 'h': usage(stdout); return -1;
        default: usage(stderr); return CLI_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "m2mkit compare link: unexpected argument '%s'\n", argv[optind]);
        return CLI_USAGE;
    }
    return CLI_OK;
}

static void print_config(const struct m2m_link_config *c)
{
    char rate[48];
    if (c->rate_bps)
        snprintf(rate, sizeof rate, "%llu bit/s each way", (unsigned long long)c->rate_bps);
    else
        snprintf(rate, sizeof rate, "unlimited");
    printf("configured: loss up %.1f %% down %.1f %%, delay up %u ms down %u ms (rtt %u ms), jitter 0..%u ms "
           "each way, rate %s\n",
           c->loss_up * 100, c->loss_down * 100, c->delay_ms_up, c->delay_ms_down,
           c->delay_ms_up + c->delay_ms_down, c->jitter_ms, rate);
}

static void print_dir(const char *name, const struct m2m_link_dir_counters *d)
{
    printf("%s: sent %llu pkts %llu bytes, received %llu pkts %llu bytes, lost %llu pkts %llu bytes, "
           "delivered %llu pkts %llu bytes, in_flight %llu, queue_drops %llu, write_errors %llu\n",
           name, (unsigned long long)d->sent_packets, (unsigned long long)d->sent_bytes,
           (unsigned long long)d->received_packets, (unsigned long long)d->received_bytes,
           (unsigned long long)d->lost_packets, (unsigned long long)d->lost_bytes,
           (unsigned long long)d->delivered_packets, (unsigned long long)d->delivered_bytes,
           (unsigned long long)d->in_flight, (unsigned long long)d->queue_drops,
           (unsigned long long)d->write_errors);
}

/* The path's own bookkeeping: everything sent is received or still held,
 * everything received is lost or delivered. */
static bool dir_adds_up(const struct m2m_link_dir_counters *d)
{
    return d->sent_packets == d->received_packets + d->in_flight + d->write_errors &&
           d->received_packets == d->lost_packets + d->delivered_packets &&
           d->received_bytes == d->lost_bytes + d->delivered_bytes;
}

static int print_counters(struct m2m_link *link, struct m2m_link_counters *c)
{
    char err[512];
    int rc = m2m_link_counters(link, c, err, sizeof err);
    if (rc)
        fprintf(stderr, "m2mkit compare: counters: %s\n", err);
    print_dir("counters up", &c->up);
    print_dir("counters down", &c->down);
    return rc;
}

/* Sleeps until the deadline (0: none) or a signal. SIGINT and SIGTERM are
 * blocked outside this wait, so none slips in between check and sleep. */
static void wait_signal(double seconds)
{
    struct timespec end, now;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += (time_t)seconds;
    end.tv_nsec += (long)((seconds - (double)(time_t)seconds) * 1e9);
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    sigset_t open_mask;
    sigemptyset(&open_mask);
    while (!g_stop) {
        struct timespec ts = {.tv_sec = 3600, .tv_nsec = 0};
        if (seconds > 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            long long left =
                (long long)(end.tv_sec - now.tv_sec) * 1000000000LL + (end.tv_nsec - now.tv_nsec);
            if (left <= 0)
                return;
            ts.tv_sec = (time_t)(left / 1000000000LL);
            ts.tv_nsec = (long)(left % 1000000000LL);
        }
        ppoll(NULL, 0, &ts, &open_mask);
    }
}

/* ---- selftest ---------------------------------------------------------- */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        c += w;
        n -= (size_t)w;
    }
    return true;
}

static bool read_all(int fd, void *p, size_t n)
{
    char *c = p;
    while (n) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR && !g_stop)
            continue;
        if (r <= 0)
            return false;
        c += r;
        n -= (size_t)r;
    }
    return true;
}

/* A child process that dies with its parent and takes the default action
 * on signals again. */
static void child_init(void)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* In the server namespace: echoes every datagram on 10.77.0.2, reports its
 * port, and when `ctl` closes, how many probes it received. */
static void echo_child(struct m2m_link *link, int report, int ctl)
{
    child_init();
    uint32_t port = 0, received = 0;
    if (m2m_link_enter(link, M2M_LINK_SIDE_SERVER))
        _exit(1);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, M2M_LINK_SERVER_ADDR, &a.sin_addr);
    socklen_t alen = sizeof a;
    int big = 4 << 20;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || getsockname(s, (struct sockaddr *)&a, &alen))
        _exit(1);
    port = ntohs(a.sin_port);
    if (!write_all(report, &port, sizeof port))
        _exit(1);
    struct pollfd pfd[2] = {{.fd = s, .events = POLLIN}, {.fd = ctl, .events = POLLIN}};
    for (;;) {
        if (poll(pfd, 2, -1) < 0 && errno != EINTR)
            _exit(1);
        if (pfd[0].revents & POLLIN) {
            uint8_t buf[2048];
            struct sockaddr_in from;
            socklen_t flen = sizeof from;
            ssize_t n = recvfrom(s, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
            if (n > 0) {
                received++;
                sendto(s, buf, (size_t)n, 0, (struct sockaddr *)&from, flen);
            }
        } else if (pfd[1].revents) {
            break;
        }
    }
    _exit(write_all(report, &received, sizeof received) ? 0 : 1);
}

/* In the device namespace: sends `n` numbered probes `interval_ns` apart,
 * notes when each one's echo comes back, and writes the RTTs (ns, 0 for
 * no echo) to `report`. */
static void probe_child(struct m2m_link *link, uint16_t port, long n, uint64_t interval_ns, uint64_t wait_ns,
                        int report)
{
    child_init();
    if (m2m_link_enter(link, M2M_LINK_SIDE_DEVICE))
        _exit(1);
    uint64_t *sent = calloc((size_t)n, sizeof *sent), *rtt = calloc((size_t)n, sizeof *rtt);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, M2M_LINK_SERVER_ADDR, &a.sin_addr);
    int big = 4 << 20;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    if (!sent || !rtt || s < 0 || connect(s, (struct sockaddr *)&a, sizeof a))
        _exit(1);
    long next = 0;
    uint64_t start = mono_ns(), end = 0;
    for (;;) {
        uint64_t now = mono_ns();
        while (next < n && now >= start + (uint64_t)next * interval_ns) {
            uint8_t buf[PROBE_SIZE] = {0};
            uint32_t seq = (uint32_t)next;
            memcpy(buf, &seq, sizeof seq);
            sent[next] = mono_ns();
            if (send(s, buf, sizeof buf, 0) < 0)
                sent[next] = 0; /* never left: counted as lost */
            if (++next == n)
                end = sent[n - 1] ? sent[n - 1] + wait_ns : now + wait_ns;
        }
        if (next == n && now >= end)
            break;
        uint64_t until = next < n ? start + (uint64_t)next * interval_ns : end;
        int ms = until > now ? (int)((until - now + 999999) / 1000000) : 0;
        struct pollfd pfd = {.fd = s, .events = POLLIN};
        if (poll(&pfd, 1, ms) > 0) {
            uint8_t buf[2048];
            ssize_t r;
            while ((r = recv(s, buf, sizeof buf, MSG_DONTWAIT)) >= (ssize_t)sizeof(uint32_t)) {
                uint32_t seq;
                memcpy(&seq, buf, sizeof seq);
                if (seq < (uint32_t)n && sent[seq] && !rtt[seq])
                    rtt[seq] = mono_ns() - sent[seq];
            }
        }
    }
    _exit(write_all(report, rtt, (size_t)n * sizeof *rtt) ? 0 : 1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Loss within three standard deviations of a binomial draw of n, plus the
 * rule's 0.1 % resolution. */
static bool loss_ok(double configured, double measured, double n, double *sigma3)
{
    *sigma3 = n > 0 ? 3 * sqrt(configured * (1 - configured) / n) : 1;
    return fabs(measured - configured) <= *sigma3 + 0.0005 + (n > 0 ? 0.5 / n : 1);
}

static int run_selftest(struct m2m_link *link, const struct link_opts *o)
{
    const struct m2m_link_config *c = m2m_link_config(link);
    /* Under a cap, probes are paced at a third of the rate so the tbf queue
     * never drops one: loss is then the loss rule's alone. */
    double interval_ms = o->interval_ms;
    if (interval_ms <= 0) {
        interval_ms = 1;
        if (c->rate_bps) {
            double per_pkt_ms = (PROBE_SIZE + 28) * 8 * 1000.0 / (double)c->rate_bps;
            if (3 * per_pkt_ms > interval_ms)
                interval_ms = 3 * per_pkt_ms;
        }
    }
    uint64_t cfg_rtt_ns = (uint64_t)(c->delay_ms_up + c->delay_ms_down) * 1000000u;
    uint64_t wait_ns = cfg_rtt_ns + 2ull * c->jitter_ms * 1000000u + 1000000000u;
    printf("selftest: %ld UDP probes of %d bytes, %.2f ms apart, device -> server echo -> device\n",
           o->probes, PROBE_SIZE, interval_ms);
    fflush(stdout);

    int rep_echo[2], ctl[2], rep_probe[2];
    if (pipe2(rep_echo, O_CLOEXEC) || pipe2(ctl, O_CLOEXEC) || pipe2(rep_probe, O_CLOEXEC)) {
        perror("m2mkit compare: pipe");
        return CLI_FAILED;
    }
    pid_t echo = fork();
    if (echo == 0) {
        close(ctl[1]);
        echo_child(link, rep_echo[1], ctl[0]);
    }
    close(ctl[0]);
    close(rep_echo[1]);
    uint32_t port = 0, at_server = 0;
    int status = CLI_FAILED;
    double *rtts = NULL;
    uint64_t *raw = NULL;
    pid_t probe = -1;
    if (echo < 0 || !read_all(rep_echo[0], &port, sizeof port)) {
        fprintf(stderr, "m2mkit compare: the echo server did not start in %s\n",
                m2m_link_netns(link, M2M_LINK_SIDE_SERVER));
        goto out;
    }
    probe = fork();
    if (probe == 0) {
        close(rep_probe[0]);
        probe_child(link, (uint16_t)port, o->probes, (uint64_t)(interval_ms * 1e6), wait_ns, rep_probe[1]);
    }
    close(rep_probe[1]);
    rep_probe[1] = -1;
    raw = calloc((size_t)o->probes, sizeof *raw);
    rtts = calloc((size_t)o->probes, sizeof *rtts);
    if (probe < 0 || !raw || !rtts || !read_all(rep_probe[0], raw, (size_t)o->probes * sizeof *raw)) {
        fprintf(stderr, "m2mkit compare: %s\n", g_stop ? "interrupted" : "the prober failed");
        goto out;
    }
    close(ctl[1]);
    ctl[1] = -1;
    if (!read_all(rep_echo[0], &at_server, sizeof at_server)) {
        fprintf(stderr, "m2mkit compare: the echo server did not report\n");
        goto out;
    }

    long echoed = 0;
    for (long i = 0; i < o->probes; i++) {
        if (raw[i])
            rtts[echoed++] = (double)raw[i] / 1e6;
    }
    double up = 1.0 - (double)at_server / (double)o->probes;
    double down = at_server ? 1.0 - (double)echoed / (double)at_server : 0;
    double s3u, s3d;
    bool ok_up = loss_ok(c->loss_up, up, (double)o->probes, &s3u);
    bool ok_down = at_server ? loss_ok(c->loss_down, down, (double)at_server, &s3d) : (s3d = 0, false);
    printf("probes: %ld sent, %u reached the server, %ld echoed back\n", o->probes, at_server, echoed);
    printf("loss up: measured %.2f %% configured %.1f %% (3 sigma %.2f %%) %s\n", up * 100, c->loss_up * 100,
           s3u * 100, ok_up ? "ok" : "OUT OF BOUNDS");
    printf("loss down: measured %.2f %% configured %.1f %% (3 sigma %.2f %%) %s\n", down * 100,
           c->loss_down * 100, s3d * 100, ok_down ? "ok" : "OUT OF BOUNDS");

    bool ok_rtt = echoed > 0;
    if (echoed > 0) {
        qsort(rtts, (size_t)echoed, sizeof *rtts, cmp_double);
        double sum = 0;
        for (long i = 0; i < echoed; i++)
            sum += rtts[i];
        double cfg = (double)cfg_rtt_ns / 1e6, jit = 2.0 * c->jitter_ms;
        double med = rtts[echoed / 2], p90 = rtts[(long)((double)(echoed - 1) * 0.9)];
        /* Never early; late by at most the jitter and a few ms of scheduling
         * (and a probe's serialisation time under a cap). */
        double slack = 5 + cfg * 0.02;
        if (c->rate_bps)
            slack += 2 * (PROBE_SIZE + 28) * 8 * 1000.0 / (double)c->rate_bps;
        ok_rtt = rtts[0] >= cfg - 0.01 && med <= cfg + jit + slack;
        printf("rtt ms: min %.3f median %.3f p90 %.3f max %.3f mean %.3f configured %.0f (+ 0..%.0f jitter) "
               "%s\n",
               rtts[0], med, p90, rtts[echoed - 1], sum / (double)echoed, cfg, jit,
               ok_rtt ? "ok" : "OUT OF BOUNDS");
    }
    struct m2m_link_counters cnt;
    bool ok_cnt = print_counters(link, &cnt) == 0 && dir_adds_up(&cnt.up) && dir_adds_up(&cnt.down);
    printf("counters add up: %s\n", ok_cnt ? "yes" : "NO");
    bool ok = ok_up && ok_down && ok_rtt && ok_cnt;
    printf("selftest: %s\n", ok ? "ok" : "FAIL");
    status = ok ? CLI_OK : CLI_PROTO_ERROR;
out:
    if (ctl[1] >= 0)
        close(ctl[1]);
    close(rep_echo[0]);
    close(rep_probe[0]);
    if (rep_probe[1] >= 0)
        close(rep_probe[1]);
    int ws;
    if (probe > 0) {
        if (status == CLI_FAILED)
            kill(probe, SIGKILL);
        waitpid(probe, &ws, 0);
    }
    if (echo > 0) {
        if (status == CLI_FAILED)
            kill(echo, SIGKILL);
        waitpid(echo, &ws, 0);
    }
    free(raw);
    free(rtts);
    return status;
}

/* ---- compare link ------------------------------------------------------ */

static int cmd_link(int argc, char **argv)
{
    struct link_opts o;
    int rc = parse_link_opts(argc, argv, &o);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* SIGINT/SIGTERM are blocked except while waiting, and always end in
     * m2m_link_down: a Ctrl-C never leaves namespaces behind. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &old);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct m2m_link *link;
    char err[512];
    rc = m2m_link_up(&o.cfg, &link, err, sizeof err);
    if (rc) {
        fprintf(stderr, "m2mkit compare link: %s\n", err);
        sigprocmask(SIG_SETMASK, &old, NULL);
        return CLI_FAILED;
    }
    char dev[64], srv[64];
    snprintf(dev, sizeof dev, "%s", m2m_link_netns(link, M2M_LINK_SIDE_DEVICE));
    snprintf(srv, sizeof srv, "%s", m2m_link_netns(link, M2M_LINK_SIDE_SERVER));
    printf("link up: device %s %s <-> server %s %s\n", dev, M2M_LINK_DEVICE_ADDR, srv, M2M_LINK_SERVER_ADDR);
    print_config(m2m_link_config(link));

    int status = CLI_OK;
    if (o.selftest) {
        /* The probes' waits run with the signals open. */
        sigprocmask(SIG_UNBLOCK, &block, NULL);
        status = run_selftest(link, &o);
        sigprocmask(SIG_BLOCK, &block, NULL);
    } else {
        printf("  run a command in each:  ip netns exec %s COMMAND     ip netns exec %s COMMAND\n", dev, srv);
        printf("  e.g. ip netns exec %s m2mkit serve (bind %s or 0.0.0.0), then\n", srv,
               M2M_LINK_SERVER_ADDR);
        printf("       ip netns exec %s ping %s\n", dev, M2M_LINK_SERVER_ADDR);
        if (o.hold_s > 0)
            printf("holding for %g s (Ctrl-C to stop early)\n", o.hold_s);
        else
            printf("holding until Ctrl-C\n");
        wait_signal(o.hold_s);
        struct m2m_link_counters cnt;
        print_counters(link, &cnt);
    }
    m2m_link_down(link);
    printf("link down: %s and %s removed%s\n", dev, srv, g_stop ? " (interrupted)" : "");
    sigprocmask(SIG_SETMASK, &old, NULL);
    return g_stop && o.selftest ? CLI_FAILED : status;
}

int cmd_compare(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "link"))
        return cmd_link(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return CLI_OK;
    }
    fprintf(stderr, "m2mkit compare: the protocol scenarios are not yet implemented; "
                    "'m2mkit compare link' sets up the controlled link\n");
    return CLI_USAGE;
}
