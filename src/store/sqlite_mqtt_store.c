/* The SQLite backend of the MQTT broker's store (mqtt_store.h).
 *
 * One connection, used by one thread. Every statement is prepared once at
 * open and reused. Writes run inside one transaction that the first write
 * after a commit opens (BEGIN IMMEDIATE, so the write lock is taken up
 * front, under the busy timeout) and `commit` ends: the broker's group
 * commit. If a write fails for any reason other than a duplicate key, the
 * whole batch is rolled back and the store refuses further writes until the
 * next `commit`, which returns M2M_EIO: a batch is all or nothing, and the
 * broker never acknowledges messages that were not stored.
 *
 * Unsigned 64-bit ids and sequence numbers are stored as SQLite's signed
 * integers (same bits): they round trip exactly, and order as the broker
 * expects as long as they stay below 2^63. */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "m2m/err.h"
#include "store/mqtt_store.h"

/* PRAGMA application_id says "this file is an m2mkit MQTT store" ("M2MQ");
 * PRAGMA user_version is the schema version this file reads and writes. */
#define STORE_APPLICATION_ID 0x4d324d51
#define STORE_SCHEMA_VERSION 1
#define STORE_BUSY_TIMEOUT_MS 5000

/* Names say what each row is; WITHOUT ROWID where the key is the lookup
 * path, so a row lives in one B-tree instead of a table plus an index. */
