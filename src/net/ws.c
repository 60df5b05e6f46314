#include "net/ws.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <wslay/wslay.h>

#include "m2m/err.h"

/* Bytes handed out by one poll_output at most: bounds the output buffer. */
#define WS_OUT_CAP 65536
/* Above this the output buffer is given back once written. */
#define WS_OUT_KEEP 16384
#define WS_HS_FIRST 1024
#define WS_SUBPROTOCOL_MAX 64
/* RFC 6455 §1.3: appended to the client's key before hashing. */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_LEN 24    /* base64 of 16 bytes */
#define WS_ACCEPT_LEN 28 /* base64 of a SHA-1 digest */

enum ws_state {
    WS_HANDSHAKE, /* reading the HTTP request */
    WS_OPEN,      /* frames both ways */
    WS_CLOSING,   /* a close frame is queued (or follows the inner output); input is dropped */
    WS_DONE,      /* nothing more than what `out` holds will be written */
};

/* What the frame being received carries, decided when its header arrives. */
enum ws_frame_kind { FRAME_IGNORE, FRAME_DATA, FRAME_CONTROL };

struct m2m_ws {
    const struct m2m_stream_ops *inner;
    void *inner_core;
    struct m2m_ws_config cfg;
    enum ws_state state;
    const char *reason;
    m2m_time now; /* of the feed being processed, for the inner core */

    /* Handshake: the request so far, freed once answered. */
    uint8_t *hs;
    size_t hs_len, hs_cap;
    size_t hs_line;    /* where the line being read starts */
    size_t hs_headers; /* where the header fields start (after the request line) */
    bool hs_line1;     /* the request line was read and checked */

    /* Frames. wslay reads from `rd` (lent by the current feed) and writes
     * into `out`. */
    wslay_event_context_ptr ev;
    const uint8_t *rd;
    size_t rd_n;
    enum ws_frame_kind frame;
    uint64_t msg_len; /* of the data message being received, over its frames */
    bool close_queued;
    bool close_pending; /* m2m_ws_close: a close frame follows the inner output */
    uint16_t close_code;

    uint8_t *out;
    size_t out_len, out_cap;
    bool out_lent; /* handed out by poll_output: reclaimed at the next call */
};

/* Legal moves only forward; the first reason for leaving OPEN is kept. */
static void set_state(struct m2m_ws *ws, enum ws_state to, const char *why)
{
    assert(to > ws->state || (to == WS_DONE && ws->state == WS_DONE));
    if (to >= WS_CLOSING && !ws->reason)
        ws->reason = why;
    ws->state = to;
}

/* ---- output buffer -------------------------------------------------------- */

static void out_reclaim(struct m2m_ws *ws)
{
    if (!ws->out_lent)
        return;
    ws->out_lent = false;
    ws->out_len = 0;
    if (ws->out_cap > WS_OUT_KEEP) {
        free(ws->out);
        ws->out = NULL;
        ws->out_cap = 0;
    }
}

/* Room for `need` bytes in all, up to WS_OUT_CAP. */
static bool out_reserve(struct m2m_ws *ws, size_t need)
{
    if (need <= ws->out_cap)
        return true;
    if (need > WS_OUT_CAP)
        return false;
    size_t cap = ws->out_cap ? ws->out_cap : 256;
    while (cap < need)
        cap *= 2;
    if (cap > WS_OUT_CAP)
        cap = WS_OUT_CAP;
    uint8_t *b = realloc(ws->out, cap);
    if (!b)
        return false;
    ws->out = b;
    ws->out_cap = cap;
    return true;
}

static bool out_append(struct m2m_ws *ws, const void *p, size_t n)
{
    if (!out_reserve(ws, ws->out_len + n))
        return false;
    memcpy(ws->out + ws->out_len, p, n);
    ws->out_len += n;
    return true;
}

/* ---- handshake ------------------------------------------------------------ */

static void hs_release(struct m2m_ws *ws)
{
    free(ws->hs);
    ws->hs = NULL;
    ws->hs_len = ws->hs_cap = 0;
}

static const char *status_text(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    default: return "Internal Server Error";
    }
}

/* Answers with an HTTP error and stops; `why` doubles as the plain-text
 * body, so a person trying the port with curl sees what was wrong. */
