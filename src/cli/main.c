/* m2mkit: one binary, one subcommand per job. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: m2mkit <command> [options]\n"
               "\n"
               "commands:\n"
               "  serve     run the server (CoAP on udp/5683 ...) until SIGINT/SIGTERM\n"
               "  coap      CoAP client: get|put|post|delete|observe|discover URI\n"
               "  mqtt      MQTT client: pub|sub -t TOPIC ...\n"
               "  bench     load generators: bench coap|mqtt ...\n"
               "  passwd    manage an MQTT password file (mosquitto_passwd's format)\n"
               "  certs     development CA and certificates for TLS/DTLS: certs init|show\n"
               "  compare   the protocol study on a controlled lossy link: compare link ...\n"
               "  version   print the version\n"
               "\n"
               "Run 'm2mkit <command> --help' for the options of a command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "serve"))
        return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "coap"))
        return cmd_coap(argc - 1, argv + 1);
    if (!strcmp(cmd, "mqtt"))
        return cmd_mqtt(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench"))
        return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "passwd"))
        return cmd_passwd(argc - 1, argv + 1);
    if (!strcmp(cmd, "certs"))
        return cmd_certs(argc - 1, argv + 1);
    if (!strcmp(cmd, "compare"))
        return cmd_compare(argc - 1, argv + 1);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("m2mkit %s\n", M2M_VERSION_STRING);
        return CLI_OK;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return CLI_OK;
    }
    fprintf(stderr, "m2mkit: unknown command '%s'\n", cmd);
    usage(stderr);
    return CLI_USAGE;
}