static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS msgs("
    " id INTEGER PRIMARY KEY, topic BLOB NOT NULL, payload BLOB NOT NULL, props BLOB NOT NULL,"
    " props_ctx INTEGER NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL, expire_at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS sessions("
    " client_id BLOB PRIMARY KEY, expiry_s INTEGER NOT NULL, expire_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS subs("
    " client_id BLOB NOT NULL, filter BLOB NOT NULL, qos INTEGER NOT NULL, flags INTEGER NOT NULL,"
    " sub_id INTEGER NOT NULL, PRIMARY KEY(client_id, filter)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS qents("
    " client_id BLOB NOT NULL, seq INTEGER NOT NULL, msg_id INTEGER NOT NULL, qos INTEGER NOT NULL,"
    " retain INTEGER NOT NULL, PRIMARY KEY(client_id, seq)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS retained("
    " topic BLOB PRIMARY KEY, msg_id INTEGER NOT NULL) WITHOUT ROWID;";

/* Every statement the store runs after open, prepared once. */
#define STORE_STATEMENTS(X)                                                                                  \
    X(BEGIN_WRITE, "BEGIN IMMEDIATE")                                                                        \
    X(BEGIN_READ, "BEGIN")                                                                                   \
    X(COMMIT, "COMMIT")                                                                                      \
    X(ROLLBACK, "ROLLBACK")                                                                                  \
    X(SESSION_PUT, "INSERT OR REPLACE INTO sessions(client_id, expiry_s, expire_at) VALUES(?1, ?2, ?3)")     \
    X(SESSION_DEL, "DELETE FROM sessions WHERE client_id = ?1")                                              \
    X(SESSION_DEL_SUBS, "DELETE FROM subs WHERE client_id = ?1")                                             \
    X(SESSION_DEL_QENTS, "DELETE FROM qents WHERE client_id = ?1")                                           \
    X(SUB_PUT,                                                                                               \
      "INSERT OR REPLACE INTO subs(client_id, filter, qos, flags, sub_id) VALUES(?1, ?2, ?3, ?4, ?5)")       \
    X(SUB_DEL, "DELETE FROM subs WHERE client_id = ?1 AND filter = ?2")                                      \
    X(MSG_PUT, "INSERT INTO msgs(id, topic, payload, props, props_ctx, qos, retain, expire_at)"              \
               " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")                                                    \
    X(MSG_DEL, "DELETE FROM msgs WHERE id = ?1")                                                             \
    X(QENT_PUT,                                                                                              \
      "INSERT OR REPLACE INTO qents(client_id, seq, msg_id, qos, retain) VALUES(?1, ?2, ?3, ?4, ?5)")        \
    X(QENT_DEL, "DELETE FROM qents WHERE client_id = ?1 AND seq = ?2")                                       \
    X(RETAINED_PUT, "INSERT OR REPLACE INTO retained(topic, msg_id) VALUES(?1, ?2)")                         \
    X(RETAINED_DEL, "DELETE FROM retained WHERE topic = ?1")                                                 \
    X(LOAD_MSGS,                                                                                             \
      "SELECT id, topic, payload, props, props_ctx, qos, retain, expire_at FROM msgs ORDER BY id")           \
    X(LOAD_SESSIONS, "SELECT client_id, expiry_s, expire_at FROM sessions ORDER BY client_id")               \
    X(LOAD_SUBS, "SELECT client_id, filter, qos, flags, sub_id FROM subs ORDER BY client_id, filter")        \
    X(LOAD_QENTS, "SELECT client_id, seq, msg_id, qos, retain FROM qents ORDER BY client_id, seq")           \
    X(LOAD_RETAINED, "SELECT topic, msg_id FROM retained ORDER BY topic")

enum stmt_id {
#define STMT_ENUM(name, sql) ST_##name,
    STORE_STATEMENTS(STMT_ENUM)
#undef STMT_ENUM
        ST__COUNT
};

static const char *const stmt_sql[ST__COUNT] = {
#define STMT_SQL(name, sql) [ST_##name] = sql,
    STORE_STATEMENTS(STMT_SQL)
#undef STMT_SQL
};

struct sqlite_store {
    struct m2m_mqtt_store base; /* first: the ops table sees this */
    sqlite3 *db;
    sqlite3_stmt *st[ST__COUNT];
    bool in_tx;   /* a write transaction is open */
    bool failed;  /* a write failed and its batch was rolled back; the next commit says so */
    bool loading; /* inside load(): the visitor must not call the store */
};

static struct sqlite_store *to_sqlite(struct m2m_mqtt_store *base)
{
    return (struct sqlite_store *)base;
}

/* Zero-length blobs are bound and read back with a non-NULL pointer:
 * SQLite binds NULL for a NULL pointer and returns NULL for an empty blob,
 * and a visitor may hand the slice to memcpy. */
static const uint8_t empty_bytes[1];

static int bind_slice(sqlite3_stmt *st, int i, struct m2m_slice v)
{
    return sqlite3_bind_blob64(st, i, v.n ? (const void *)v.p : (const void *)empty_bytes, v.n,
                               SQLITE_STATIC);
}

static struct m2m_slice column_slice(sqlite3_stmt *st, int i)
{
    const void *p = sqlite3_column_blob(st, i);
    int n = sqlite3_column_bytes(st, i);
    if (!p || n <= 0)
        return (struct m2m_slice){empty_bytes, 0};
    return (struct m2m_slice){p, (size_t)n};
}

static void stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Runs one of the prepared control statements (BEGIN, COMMIT, ROLLBACK). */
static int run_control(struct sqlite_store *s, enum stmt_id id)
{
    int rc = sqlite3_step(s->st[id]);
    sqlite3_reset(s->st[id]);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Ends a batch that cannot be committed: its changes are dropped. */
static void abort_batch(struct sqlite_store *s)
{
    if (!sqlite3_get_autocommit(s->db))
        run_control(s, ST_ROLLBACK);
    s->in_tx = false;
}

/* Checks that a write may run now and opens the batch's transaction. */
static int write_begin(struct sqlite_store *s)
{
    if (s->loading)
        return M2M_ESTATE;
    if (s->failed)
        return M2M_EIO;
    if (s->in_tx)
        return 0;
    if (run_control(s, ST_BEGIN_WRITE) != SQLITE_OK) {
        abort_batch(s);
        s->failed = true;
        return M2M_EIO;
    }
    s->in_tx = true;
    return 0;
}

/* Runs a bound write statement. `bind_rc` is the OR of the bind calls: a
 * value SQLite cannot hold changes nothing and leaves the batch alone, as
 * does a duplicate key (msg_put of an id already stored). */
static int write_step(struct sqlite_store *s, sqlite3_stmt *st, int bind_rc)
{
    if (bind_rc != SQLITE_OK) {
        stmt_done(st);
        return bind_rc == SQLITE_NOMEM ? M2M_ENOMEM : M2M_EINVAL;
    }
    int rc = sqlite3_step(st);
    stmt_done(st);
    if (rc == SQLITE_DONE)
        return 0;
    if ((rc & 0xff) == SQLITE_CONSTRAINT && !sqlite3_get_autocommit(s->db))
        return M2M_EEXIST;
    abort_batch(s);
    s->failed = true;
    return M2M_EIO;
}

/* ---- ops ---------------------------------------------------------------- */

static void store_close(struct m2m_mqtt_store *base)
{
    struct sqlite_store *s = to_sqlite(base);
    if (!s)
        return;
    if (s->db && s->in_tx)
        abort_batch(s);
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db);
    free(s);
}

static int store_commit(struct m2m_mqtt_store *base)
{
    struct sqlite_store *s = to_sqlite(base);
    if (s->loading)
        return M2M_ESTATE;
    if (s->failed) {
        s->failed = false;
        return M2M_EIO;
    }
    if (!s->in_tx)
        return 0;
    if (run_control(s, ST_COMMIT) != SQLITE_OK) {
        abort_batch(s);
        return M2M_EIO;
    }
    s->in_tx = false;
    return 0;
}

static int session_put(struct m2m_mqtt_store *base, const struct m2m_store_session *ses)
{
    struct sqlite_store *s = to_sqlite(base);
    int rc = write_begin(s);
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_SESSION_PUT];
    rc = bind_slice(st, 1, ses->client_id);
    rc |= sqlite3_bind_int64(st, 2, ses->expiry_s);
    rc |= sqlite3_bind_int64(st, 3, ses->expire_at);
    return write_step(s, st, rc);
}