static void refuse_request(struct m2m_ws *ws, int status, const char *why)
{
    char buf[512];
    const char *extra = status == 426 ? "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" : "";
    int k = snprintf(buf, sizeof buf,
                     "HTTP/1.1 %d %s\r\nConnection: close\r\n%sContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n\r\n%s\n",
                     status, status_text(status), extra, strlen(why) + 1, why);
    if (k > 0 && (size_t)k < sizeof buf)
        out_append(ws, buf, (size_t)k);
    hs_release(ws);
    set_state(ws, WS_DONE, why);
}

static bool is_tchar(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool all_tchars(const uint8_t *s, size_t n)
{
    if (!n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar(s[i]))
            return false;
    return true;
}

static bool slice_ieq(const uint8_t *s, size_t n, const char *lit)
{
    return n == strlen(lit) && strncasecmp((const char *)s, lit, n) == 0;
}

static bool is_ows(uint8_t c)
{
    return c == ' ' || c == '\t';
}

/* Whether a comma-separated field value lists `tok` (RFC 7230 §7). */
static bool list_has(const uint8_t *v, size_t n, const char *tok, bool icase)
{
    size_t i = 0;
    while (i < n) {
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i++;
        while (s < e && is_ows(v[s]))
            s++;
        while (e > s && is_ows(v[e - 1]))
            e--;
        size_t tl = strlen(tok);
        if (e - s == tl && (icase ? strncasecmp((const char *)v + s, tok, tl) : memcmp(v + s, tok, tl)) == 0)
            return true;
    }
    return false;
}

/* "GET <target> HTTP/1.1"; NULL when acceptable, else why not. */
static const char *check_request_line(const uint8_t *s, size_t n)
{
    const uint8_t *sp1 = memchr(s, ' ', n);
    if (!sp1 || !all_tchars(s, (size_t)(sp1 - s)))
        return "handshake: malformed request line";
    const uint8_t *t = sp1 + 1, *end = s + n;
    const uint8_t *sp2 = memchr(t, ' ', (size_t)(end - t));
    if (!sp2 || sp2 == t)
        return "handshake: malformed request line";
    for (const uint8_t *c = t; c < sp2; c++)
        if (*c <= 0x20 || *c >= 0x7f)
            return "handshake: malformed request target";
    const uint8_t *ver = sp2 + 1;
    size_t vn = (size_t)(end - ver);
    if (!(vn == 8 && memcmp(ver, "HTTP/1.1", 8) == 0))
        return "handshake: not HTTP/1.1";
    if (!(sp1 - s == 3 && memcmp(s, "GET", 3) == 0))
        return "handshake: method is not GET";
    return NULL;
}

/* Sec-WebSocket-Key must decode to 16 bytes: 22 base64 digits, the last of
 * them with its 4 unused bits clear, then "==". */
static bool key_valid(const uint8_t *k, size_t n)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (n != WS_KEY_LEN || k[22] != '=' || k[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++) {
        const char *d = k[i] ? strchr(b64, k[i]) : NULL;
        if (!d)
            return false;
        if (i == 21 && ((d - b64) & 0x0f))
            return false;
    }
    return true;
}

/* Sec-WebSocket-Accept = base64(SHA-1(key || GUID)), RFC 6455 §4.2.2. */
static bool accept_value(const uint8_t *key, char out[WS_ACCEPT_LEN + 1])
{
    uint8_t in[WS_KEY_LEN + sizeof WS_GUID - 1];
    memcpy(in, key, WS_KEY_LEN);
    memcpy(in + WS_KEY_LEN, WS_GUID, sizeof WS_GUID - 1);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(in, sizeof in, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
        return false;
    return EVP_EncodeBlock((unsigned char *)out, md, 20) == WS_ACCEPT_LEN;
}

/* What the header fields said. */
struct hs_fields {
    int host, version, key;
    bool version_13, upgrade, connection, offered, selected;
    const uint8_t *key_p;
    size_t key_n;
};

static const char *read_field(struct m2m_ws *ws, struct hs_fields *f, const uint8_t *s, size_t n)
{
    if (is_ows(s[0]))
        return "handshake: obsolete header line folding";
    const uint8_t *colon = memchr(s, ':', n);
    if (!colon || !all_tchars(s, (size_t)(colon - s)))
        return "handshake: malformed header field";
    size_t nn = (size_t)(colon - s);
    const uint8_t *v = colon + 1, *e = s + n;
    while (v < e && is_ows(*v))
        v++;
    while (e > v && is_ows(e[-1]))
        e--;
    size_t vn = (size_t)(e - v);
    for (size_t i = 0; i < vn; i++)
        if ((v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
            return "handshake: control character in a header field";

    if (slice_ieq(s, nn, "Host")) {
        f->host++;
    } else if (slice_ieq(s, nn, "Upgrade")) {
        f->upgrade |= list_has(v, vn, "websocket", true);
    } else if (slice_ieq(s, nn, "Connection")) {
        f->connection |= list_has(v, vn, "upgrade", true);
    } else if (slice_ieq(s, nn, "Sec-WebSocket-Version")) {
        f->version++;
        f->version_13 = vn == 2 && memcmp(v, "13", 2) == 0;
    } else if (slice_ieq(s, nn, "Sec-WebSocket-Key")) {
        f->key++;
        f->key_p = v;
        f->key_n = vn;
    } else if (slice_ieq(s, nn, "Sec-WebSocket-Protocol")) {
        /* The header may appear several times; the lists add up. Names of
         * subprotocols are compared exactly (RFC 6455 §11.5). */
        f->offered = true;
        if (ws->cfg.subprotocol)
            f->selected |= list_has(v, vn, ws->cfg.subprotocol, false);
    }
    return NULL;
}

static void frames_start(struct m2m_ws *ws);
static void frames_feed(struct m2m_ws *ws, const uint8_t *p, size_t n);

/* The header block hs[0, end) is complete: validate, then answer 101 or an
 * error. */
static void hs_complete(struct m2m_ws *ws, size_t end)
{
    struct hs_fields f;
    memset(&f, 0, sizeof f);
    size_t i = ws->hs_headers, stop = end;
    const char *why = NULL;
    while (!why && i < stop) {
        const uint8_t *nl = memchr(ws->hs + i, '\n', stop - i);
        size_t le = (size_t)(nl - ws->hs);
        size_t next = le + 1;
        if (le > i && ws->hs[le - 1] == '\r')
            le--;
        if (le == i)
            break; /* the empty line that ends the block */
        why = read_field(ws, &f, ws->hs + i, le - i);
        i = next;
    }
    if (why)
        return refuse_request(ws, 400, why);
    if (f.host != 1)
        return refuse_request(ws, 400, f.host ? "handshake: several Host fields" : "handshake: no Host");
    if (!f.upgrade)
        return refuse_request(ws, 400, "handshake: no Upgrade: websocket");
    if (!f.connection)
        return refuse_request(ws, 400, "handshake: no Connection: Upgrade");
    if (f.version == 0)
        return refuse_request(ws, 400, "handshake: no Sec-WebSocket-Version");
    if (f.version > 1)
        return refuse_request(ws, 400, "handshake: several Sec-WebSocket-Version");
    if (!f.version_13)
        return refuse_request(ws, 426, "handshake: Sec-WebSocket-Version is not 13");
    if (f.key != 1)
        return refuse_request(
            ws, 400, f.key ? "handshake: several Sec-WebSocket-Key" : "handshake: no Sec-WebSocket-Key");
    if (!key_valid(f.key_p, f.key_n))
        return refuse_request(ws, 400, "handshake: Sec-WebSocket-Key is not base64 of 16 bytes");
    const char *proto = NULL;
    if (ws->cfg.subprotocol) {
        if (f.offered && !f.selected)
            return refuse_request(ws, 400, "handshake: subprotocol not offered");
        if (!f.offered && ws->cfg.require_subprotocol)
            return refuse_request(ws, 400, "handshake: no Sec-WebSocket-Protocol");
        if (f.selected)
            proto = ws->cfg.subprotocol;
    }

    char acc[WS_ACCEPT_LEN + 1];
    if (!accept_value(f.key_p, acc))
        return refuse_request(ws, 500, "handshake: SHA-1 unavailable");
    char buf[256];
    int k = snprintf(buf, sizeof buf,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
                     acc, proto ? "Sec-WebSocket-Protocol: " : "", proto ? proto : "", proto ? "\r\n" : "");
    if (k <= 0 || (size_t)k >= sizeof buf || !out_append(ws, buf, (size_t)k)) {
        hs_release(ws);
        set_state(ws, WS_DONE, "out of memory");
        return;
    }
    frames_start(ws);
    if (ws->state == WS_OPEN)
        frames_feed(ws, ws->hs + end, ws->hs_len - end);
    hs_release(ws);
}

static bool hs_reserve(struct m2m_ws *ws, size_t need)
{
    if (need <= ws->hs_cap)
        return true;
    size_t cap = ws->hs_cap ? ws->hs_cap : WS_HS_FIRST;
    while (cap < need)
        cap *= 2;
    if (cap > ws->cfg.max_handshake)
        cap = ws->cfg.max_handshake;
    uint8_t *b = realloc(ws->hs, cap);
    if (!b)
        return false;
    ws->hs = b;
    ws->hs_cap = cap;
    return true;
}

/* Takes request bytes, split anywhere; returns how many of p it consumed
 * (fewer than n when the request ended inside p: the rest are frames). */
static size_t hs_feed(struct m2m_ws *ws, const uint8_t *p, size_t n)
{
    size_t used = 0;
    while (used < n && ws->state == WS_HANDSHAKE) {
        if (ws->hs_len == ws->cfg.max_handshake) {
            refuse_request(ws, 431, "handshake: request header too large");
            break;
        }
        size_t take = n - used;
        if (take > ws->cfg.max_handshake - ws->hs_len)
            take = ws->cfg.max_handshake - ws->hs_len;
        if (!hs_reserve(ws, ws->hs_len + take)) {
            hs_release(ws);
            set_state(ws, WS_DONE, "out of memory");
            break;
        }
        memcpy(ws->hs + ws->hs_len, p + used, take);
        size_t i = ws->hs_len;
        ws->hs_len += take;
        used += take;
        for (; i < ws->hs_len; i++) {
            uint8_t c = ws->hs[i];
            /* Refuse binary input (a raw MQTT client on this port) at once
             * rather than after max_handshake bytes or the timeout. */
            if (!ws->hs_line1 && ((c < 0x20 && c != '\r' && c != '\n') || c == 0x7f)) {
                refuse_request(ws, 400, "handshake: not an HTTP request");
                return used;
            }
            if (c != '\n')
                continue;
            size_t ls = ws->hs_line, le = i;
            if (le > ls && ws->hs[le - 1] == '\r')
                le--;
            ws->hs_line = i + 1;
            if (!ws->hs_line1) {
                const char *why = check_request_line(ws->hs + ls, le - ls);
                if (why) {
                    refuse_request(ws, 400, why);
                    return used;
                }
                ws->hs_line1 = true;
                ws->hs_headers = i + 1;
                continue;
            }
            if (le == ls) {
                /* Bytes after the block already belong to the frames:
                 * hs_complete feeds those in hs, the caller the rest of p. */
                hs_complete(ws, i + 1);
                return used;
            }
        }
    }
    return used;
}

/* ---- frames (wslay) ------------------------------------------------------- */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    struct m2m_ws *ws = user;
    (void)flags;
    if (!ws->rd_n) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t k = len < ws->rd_n ? len : ws->rd_n;
    memcpy(buf, ws->rd, k);
    ws->rd += k;
    ws->rd_n -= k;
    return (ssize_t)k;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user)
{
    struct m2m_ws *ws = user;
    (void)flags;
    size_t room = WS_OUT_CAP - ws->out_len;
    if (!room) {
        /* Full: poll_output hands this out, and wslay resumes next time. */
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t k = len < room ? len : room;
    if (!out_append(ws, data, k)) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)k;
}

/* Closes with `code` and reads no more. */
static void refuse_frames(struct m2m_ws *ws, uint16_t code, const char *why)
{
    ws->frame = FRAME_IGNORE;
    if (!ws->close_queued && wslay_event_queue_close(ws->ev, code, NULL, 0) == 0)
        ws->close_queued = true;
    wslay_event_shutdown_read(ws->ev);
    set_state(ws, WS_CLOSING, why);
}

static void frame_start_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_start_arg *arg,
                           void *user)
{
    struct m2m_ws *ws = user;
    (void)ctx;
    if (ws->state != WS_OPEN) {
        ws->frame = FRAME_IGNORE;
        return;
    }
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
        /* MQTT-6.0.0-1: only binary frames carry packets. */
        refuse_frames(ws, WSLAY_CODE_UNSUPPORTED_DATA, "text frame");
        return;
    case WSLAY_BINARY_FRAME:
        ws->msg_len = 0;
        /* fall through */
    case WSLAY_CONTINUATION_FRAME:
        if (arg->payload_length > ws->cfg.max_frame - ws->msg_len) {
            refuse_frames(ws, WSLAY_CODE_MESSAGE_TOO_BIG, "message too big");
            return;
        }
        ws->msg_len += arg->payload_length;
        ws->frame = FRAME_DATA;
        return;
    default:
        /* Ping, pong and close: wslay answers them (at most 125 bytes). */
        ws->frame = FRAME_CONTROL;
        return;
    }
}

static void frame_chunk_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_chunk_arg *arg,
                           void *user)
{
    struct m2m_ws *ws = user;
    (void)ctx;
    if (ws->frame == FRAME_DATA && ws->state == WS_OPEN && arg->data_length)
        ws->inner->feed(ws->inner_core, ws->now, arg->data, arg->data_length);
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .on_frame_recv_start_callback = frame_start_cb,
    .on_frame_recv_chunk_callback = frame_chunk_cb,
};

