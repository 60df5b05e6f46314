/* m2mkit bench: dispatches to the load generator of each protocol (bench/). */
#include <string.h>

#include "cli.h"

int cmd_bench(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "coap"))
        return bench_coap(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "mqtt"))
        return bench_mqtt(argc - 1, argv + 1);
    bool help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
    fprintf(help ? stdout : stderr, "usage: m2mkit bench coap [options] URI\n"
                                    "       m2mkit bench mqtt [options]\n"
                                    "Run 'm2mkit bench <protocol> --help' for the options.\n");
    return help ? CLI_OK : CLI_USAGE;
}