static int session_del(struct m2m_mqtt_store *base, struct m2m_slice client_id)
{
    static const enum stmt_id cascade[] = {ST_SESSION_DEL_QENTS, ST_SESSION_DEL_SUBS, ST_SESSION_DEL};
    struct sqlite_store *s = to_sqlite(base);
    int rc = write_begin(s);
    for (size_t i = 0; !rc && i < sizeof cascade / sizeof cascade[0]; i++) {
        sqlite3_stmt *st = s->st[cascade[i]];
        rc = write_step(s, st, bind_slice(st, 1, client_id));
    }
    return rc;
}

static int sub_put(struct m2m_mqtt_store *base, const struct m2m_store_sub *sub)
{
    struct sqlite_store *s = to_sqlite(base);
    int rc = write_begin(s);
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_SUB_PUT];
    rc = bind_slice(st, 1, sub->client_id);
    rc |= bind_slice(st, 2, sub->filter);
    rc |= sqlite3_bind_int(st, 3, sub->qos);
    rc |= sqlite3_bind_int(st, 4, sub->flags);
    rc |= sqlite3_bind_int64(st, 5, sub->sub_id);
    return write_step(s, st, rc);
}

static int sub_del(struct m2m_mqtt_store *base, struct m2m_slice client_id, struct m2m_slice filter)
{
    struct sqlite_store *s = to_sqlite(base);
    int rc = write_begin(s);
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_SUB_DEL];
    rc = bind_slice(st, 1, client_id);
    rc |= bind_slice(st, 2, filter);
    return write_step(s, st, rc);
}

static int msg_put(struct m2m_mqtt_store *base, const struct m2m_store_msg *m)
{
    struct sqlite_store *s = to_sqlite(base);
    int rc = write_begin(s);
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_MSG_PUT];
    rc = sqlite3_bind_int64(st, 1, (sqlite3_int64)m->id);
    rc |= bind_slice(st, 2, m->topic);
    rc |= bind_slice(st, 3, m->payload);
    rc |= bind_slice(st, 4, m->props);
    rc |= sqlite3_bind_int64(st, 5, m->props_ctx);
    rc |= sqlite3_bind_int(st, 6, m->qos);
    rc |= sqlite3_bind_int(st, 7, m->retain);
    rc |= sqlite3_bind_int64(st, 8, m->expire_at);
    return write_step(s, st, rc);
}

static int msg_del(struct m2m_mqtt_store *base, uint64_t id)
{
    struct sqlite_store *s = to_sqlite(base);
    int rc = write_begin(s);
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_MSG_DEL];
    return write_step(s, st, sqlite3_bind_int64(st, 1, (sqlite3_int64)id));
}