static void frames_start(struct m2m_ws *ws)
{
    if (wslay_event_context_server_init(&ws->ev, &ws_callbacks, ws)) {
        ws->ev = NULL;
        set_state(ws, WS_DONE, "out of memory");
        return;
    }
    /* Data goes to the inner core as it arrives, so wslay buffers only
     * control frames; the message size limit is ours (frame_start_cb). */
    wslay_event_config_set_no_buffering(ws->ev, 1);
    wslay_event_config_set_max_recv_msg_length(ws->ev, UINT64_MAX);
    set_state(ws, WS_OPEN, NULL);
}

static void frames_feed(struct m2m_ws *ws, const uint8_t *p, size_t n)
{
    if (ws->state != WS_OPEN || !n)
        return;
    ws->rd = p;
    ws->rd_n = n;
    int rc = wslay_event_recv(ws->ev);
    ws->rd = NULL;
    ws->rd_n = 0;
    if (rc == WSLAY_ERR_NOMEM) {
        set_state(ws, WS_DONE, "websocket: out of memory");
        return;
    }
    /* Any other failure is a framing error (a control frame over 125
     * bytes, a length with its top bit set): wslay has queued a close. */
    if (ws->state == WS_OPEN && (rc || !wslay_event_get_read_enabled(ws->ev))) {
        /* wslay stopped reading: it queued a close, our answer to the
         * peer's close or its own for a protocol error. */
        ws->close_queued = true;
        set_state(ws, WS_CLOSING,
                  wslay_event_get_close_received(ws->ev) ? "closed by peer" : "protocol error");
    }
}

