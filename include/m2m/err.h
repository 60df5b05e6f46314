/* m2mkit error codes: one enum, generated from one X-macro table.
 * 0 is success, errors are negative. Protocol outcomes (CoAP 4.xx, MQTT
 * reason codes...) are event data, never error codes. */
#ifndef M2M_ERR_H
#define M2M_ERR_H

#define M2M_ERR_MAP(X)                                                                                       \
    X(EMALFORMED, "malformed input")                                                                         \
    X(ENOBUFS, "buffer too small")                                                                           \
    X(ENOMEM, "out of memory")                                                                               \
    X(EINVAL, "invalid argument")                                                                            \
    X(ELIMIT, "configured limit reached")                                                                    \
    X(ENOTFOUND, "not found")                                                                                \
    X(EEXIST, "already exists")                                                                              \
    X(EAGAIN, "try again later")                                                                             \
    X(ETIMEDOUT, "timed out")                                                                                \
    X(ERESET, "reset by peer")                                                                               \
    X(EUNSUPPORTED, "not supported")                                                                         \
    X(EIO, "input/output error")                                                                             \
    X(ECONFIG, "invalid configuration")                                                                      \
    X(ESTATE, "operation not valid in this state")                                                           \
    X(ECORRUPT, "corrupted data")

enum m2m_err {
    M2M_OK = 0,
#define M2M_ERR_ENUM(name, msg) M2M_##name,
    M2M__ERR_FIRST = -1000,
    M2M_ERR_MAP(M2M_ERR_ENUM)
#undef M2M_ERR_ENUM
        M2M__ERR_END
};

/* Human-readable message and symbolic name ("EMALFORMED") of an error code;
 * both return static strings, "unknown error" for codes outside the table. */
const char *m2m_strerror(int err);
const char *m2m_errname(int err);

#endif
