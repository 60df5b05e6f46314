/* The m2mkit command line: thin wrappers that parse arguments and call the
 * layers below. Each subcommand returns the process exit status. */
#ifndef M2M_CLI_H
#define M2M_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "m2m/types.h"

/* Exit statuses shared by the client subcommands. */
enum cli_status { CLI_OK = 0, CLI_PROTO_ERROR = 1, CLI_USAGE = 2, CLI_FAILED = 3 };

/* A logger writing one line per event to stderr:
 * "2026-11-25T06:40:00.123Z info coap 127.0.0.1:5683: reason". */
void cli_logger_init(struct m2m_logger *log, enum m2m_log_level level);
bool cli_log_level_parse(const char *s, enum m2m_log_level *out);

int cmd_serve(int argc, char **argv);
int cmd_coap(int argc, char **argv);
int cmd_mqtt(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_passwd(int argc, char **argv);
int cmd_certs(int argc, char **argv);
int cmd_compare(int argc, char **argv);
/* The load generators in bench/, reached through `m2mkit bench <protocol>`. */
int bench_coap(int argc, char **argv);
int bench_mqtt(int argc, char **argv);

/* Prints a payload for a person: JSON indented, link format one link per
 * line, text as it is, anything else as hex. `fmt` is a CoAP content format
 * or -1. */
void cli_print_payload(FILE *f, int fmt, const unsigned char *p, size_t n);
/* CBOR in RFC 8949 diagnostic notation; false if `p` is not one whole CBOR
 * item. */
bool cli_print_cbor(FILE *f, const unsigned char *p, size_t n);
/* Reads "@file" or returns the literal; *buf is malloc'd when a file. */
int cli_read_payload(const char *arg, unsigned char **buf, size_t *len);

#endif