static int qent_put(struct m2m_mqtt_store *base, const struct m2m_store_qent *q)
{
    struct sqlite_store *s = to_sqlite(base);
    int rc = write_begin(s);
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_QENT_PUT];
    rc = bind_slice(st, 1, q->client_id);
    rc |= sqlite3_bind_int64(st, 2, (sqlite3_int64)q->seq);
    rc |= sqlite3_bind_int64(st, 3, (sqlite3_int64)q->msg_id);
    rc |= sqlite3_bind_int(st, 4, q->qos);
    rc |= sqlite3_bind_int(st, 5, q->retain);
    return write_step(s, st, rc);
}

static int qent_del(struct m2m_mqtt_store *base, struct m2m_slice client_id, uint64_t seq)
{
    struct sqlite_store *s = to_sqlite(base);
    int rc = write_begin(s);
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_QENT_DEL];
    rc = bind_slice(st, 1, client_id);
    rc |= sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    return write_step(s, st, rc);
}

static int retained_put(struct m2m_mqtt_store *base, struct m2m_slice topic, uint64_t msg_id)
{
    struct sqlite_store *s = to_sqlite(base);
    int rc = write_begin(s);
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_RETAINED_PUT];
    rc = bind_slice(st, 1, topic);
    rc |= sqlite3_bind_int64(st, 2, (sqlite3_int64)msg_id);
    return write_step(s, st, rc);
}

static int retained_del(struct m2m_mqtt_store *base, struct m2m_slice topic)
{
    struct sqlite_store *s = to_sqlite(base);
    int rc = write_begin(s);
    if (rc)
        return rc;
    sqlite3_stmt *st = s->st[ST_RETAINED_DEL];
    return write_step(s, st, bind_slice(st, 1, topic));
}

/* ---- load --------------------------------------------------------------- */

/* One row of one table, handed to the visitor. */
typedef int (*row_visit_fn)(sqlite3_stmt *st, const struct m2m_mqtt_store_visitor *v, void *ctx);

static int visit_msg(sqlite3_stmt *st, const struct m2m_mqtt_store_visitor *v, void *ctx)
{
    struct m2m_store_msg m = {
        .id = (uint64_t)sqlite3_column_int64(st, 0),
        .topic = column_slice(st, 1),
        .payload = column_slice(st, 2),
        .props = column_slice(st, 3),
        .props_ctx = (unsigned)sqlite3_column_int64(st, 4),
        .qos = (uint8_t)sqlite3_column_int(st, 5),
        .retain = sqlite3_column_int(st, 6) != 0,
        .expire_at = sqlite3_column_int64(st, 7),
    };
    return v->msg(ctx, &m);
}

static int visit_session(sqlite3_stmt *st, const struct m2m_mqtt_store_visitor *v, void *ctx)
{
    struct m2m_store_session ses = {
        .client_id = column_slice(st, 0),
        .expiry_s = (uint32_t)sqlite3_column_int64(st, 1),
        .expire_at = sqlite3_column_int64(st, 2),
    };
    return v->session(ctx, &ses);
}

static int visit_sub(sqlite3_stmt *st, const struct m2m_mqtt_store_visitor *v, void *ctx)
{
    struct m2m_store_sub sub = {
        .client_id = column_slice(st, 0),
        .filter = column_slice(st, 1),
        .qos = (uint8_t)sqlite3_column_int(st, 2),
        .flags = (uint8_t)sqlite3_column_int(st, 3),
        .sub_id = (uint32_t)sqlite3_column_int64(st, 4),
    };
    return v->sub(ctx, &sub);
}

static int visit_qent(sqlite3_stmt *st, const struct m2m_mqtt_store_visitor *v, void *ctx)
{
    struct m2m_store_qent q = {
        .client_id = column_slice(st, 0),
        .seq = (uint64_t)sqlite3_column_int64(st, 1),
        .msg_id = (uint64_t)sqlite3_column_int64(st, 2),
        .qos = (uint8_t)sqlite3_column_int(st, 3),
        .retain = sqlite3_column_int(st, 4) != 0,
    };
    return v->qent(ctx, &q);
}

static int visit_retained(sqlite3_stmt *st, const struct m2m_mqtt_store_visitor *v, void *ctx)
{
    return v->retained(ctx, column_slice(st, 0), (uint64_t)sqlite3_column_int64(st, 1));
}

static int sqlite_to_err(int rc)
{
    int primary = rc & 0xff;
    return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB ? M2M_ECORRUPT : M2M_EIO;
}