static void drain_inner(struct m2m_ws *ws)
{
    const uint8_t *p;
    size_t n;
    while (ws->inner->poll_output(ws->inner_core, &p, &n)) {
    }
}

/* Frames the inner core's output and lets wslay write into `out`, one inner
 * chunk at a time, until `out` is full or nothing is left. */
static void pump_frames(struct m2m_ws *ws)
{
    for (;;) {
        if (wslay_event_want_write(ws->ev)) {
            if (wslay_event_send(ws->ev)) {
                set_state(ws, WS_DONE, "websocket: out of memory");
                return;
            }
            if (wslay_event_want_write(ws->ev))
                return; /* `out` is full */
            continue;
        }
        if (ws->close_queued || !wslay_event_get_write_enabled(ws->ev)) {
            /* After a close frame nothing may follow. */
            drain_inner(ws);
            return;
        }
        const uint8_t *p;
        size_t n;
        if (ws->inner->poll_output(ws->inner_core, &p, &n)) {
            if (!n)
                continue;
            struct wslay_event_msg m = {.opcode = WSLAY_BINARY_FRAME, .msg = p, .msg_length = n};
            int rc = wslay_event_queue_msg(ws->ev, &m);
            if (rc == WSLAY_ERR_NO_MORE_MSG) {
                ws->close_queued = true;
                continue;
            }
            if (rc) {
                set_state(ws, WS_DONE, "websocket: out of memory");
                return;
            }
            continue;
        }
        if (ws->close_pending) {
            if (wslay_event_queue_close(ws->ev, ws->close_code, NULL, 0) != 0)
                wslay_event_shutdown_write(ws->ev);
            ws->close_queued = true;
            continue;
        }
        return;
    }
}

