/*
 * Error codes of the core. Every C function of the core returns 0 on success or one of
 * these negative codes; results come back through out parameters.
 */
#ifndef LUAR_ERROR_H
#define LUAR_ERROR_H

#define LUAR_ERRNO_MAP(X)                                                                 \
    X(NOMEM, -1, "out of memory")                                                         \
    X(INVAL, -2, "invalid argument")                                                      \
    X(IO, -3, "i/o error")                                                                \
    X(TOOBIG, -4, "too large")                                                            \
    X(NOTFOUND, -5, "not found")                                                          \
    X(PARSE, -6, "malformed input")                                                       \
    X(TIMEOUT, -7, "timed out")                                                           \
    X(CLOSED, -8, "closed")                                                               \
    X(TLS, -9, "tls error")                                                               \
    X(LUA, -10, "lua error")                                                              \
    X(BUSY, -11, "busy")                                                                  \
    X(EXISTS, -12, "already exists")                                                      \
    X(CONFIG, -13, "configuration error")                                                 \
    X(CANCELED, -14, "canceled")

enum {
    LUAR_OK = 0,
#define LUAR__ERR_ENUM(name, code, msg) LUAR_E##name = code,
    LUAR_ERRNO_MAP(LUAR__ERR_ENUM)
#undef LUAR__ERR_ENUM
};

/* Returns a static string describing `err` ("unknown error" for codes not in the map). */
const char *luar_strerror(int err);

#endif
