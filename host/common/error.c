#include "common/error.h"

const char *luar_strerror(int err)
{
    switch (err) {
    case LUAR_OK:
        return "success";
#define LUAR__ERR_CASE(name, code, msg)                                                      \
    case code:                                                                            \
        return msg;
        LUAR_ERRNO_MAP(LUAR__ERR_CASE)
#undef LUAR__ERR_CASE
    }
    return "unknown error";
}