/* ---- the stream core ------------------------------------------------------ */

static int ws_feed(void *core, m2m_time now, const uint8_t *p, size_t n)
{
    struct m2m_ws *ws = core;
    out_reclaim(ws);
    ws->now = now;
    if (ws->state == WS_HANDSHAKE) {
        size_t used = hs_feed(ws, p, n);
        p += used;
        n -= used;
    }
    if (ws->state == WS_OPEN) {
        frames_feed(ws, p, n);
        return 0;
    }
    return n && ws->state != WS_HANDSHAKE ? M2M_ESTATE : 0;
}

static bool ws_poll_output(void *core, const uint8_t **p, size_t *n)
{
    struct m2m_ws *ws = core;
    out_reclaim(ws);
    if (ws->ev && (ws->state == WS_OPEN || ws->state == WS_CLOSING))
        pump_frames(ws);
    if (!ws->out_len)
        return false;
    *p = ws->out;
    *n = ws->out_len;
    ws->out_lent = true;
    return true;
}

static m2m_time ws_next_timeout(const void *core)
{
    const struct m2m_ws *ws = core;
    switch (ws->state) {
    case WS_HANDSHAKE: return ws->cfg.start + (m2m_time)ws->cfg.handshake_timeout_ms;
    case WS_OPEN:
    case WS_CLOSING: return ws->inner->next_timeout(ws->inner_core);
    default: return M2M_NEVER;
    }
}