static int load_table(struct sqlite_store *s, enum stmt_id id, row_visit_fn visit,
                      const struct m2m_mqtt_store_visitor *v, void *ctx)
{
    sqlite3_stmt *st = s->st[id];
    int rc, out = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        out = visit(st, v, ctx);
        if (out)
            break;
    }
    if (!out && rc != SQLITE_DONE)
        out = sqlite_to_err(rc);
    sqlite3_reset(st);
    return out;
}

static int store_load(struct m2m_mqtt_store *base, const struct m2m_mqtt_store_visitor *v, void *ctx)
{
    struct sqlite_store *s = to_sqlite(base);
    if (s->loading)
        return M2M_ESTATE;
    /* Outside a batch, one read transaction gives every table the same
     * snapshot; inside one, the batch's own writes are seen. */
    bool snapshot = !s->in_tx;
    if (snapshot && run_control(s, ST_BEGIN_READ) != SQLITE_OK)
        return M2M_EIO;
    s->loading = true;
    const struct {
        enum stmt_id id;
        bool wanted;
        row_visit_fn visit;
    } tables[] = {
        {ST_LOAD_MSGS, v->msg != NULL, visit_msg},
        {ST_LOAD_SESSIONS, v->session != NULL, visit_session},
        {ST_LOAD_SUBS, v->sub != NULL, visit_sub},
        {ST_LOAD_QENTS, v->qent != NULL, visit_qent},
        {ST_LOAD_RETAINED, v->retained != NULL, visit_retained},
    };
    int rc = 0;
    for (size_t i = 0; !rc && i < sizeof tables / sizeof tables[0]; i++)
        if (tables[i].wanted)
            rc = load_table(s, tables[i].id, tables[i].visit, v, ctx);
    s->loading = false;
    if (snapshot)
        run_control(s, ST_ROLLBACK);
    return rc;
}

static const struct m2m_mqtt_store_ops sqlite_ops = {
    .name = "sqlite",
    .close = store_close,
    .commit = store_commit,
    .session_put = session_put,
    .session_del = session_del,
    .sub_put = sub_put,
    .sub_del = sub_del,
    .msg_put = msg_put,
    .msg_del = msg_del,
    .qent_put = qent_put,
    .qent_del = qent_del,
    .retained_put = retained_put,
    .retained_del = retained_del,
    .load = store_load,
};

/* ---- open --------------------------------------------------------------- */

