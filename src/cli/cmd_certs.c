/* m2mkit certs: a development PKI (a CA, a localhost server certificate, a
 * client certificate and a PSK) so that the TLS and DTLS listeners of
 * `m2mkit serve` work out of the box, and a look at what a certificate
 * directory holds. The work is in src/net/devcerts.c. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "m2m/err.h"
#include "net/devcerts.h"
#include "server/conf.h"

#define MAX_SERVER_NAMES 16

static void usage(FILE *f)
{
    fprintf(f,
            "usage: m2mkit certs init [options]\n"
            "       m2mkit certs show [DIR]\n"
            "\n"
            "init creates a development PKI, for development only (never production):\n"
            "  ca.pem, ca.key          a CA (ECDSA P-256, %d days)\n"
            "  server.pem, server.key  CN localhost, subjectAltName DNS:localhost, IP:127.0.0.1, IP:::1\n"
            "  client.pem, client.key  CN device-1 (or --client-cn), for client authentication\n"
            "  psk.txt                 one `identity:hexkey` line, the format of tls.psk_file\n"
            "Existing files are kept (if they hold together) unless --force.\n"
            "\n"
            "  -o, --out DIR           directory (default: server.data_dir/certs, i.e. ./var/certs)\n"
            "  -c, --config FILE       read server.data_dir from FILE (default ./m2mkit.conf if present)\n"
            "      --days N            validity of the server and client certificates (default %d)\n"
            "      --client-cn NAME    client certificate CN and PSK identity (default %s)\n"
            "      --server-name NAME  one more subjectAltName (DNS name or IP), repeatable\n"
            "  -f, --force             replace existing files\n"
            "  -q, --quiet             print nothing unless files are created or something fails\n"
            "\n"
            "show prints subject, issuer, validity, SANs, usages and key type of each file in DIR\n"
            "(default as for init), and checks that keys match and certificates chain to ca.pem.\n"
            "\n"
            "Exit status: 0 on success, 1 on failure (show: a file is unusable), 2 for a usage error.\n",
            M2M_DEVCERTS_CA_DAYS, M2M_DEVCERTS_LEAF_DAYS, M2M_DEVCERTS_CLIENT_CN);
}

/* data_dir/certs, where `m2mkit serve` looks for its certificates. */
static int default_dir(const char *config, char *out, size_t cap)
{
    struct m2m_conf conf;
    char err[256];
    m2m_conf_init(&conf);
    if (m2m_conf_load(&conf, config ? config : "m2mkit.conf", config != NULL, err, sizeof err)) {
        fprintf(stderr, "m2mkit certs: %s\n", err);
        return CLI_USAGE;
    }
    if ((size_t)snprintf(out, cap, "%s/certs", conf.data_dir) >= cap) {
        fprintf(stderr, "m2mkit certs: server.data_dir is too long\n");
        return CLI_USAGE;
    }
    return CLI_OK;
}

static const char *action_name(enum m2m_devcerts_action a)
{
    switch (a) {
    case M2M_DEVCERTS_KEPT: return "kept";
    case M2M_DEVCERTS_CREATED: return "created";
    case M2M_DEVCERTS_REPLACED: return "replaced";
    }
    return "?";
}

static bool parse_days(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > M2M_DEVCERTS_MAX_DAYS)
        return false;
    *out = (int)v;
    return true;
}

static int certs_init(int argc, char **argv)
{
    static const struct option longopts[] = {{"out", required_argument, NULL, 'o'},
                                             {"config", required_argument, NULL, 'c'},
                                             {"days", required_argument, NULL, 'd'},
                                             {"client-cn", required_argument, NULL, 'n'},
                                             {"server-name", required_argument, NULL, 's'},
                                             {"force", no_argument, NULL, 'f'},
                                             {"quiet", no_argument, NULL, 'q'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *names[MAX_SERVER_NAMES];
    struct m2m_devcerts_opts o = {.server_names = names};
    const char *config = NULL;
    bool quiet = false;
    char err[256];
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:c:fqh", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': o.dir = optarg; break;
        case 'c': config = optarg; break;
        case 'd':
            if (!parse_days(optarg, &o.days)) {
                fprintf(stderr, "m2mkit certs: --days must be 1 to %d\n", M2M_DEVCERTS_MAX_DAYS);
                return CLI_USAGE;
            }
            break;
        case 'n':
            if (!m2m_devcerts_valid_client_cn(optarg, err, sizeof err)) {
                fprintf(stderr, "m2mkit certs: %s\n", err);
                return CLI_USAGE;
            }
            o.client_cn = optarg;
            break;
        case 's':
            if (o.nserver_names == MAX_SERVER_NAMES) {
                fprintf(stderr, "m2mkit certs: at most %d --server-name\n", MAX_SERVER_NAMES);
                return CLI_USAGE;
            }
            if (!m2m_devcerts_valid_server_name(optarg, err, sizeof err)) {
                fprintf(stderr, "m2mkit certs: %s\n", err);
                return CLI_USAGE;
            }
            names[o.nserver_names++] = optarg;
            break;
        case 'f': o.force = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return CLI_OK;
        default: usage(stderr); return CLI_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "m2mkit certs init: unexpected argument '%s'\n", argv[optind]);
        return CLI_USAGE;
    }
    char dir[300];
    if (!o.dir) {
        int rc = default_dir(config, dir, sizeof dir);
        if (rc)
            return rc;
        o.dir = dir;
    }

    struct m2m_devcerts_result r;
    int rc = m2m_devcerts_create(&o, &r);
    if (rc) {
        fprintf(stderr, "m2mkit certs: %s\n", r.err);
        return rc == M2M_EINVAL ? CLI_USAGE : CLI_PROTO_ERROR;
    }
    if (r.warning[0])
        fprintf(stderr, "m2mkit certs: warning: %s\n", r.warning);
    size_t written = 0;
    for (size_t i = 0; i < r.nfiles; i++)
        written += r.files[i].action != M2M_DEVCERTS_KEPT;
    if (quiet) {
        if (written)
            printf("m2mkit certs: wrote %zu development file(s) in %s (not for production)\n", written,
                   o.dir);
        return CLI_OK;
    }
    for (size_t i = 0; i < r.nfiles; i++)
        printf("%-8s %s/%s\n", action_name(r.files[i].action), o.dir, r.files[i].name);
    printf("These files are for development only; see docs/security.md to deploy real certificates.\n");
    return CLI_OK;
}

static int certs_show(int argc, char **argv)
{
    const char *dir = NULL;
    const char *config = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return CLI_OK;
        } else if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
            config = argv[++i];
        } else if (argv[i][0] == '-' || dir) {
            fprintf(stderr, "m2mkit certs show: unexpected argument '%s'\n", argv[i]);
            return CLI_USAGE;
        } else {
            dir = argv[i];
        }
    }
    char buf[300];
    if (!dir) {
        int rc = default_dir(config, buf, sizeof buf);
        if (rc)
            return rc;
        dir = buf;
    }
    int rc = m2m_devcerts_show(stdout, dir);
    if (rc == M2M_ENOTFOUND)
        fprintf(stderr,
                "m2mkit certs: no certificate, key or psk.txt in %s (m2mkit certs init creates them)\n", dir);
    return rc ? CLI_PROTO_ERROR : CLI_OK;
}

int cmd_certs(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (!strcmp(argv[1], "init"))
        return certs_init(argc - 1, argv + 1);
    if (!strcmp(argv[1], "show"))
        return certs_show(argc - 1, argv + 1);
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return CLI_OK;
    }
    fprintf(stderr, "m2mkit certs: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return CLI_USAGE;
}