static void ws_on_timeout(void *core, m2m_time now)
{
    struct m2m_ws *ws = core;
    out_reclaim(ws);
    ws->now = now;
    if (ws->state == WS_HANDSHAKE) {
        if (now >= ws->cfg.start + (m2m_time)ws->cfg.handshake_timeout_ms)
            refuse_request(ws, 408, "handshake: timeout");
        return;
    }
    if (ws->state == WS_OPEN || ws->state == WS_CLOSING)
        ws->inner->on_timeout(ws->inner_core, now);
}

const struct m2m_stream_ops m2m_ws_stream_ops = {
    .name = "ws",
    .feed = ws_feed,
    .poll_output = ws_poll_output,
    .next_timeout = ws_next_timeout,
    .on_timeout = ws_on_timeout,
};

/* ---- lifetime and queries ------------------------------------------------- */

struct m2m_ws *m2m_ws_new(const struct m2m_stream_ops *inner, void *inner_core,
                          const struct m2m_ws_config *cfg)
{
    if (!inner || !inner->feed || !inner->poll_output || !inner->next_timeout || !inner->on_timeout || !cfg)
        return NULL;
    const char *sp = cfg->subprotocol;
    if (sp && (strlen(sp) > WS_SUBPROTOCOL_MAX || !all_tchars((const uint8_t *)sp, strlen(sp))))
        return NULL;
    struct m2m_ws *ws = calloc(1, sizeof *ws);
    if (!ws)
        return NULL;
    ws->inner = inner;
    ws->inner_core = inner_core;
    ws->cfg = *cfg;
    if (!ws->cfg.max_frame)
        ws->cfg.max_frame = 1u << 20;
    if (!ws->cfg.max_handshake)
        ws->cfg.max_handshake = 8192;
    if (!ws->cfg.handshake_timeout_ms)
        ws->cfg.handshake_timeout_ms = 10000;
    ws->state = WS_HANDSHAKE;
    return ws;
}

void m2m_ws_free(struct m2m_ws *ws)
{
    if (!ws)
        return;
    wslay_event_context_free(ws->ev);
    free(ws->hs);
    free(ws->out);
    free(ws);
}

bool m2m_ws_closed(const struct m2m_ws *ws)
{
    return ws->state >= WS_CLOSING;
}

bool m2m_ws_open(const struct m2m_ws *ws)
{
    return ws->state != WS_HANDSHAKE && ws->ev != NULL;
}

const char *m2m_ws_reason(const struct m2m_ws *ws)
{
    return ws->state >= WS_CLOSING ? ws->reason : NULL;
}

void m2m_ws_close(struct m2m_ws *ws, uint16_t code)
{
    if (ws->state == WS_HANDSHAKE) {
        hs_release(ws);
        set_state(ws, WS_DONE, "closed by the application");
    } else if (ws->state == WS_OPEN) {
        ws->close_pending = true;
        ws->close_code = code;
        set_state(ws, WS_CLOSING, "closed by the application");
    }
}
