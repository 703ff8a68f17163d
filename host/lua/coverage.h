/*
 * Line coverage for `luar test --coverage`: the task hook counts the lines executed in the
 * Lua files under one folder (the scripts), and the report compares them with the lines
 * that hold code, read from each file's compiled chunk (every nested function included,
 * so a function never called counts all its lines as missed). Specs (`*_spec.lua`, any
 * `spec/` folder) are not counted. One process-wide collector; loop thread only.
 */
#ifndef LUAR_COVERAGE_H
#define LUAR_COVERAGE_H

#include "common/buf.h"

#include <lua.h>

/* Starts counting lines of the files under `root` (resolved now). Returns 0 or LUAR_E*. */
int luar_coverage_start(const char *root);

/* Non-zero while counting: the hook mask then includes LUA_MASKLINE. */
int luar_coverage_on(void);

/* The task hook's line event. */
void luar_coverage_line(lua_State *L, lua_Debug *ar);

/*
 * Writes the report (a summary table with the missed line numbers, then each file with its
 * hit counts, "***0" on the missed lines) to `path`, and sets *percent to the share of code
 * lines executed (100 when there is no code). Files never loaded count as not run at all.
 * Returns 0, or LUAR_EIO / LUAR_ENOMEM with the reason appended to `err`.
 */
int luar_coverage_report(const char *path, double *percent, luar_buf_t *err);

/* Stops counting and frees the counts. */
void luar_coverage_stop(void);

/*
 * The lines holding code in a compiled chunk (the output of lua_dump, not stripped):
 * marks code[line] = 1 for 0 < line < ncode, as debug.getinfo(f, "L").activelines would
 * for the chunk and every function nested in it. Returns 0, or LUAR_EINVAL for a dump it
 * cannot read (another Lua version, stripped).
 */
int luar_coverage_code_lines(const unsigned char *dump, size_t len, unsigned char *code,
                             size_t ncode);

#endif
