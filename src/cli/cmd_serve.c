#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "server/conf.h"
#include "server/serve.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: m2mkit serve [-c FILE] [-v] [--SECTION.KEY=VALUE ...]\n"
               "\n"
               "Runs every enabled protocol on its standard port, on loopback unless\n"
               "configured otherwise, until SIGINT or SIGTERM.\n"
               "\n"
               "  -c, --config FILE      configuration file (default ./m2mkit.conf if present)\n"
               "  -v, --verbose          debug logging\n"
               "  --SECTION.KEY=VALUE    override one setting, e.g. --coap.port=5684\n"
               "  --print-config         print the effective configuration and exit\n"
               "  --config-reference     print every key with its default, as Markdown\n"
               "  -h, --help             this help\n"
               "\n"
               "Every key is described in docs/configuration.md.\n");
}

/* The reference table of docs/configuration.md, from the schema itself. */
static void print_reference(void)
{
    printf("| key | default | range | meaning |\n|---|---|---|---|\n");
    for (size_t i = 0; i < m2m_conf_nkeys; i++) {
        const struct m2m_conf_key *k = &m2m_conf_keys[i];
        char range[64] = "";
        if (k->type == M2M_CONF_BOOL)
            snprintf(range, sizeof range, "true/false");
        else if (k->type != M2M_CONF_STR)
            snprintf(range, sizeof range, "%g .. %g%s", k->min, k->max,
                     k->type == M2M_CONF_DURATION ? " ms" : "");
        printf("| `%s` | `%s` | %s | %s |\n", k->name, k->def[0] ? k->def : "(empty)", range, k->doc);
    }
}

static void print_config(const struct m2m_conf *c)
{
    const char *section = "";
    for (size_t i = 0; i < m2m_conf_nkeys; i++) {
        const struct m2m_conf_key *k = &m2m_conf_keys[i];
        const char *dot = strchr(k->name, '.');
        if (strncmp(section, k->name, (size_t)(dot - k->name)) || section[dot - k->name]) {
            static char cur[32];
            snprintf(cur, sizeof cur, "%.*s", (int)(dot - k->name), k->name);
            section = cur;
            printf("%s[%s]\n", i ? "\n" : "", section);
        }
        const char *field = (const char *)c + k->offset;
        bool b;
        double d;
        int64_t v;
        switch (k->type) {
        case M2M_CONF_STR: printf("%s = %s\n", dot + 1, field); break;
        case M2M_CONF_BOOL:
            memcpy(&b, field, sizeof b);
            printf("%s = %s\n", dot + 1, b ? "true" : "false");
            break;
        case M2M_CONF_RATIO:
            memcpy(&d, field, sizeof d);
            printf("%s = %g\n", dot + 1, d);
            break;
        default:
            memcpy(&v, field, sizeof v);
            printf("%s = %lld%s\n", dot + 1, (long long)v, k->type == M2M_CONF_DURATION ? "ms" : "");
            break;
        }
    }
}

int cmd_serve(int argc, char **argv)
{
    struct m2m_conf conf;
    m2m_conf_init(&conf);
    const char *config = NULL;
    bool verbose = false, print = false;
    /* The config file first, then the overrides, whatever their order. */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return CLI_OK;
        } else if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
            config = argv[++i];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            config = argv[i] + 9;
        } else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) {
            verbose = true;
        } else if (!strcmp(argv[i], "--print-config")) {
            print = true;
        } else if (!strcmp(argv[i], "--config-reference")) {
            print_reference();
            return CLI_OK;
        } else if (strncmp(argv[i], "--", 2) || !strchr(argv[i], '.')) {
            fprintf(stderr, "m2mkit serve: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return CLI_USAGE;
        }
    }
    char err[256];
    if (m2m_conf_load(&conf, config ? config : "m2mkit.conf", config != NULL, err, sizeof err)) {
        fprintf(stderr, "m2mkit serve: %s\n", err);
        return CLI_USAGE;
    }
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--", 2) && strchr(argv[i], '.') && strncmp(argv[i], "--config=", 9)) {
            const char *a = argv[i] + 2;
            char assignment[512];
            if (!strchr(a, '=') && i + 1 < argc) {
                snprintf(assignment, sizeof assignment, "%s=%s", a, argv[++i]);
                a = assignment;
            }
            if (m2m_conf_apply(&conf, a, err, sizeof err)) {
                fprintf(stderr, "m2mkit serve: %s\n", err);
                return CLI_USAGE;
            }
        } else if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
            i++;
        }
    }
    if (print) {
        print_config(&conf);
        return CLI_OK;
    }
    enum m2m_log_level lvl = M2M_LOG_INFO;
    if (!cli_log_level_parse(conf.log_level, &lvl)) {
        fprintf(stderr, "m2mkit serve: server.log_level: unknown level '%s'\n", conf.log_level);
        return CLI_USAGE;
    }
    if (verbose)
        lvl = M2M_LOG_DEBUG;
    struct m2m_logger log;
    cli_logger_init(&log, lvl);
    setvbuf(stderr, NULL, _IOLBF, 0);
    return m2m_serve_run(&conf, &log) ? CLI_FAILED : CLI_OK;
}