/* Reads a one-column, one-row PRAGMA or query as an integer. */
static int query_int(sqlite3 *db, const char *sql, sqlite3_int64 *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* Reads a one-column PRAGMA's first row as text into buf. */
static int query_text(sqlite3 *db, const char *sql, char *buf, size_t cap)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const unsigned char *t = sqlite3_column_text(st, 0);
            snprintf(buf, cap, "%s", t ? (const char *)t : "");
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* Refuses a file that is not a database, another program's database, or
 * one of ours in another schema version; says whether it is new. */
static int check_identity(sqlite3 *db, const char *path, bool *fresh, char *err, size_t errcap)
{
    sqlite3_int64 app = 0, version = 0, objects = 0;
    int rc = query_int(db, "PRAGMA application_id", &app);
    if (!rc)
        rc = query_int(db, "PRAGMA user_version", &version);
    if (!rc)
        rc = query_int(db, "SELECT count(*) FROM sqlite_master", &objects);
    if (rc) {
        snprintf(err, errcap, "%s: cannot read the database header: %s", path, sqlite3_errmsg(db));
        return sqlite_to_err(rc);
    }
    *fresh = app == 0 && version == 0 && objects == 0;
    if (*fresh)
        return 0;
    if (app != STORE_APPLICATION_ID) {
        snprintf(err, errcap,
                 "%s: an SQLite database, but not an m2mkit MQTT store (application_id 0x%08llx)", path,
                 (unsigned long long)app);
        return M2M_ECORRUPT;
    }
    if (version != STORE_SCHEMA_VERSION) {
        snprintf(err, errcap, "%s: MQTT store schema version %lld, this build reads version %d", path,
                 (long long)version, STORE_SCHEMA_VERSION);
        return M2M_ECORRUPT;
    }
    return 0;
}

static int check_integrity(sqlite3 *db, const char *path, char *err, size_t errcap)
{
    char result[256];
    int rc = query_text(db, "PRAGMA quick_check", result, sizeof result);
    if (rc) {
        snprintf(err, errcap, "%s: integrity check failed: %s", path, sqlite3_errmsg(db));
        return sqlite_to_err(rc);
    }
    if (strcmp(result, "ok") != 0) {
        snprintf(err, errcap, "%s: integrity check failed: %s", path, result);
        return M2M_ECORRUPT;
    }
    return 0;
}

static int configure(sqlite3 *db, const char *path, enum m2m_store_sync sync, char *err, size_t errcap)
{
    char mode[32];
    int rc = query_text(db, "PRAGMA journal_mode=WAL", mode, sizeof mode);
    if (rc || strcmp(mode, "wal") != 0) {
        snprintf(err, errcap, "%s: cannot enable WAL mode: %s", path, rc ? sqlite3_errmsg(db) : mode);
        return rc ? sqlite_to_err(rc) : M2M_EIO;
    }
    /* In WAL mode NORMAL syncs only at checkpoints: a commit survives a
     * process crash but not a power cut; FULL syncs the WAL at every commit.
     * The WAL is truncated back to 64 MiB after a checkpoint. */
    const char *pragmas = sync == M2M_STORE_SYNC_FULL
                              ? "PRAGMA synchronous=FULL; PRAGMA journal_size_limit=67108864;"
                              : "PRAGMA synchronous=NORMAL; PRAGMA journal_size_limit=67108864;";
    rc = sqlite3_exec(db, pragmas, NULL, NULL, NULL);
    if (rc) {
        snprintf(err, errcap, "%s: %s", path, sqlite3_errmsg(db));
        return sqlite_to_err(rc);
    }
    return 0;
}

static int create_schema(sqlite3 *db, const char *path, char *err, size_t errcap)
{
    char sql[sizeof schema_sql + 128];
    snprintf(sql, sizeof sql, "BEGIN IMMEDIATE; %s PRAGMA application_id=%d; PRAGMA user_version=%d; COMMIT;",
             schema_sql, STORE_APPLICATION_ID, STORE_SCHEMA_VERSION);
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc) {
        snprintf(err, errcap, "%s: cannot create the schema: %s", path, sqlite3_errmsg(db));
        if (!sqlite3_get_autocommit(db))
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return sqlite_to_err(rc);
    }
    return 0;
}

int m2m_sqlite_mqtt_store_open(const char *path, enum m2m_store_sync sync, struct m2m_mqtt_store **out,
                               char *err, size_t errcap)
{
    char scratch[1];
    if (!err || !errcap) {
        err = scratch;
        errcap = sizeof scratch;
    }
    err[0] = '\0';
    if (!out)
        return M2M_EINVAL;
    *out = NULL;
    if (!path || (sync != M2M_STORE_SYNC_NORMAL && sync != M2M_STORE_SYNC_FULL)) {
        snprintf(err, errcap, "mqtt store: invalid path or sync setting");
        return M2M_EINVAL;
    }

    struct sqlite_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errcap, "%s: out of memory", path);
        return M2M_ENOMEM;
    }
    s->base.ops = &sqlite_ops;
    bool fresh = false;
    int rc =
        sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc) {
        snprintf(err, errcap, "%s: cannot open: %s", path,
                 s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        rc = M2M_EIO;
        goto fail;
    }
    sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);

    rc = check_identity(s->db, path, &fresh, err, errcap);
    if (!rc && !fresh)
        rc = check_integrity(s->db, path, err, errcap);
    if (!rc)
        rc = configure(s->db, path, sync, err, errcap);
    if (!rc && fresh)
        rc = create_schema(s->db, path, err, errcap);
    if (rc)
        goto fail;

    for (int i = 0; i < ST__COUNT; i++) {
        rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
        if (rc) {
            /* The file says it is our schema, but its tables do not fit. */
            snprintf(err, errcap, "%s: not the MQTT store schema this build expects: %s", path,
                     sqlite3_errmsg(s->db));
            rc = M2M_ECORRUPT;
            goto fail;
        }
    }
    *out = &s->base;
    return 0;

fail:
    store_close(&s->base);
    return rc;
}
