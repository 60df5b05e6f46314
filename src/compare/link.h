/* The controlled link of `m2mkit compare`: two network namespaces, *device*
 * and *server*, each with a TUN device, joined by a forwarder thread that
 * holds every packet for its delay (plus jitter) before writing it, whole,
 * into the other namespace. Loss is an nftables rule on the receiving side's
 * ingress (`numgen random mod 1000 < k drop`), the rate cap a tbf qdisc on
 * the sending side's TUN. Nothing here needs netem.
 *
 *   device ns                 owning process                server ns
 *   10.77.0.1  m2mlink(tun) -> forwarder: hold delay_up  -> m2mlink(tun)  10.77.0.2
 *              tbf (rate)                                    nft: loss_up
 *   10.77.0.1  m2mlink(tun) <- forwarder: hold delay_down <- m2mlink(tun)  10.77.0.2
 *              nft: loss_down                                tbf (rate)
 *
 * "up" is device -> server, "down" is server -> device.
 *
 * Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), /dev/net/tun, and the `ip`
 * and `nft` commands (`tc` only with a rate cap); m2m_link_up says which is
 * missing. The namespaces are named "<prefix>-dev" and "<prefix>-srv". */
#ifndef M2M_COMPARE_LINK_H
#define M2M_COMPARE_LINK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define M2M_LINK_PREFIX_MAX 24    /* characters in name_prefix */
#define M2M_LINK_IFNAME "m2mlink" /* the TUN's name, the same inside each namespace */
#define M2M_LINK_DEVICE_ADDR "10.77.0.1"
#define M2M_LINK_SERVER_ADDR "10.77.0.2"
#define M2M_LINK_QUEUE_DEFAULT 4096 /* packets held per direction */

struct m2m_link_config {
    /* Namespaces are "<prefix>-dev" and "<prefix>-srv". NULL: "m2m<pid>",
     * unique per process; leftovers of such names whose process is gone are
     * removed too. Letters, digits, '-' and '_' only. */
    const char *name_prefix;
    double loss_up, loss_down;           /* 0..1, resolution 0.001 */
    uint32_t delay_ms_up, delay_ms_down; /* one-way delay each direction */
    uint32_t jitter_ms;                  /* each packet: + uniform [0, jitter_ms] */
    uint64_t rate_bps;                   /* each direction, 0: unlimited */
    uint32_t rate_queue_ms;              /* tbf queue in time at rate_bps, 0: 1000 ms */
    uint32_t queue_packets;              /* forwarder's hold per direction, 0: default */
    uint64_t seed;                       /* jitter's random generator, 0: from the OS */
};

/* Sets every field to "a perfect link": no loss, no delay, no cap. */
void m2m_link_config_init(struct m2m_link_config *cfg);

enum m2m_link_side { M2M_LINK_SIDE_DEVICE = 0, M2M_LINK_SIDE_SERVER = 1 };

struct m2m_link;

/* Packets and bytes of one direction, sampled together by m2m_link_counters.
 * Along the path: sent = in_flight + received (+ write_errors), and
 * received = lost + delivered. Packets the tbf queue refused never reach
 * the link and are counted apart in queue_drops. */
struct m2m_link_dir_counters {
    uint64_t sent_packets, sent_bytes;           /* sender's TUN tx: left the sending stack */
    uint64_t received_packets, received_bytes;   /* receiver's TUN rx: written by the forwarder */
    uint64_t lost_packets, lost_bytes;           /* dropped by the loss rule (nft counter) */
    uint64_t delivered_packets, delivered_bytes; /* passed on to the receiving stack (nft counter) */
    uint64_t in_flight;                          /* held by the forwarder right now */
    uint64_t queue_drops;                        /* tbf queue full + forwarder hold full */
    uint64_t write_errors;                       /* forwarder could not write to the TUN */
};

struct m2m_link_counters {
    struct m2m_link_dir_counters up, down;
};

/* Creates the namespaces, TUNs, rules and forwarder. Leftovers of an earlier
 * run with the same prefix are removed first. On failure nothing is left
 * behind, *out is NULL, `err` says what went wrong and what is needed, and
 * the result is negative (M2M_EUNSUPPORTED: not root, no TUN, a command
 * missing; M2M_EIO: a command failed; M2M_EINVAL: a bad configuration). The
 * caller owns *out and must pass it to m2m_link_down. */
int m2m_link_up(const struct m2m_link_config *cfg, struct m2m_link **out, char *err, size_t errcap);

/* Stops the forwarder, deletes the namespaces (and with them the TUNs and
 * rules), frees the link. NULL is a no-op. In a process forked from the
 * owner it only frees memory. Safe to call from the owner after a signal
 * has interrupted its work (not from inside a signal handler). */
void m2m_link_down(struct m2m_link *link);

/* Samples all counters; 0, or negative with `err` set when a counter could
 * not be read (the fields read so far are filled in). */
int m2m_link_counters(struct m2m_link *link, struct m2m_link_counters *out, char *err, size_t errcap);

/* Names and addresses. The returned strings live as long as the link. */
const char *m2m_link_netns(const struct m2m_link *link, enum m2m_link_side side);
const char *m2m_link_addr(const struct m2m_link *link, enum m2m_link_side side);
const struct m2m_link_config *m2m_link_config(const struct m2m_link *link);

/* Moves the calling thread into a side's namespace: sockets it opens from
 * then on live there. Meant for a forked child or a dedicated thread;
 * returns 0 or -errno. */
int m2m_link_enter(const struct m2m_link *link, enum m2m_link_side side);

/* Runs argv[0] (searched in PATH) in a side's namespace as a child process
 * that receives SIGTERM when the calling thread's process exits. *pid is
 * the child's; reap it with waitpid. Returns 0 or -errno (a failed exec is
 * reported as exit status 127). */
int m2m_link_spawn(const struct m2m_link *link, enum m2m_link_side side, char *const argv[], pid_t *pid);

#endif
