#include "m2m/err.h"

const char *m2m_strerror(int err)
{
    switch (err) {
    case M2M_OK: return "success";
#define M2M_ERR_MSG(name, msg)                                                                               \
    case M2M_##name: return msg;
        M2M_ERR_MAP(M2M_ERR_MSG)
#undef M2M_ERR_MSG
    default: return "unknown error";
    }
}

const char *m2m_errname(int err)
{
    switch (err) {
    case M2M_OK: return "OK";
#define M2M_ERR_NAME(name, msg)                                                                              \
    case M2M_##name: return #name;
        M2M_ERR_MAP(M2M_ERR_NAME)
#undef M2M_ERR_NAME
    default: return "unknown error";
    }
}
