/* CBOR payloads for people, in the diagnostic notation of RFC 8949 §8:
 * {"n": "temp", "v": 21.5}, h'0a0b', 1(1700000000). */
#include <cbor.h>
#include <inttypes.h>
#include <math.h>

#include "cli.h"

#define MAX_DEPTH 32

static void diag(FILE *f, const cbor_item_t *it, int depth)
{
    if (depth > MAX_DEPTH) {
        fputs("...", f);
        return;
    }
    switch (cbor_typeof(it)) {
    case CBOR_TYPE_UINT: fprintf(f, "%" PRIu64, cbor_get_int(it)); break;
    case CBOR_TYPE_NEGINT:
        /* -1 - n, printed without overflowing for n up to 2^64-1 */
        if (cbor_get_int(it) < INT64_MAX)
            fprintf(f, "%" PRId64, -1 - (int64_t)cbor_get_int(it));
        else
            fprintf(f, "-1-%" PRIu64, cbor_get_int(it));
        break;
    case CBOR_TYPE_BYTESTRING:
        fputs("h'", f);
        if (cbor_bytestring_is_definite(it))
            for (size_t i = 0; i < cbor_bytestring_length(it); i++)
                fprintf(f, "%02x", cbor_bytestring_handle(it)[i]);
        fputc('\'', f);
        break;
    case CBOR_TYPE_STRING:
        fputc('"', f);
        if (cbor_string_is_definite(it))
            for (size_t i = 0; i < cbor_string_length(it); i++) {
                unsigned char c = cbor_string_handle(it)[i];
                if (c == '"' || c == '\\')
                    fprintf(f, "\\%c", c);
                else if (c < 0x20)
                    fprintf(f, "\\u%04x", c);
                else
                    fputc(c, f);
            }
        fputc('"', f);
        break;
    case CBOR_TYPE_ARRAY:
        fputc('[', f);
        for (size_t i = 0; i < cbor_array_size(it); i++) {
            if (i)
                fputs(", ", f);
            diag(f, cbor_array_handle(it)[i], depth + 1);
        }
        fputc(']', f);
        break;
    case CBOR_TYPE_MAP: {
        struct cbor_pair *p = cbor_map_handle(it);
        fputc('{', f);
        for (size_t i = 0; i < cbor_map_size(it); i++) {
            if (i)
                fputs(", ", f);
            diag(f, p[i].key, depth + 1);
            fputs(": ", f);
            diag(f, p[i].value, depth + 1);
        }
        fputc('}', f);
        break;
    }
    case CBOR_TYPE_TAG: {
        cbor_item_t *inner = cbor_tag_item(it);
        fprintf(f, "%" PRIu64 "(", cbor_tag_value(it));
        diag(f, inner, depth + 1);
        fputc(')', f);
        cbor_decref(&inner);
        break;
    }
    case CBOR_TYPE_FLOAT_CTRL:
        if (cbor_float_ctrl_is_ctrl(it)) {
            uint8_t v = cbor_ctrl_value(it);
            fputs(v == CBOR_CTRL_TRUE    ? "true"
                  : v == CBOR_CTRL_FALSE ? "false"
                  : v == CBOR_CTRL_NULL  ? "null"
                                         : "undefined",
                  f);
        } else {
            double d = cbor_float_get_float(it);
            if (isnan(d))
                fputs("NaN", f);
            else if (isinf(d))
                fputs(d > 0 ? "Infinity" : "-Infinity", f);
            else if (d == floor(d) && fabs(d) < 1e15)
                fprintf(f, "%.1f", d);
            else
                fprintf(f, "%.17g", d);
        }
        break;
    }
}

bool cli_print_cbor(FILE *f, const unsigned char *p, size_t n)
{
    struct cbor_load_result res;
    cbor_item_t *it = cbor_load(p, n, &res);
    if (!it || res.error.code != CBOR_ERR_NONE || res.read != n) {
        if (it)
            cbor_decref(&it);
        return false;
    }
    diag(f, it, 0);
    fputc('\n', f);
    cbor_decref(&it);
    return true;
}
